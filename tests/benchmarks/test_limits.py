"""benchmarks.limits and build_llama_server: llama.cpp's own benchmarks as the ceiling column."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from benchmarks.build_llama_server import PORTABLE_X86, build_root, cmake_flags
from benchmarks.limits import LimitError, batched_rows, bench_tps

ROOT = Path(__file__).resolve().parents[2]

# What the programs print (llama.cpp's log lines around the results included).
LLAMA_BENCH_JSON = """load_backend: loaded CPU backend
[
  {
    "build_commit": "unknown",
    "model_type": "llama ?B Q4_1",
    "n_threads": 2,
    "n_prompt": 0,
    "n_gen": 128,
    "avg_ns": 1041234567,
    "stddev_ns": 0,
    "avg_ts": 122.930000,
    "stddev_ts": 0.000000,
    "samples_ns": [ 1041234567 ],
    "samples_ts": [ 122.93 ]
  }
]
"""
BATCHED_JSONL = """main: n_kv_max = 4096, n_batch = 512
{"n_kv_max": 4096, "n_batch": 512, "n_ubatch": 512, "flash_attn": -1, "is_pp_shared": 0, \
"n_gpu_layers": 0, "n_threads": 2, "n_threads_batch": 2, "pp": 32, "tg": 128, "pl": 8, \
"n_kv": 1280, "t_pp": 1.000000, "speed_pp": 256.000000, "t_tg": 5.000000, \
"speed_tg": 204.800000, "t": 6.000000, "speed": 213.333333}

llama_perf_context_print:        load time =     120.00 ms
"""


def test_llama_bench_json_gives_the_tests_tokens_per_second() -> None:
    assert bench_tps(LLAMA_BENCH_JSON) == pytest.approx(122.93)
    with pytest.raises(LimitError):
        bench_tps("error: failed to load model")
    with pytest.raises(LimitError):
        bench_tps("[]")


def test_batched_bench_rows_give_s_tg() -> None:
    rows = batched_rows(BATCHED_JSONL)
    assert len(rows) == 1 and rows[0]["speed_tg"] == pytest.approx(204.8)
    assert rows[0]["pl"] * rows[0]["tg"] / rows[0]["t"] == pytest.approx(1024 / 6)
    with pytest.raises(LimitError):
        batched_rows("main: n_kv_max = 4096\n")


def test_the_programs_build_with_the_wheels_flags() -> None:
    # The Makefile exports LLAMA_CMAKE_ARGS; without it the same portable default applies.
    makefile = (ROOT / "Makefile").read_text()
    match = re.search(r"^LLAMA_CMAKE_ARGS \?= (-DGGML_NATIVE=OFF -DGGML_AVX=ON.*)$", makefile, re.M)
    assert match is not None and match.group(1).strip() == PORTABLE_X86
    assert cmake_flags({"LLAMA_CMAKE_ARGS": "-DGGML_NATIVE=OFF -DGGML_AVX2=OFF"}) == [
        "-DGGML_NATIVE=OFF",
        "-DGGML_AVX2=OFF",
    ]
    assert "-DGGML_NATIVE=OFF" in cmake_flags({})
    # A flag change builds a new tree instead of reusing a binary built another way.
    a = build_root("0.3.36", ["-DGGML_NATIVE=OFF"], Path("/c"))
    b = build_root("0.3.36", ["-DGGML_NATIVE=ON"], Path("/c"))
    assert a != b and a == build_root("0.3.36", ["-DGGML_NATIVE=OFF"], Path("/c"))
