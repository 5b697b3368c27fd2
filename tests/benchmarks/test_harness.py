"""A short smoke run of the benchmark harness (benchmarks are not tests; this checks it works)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.report import markdown, steps_table, targets

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.integration
@pytest.mark.slow
def test_quick_run_writes_table_json_and_chart(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--quick",
            "--peers",
            "engine,nimbus,llama_cpp_server,llama_server",
            "--no-build",
            "--streams",
            "1,2",
            "--max-tokens",
            "4",
            "--repeats",
            "1",
            "--threads",
            "1",
            "--out",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "[ 1/" in proc.stderr  # progress is shown while it runs
    data = json.loads((tmp_path / "bench.json").read_text())
    nimbus = data["results"]["nimbus"]
    assert nimbus["single_tps"] > 0 and nimbus["agg_2"] > 0 and nimbus["prefill_tps"] > 0
    assert 0 < nimbus["cold_start_s"] < 300 and nimbus["rss_mb"] > 50
    assert len(nimbus["cold_start_trials"]) == 1  # --repeats 1: one start alone per peer
    assert "cold start" in proc.stderr
    engine = data["results"]["engine"]  # in-process, driven over its stdin between HTTP rounds
    assert engine["single_tps"] > 0 and engine["agg_2"] > 0 and engine["cold_start_s"] > 0
    # Both HTTP servers were up together for the side-by-side single-stream rounds.
    other = data["results"]["llama_cpp_server"]
    assert other["single_tps"] > 0 and other["agg_2"] > 0 and other["rss_mb"] > 50
    assert proc.stderr.count("single stream") == 3
    assert "llama_server" not in data["results"]
    assert "--no-build" in data["meta"]["skipped"]["llama_server"]
    table = (tmp_path / "bench.md").read_text()
    assert "| single-stream decode, tok/s |" in table and "nimbus (HTTP)" in table
    assert 0 < data["meta"]["import_floor_s"] < nimbus["cold_start_s"]
    assert "import fastapi, uvicorn, pydantic_settings" in table
    assert (tmp_path / "bench.png").read_bytes()[:4] == b"\x89PNG"
    # Python CPU per generated token, from the probe around every concurrency round.
    for peer in (nimbus, engine):
        cpu = peer["cpu_2"]
        assert cpu["python"] > 0 and cpu["decode"] > 0 and cpu["event loop"] > 0
    assert "CPU time per generated token" in table
    assert "profile" not in nimbus  # --quick: no py-spy round


def test_targets_compare_nimbus_with_the_peers() -> None:
    results = {
        "nimbus": {
            "single_tps": 100.0,
            "agg_4": 150.0,
            "agg_8": 200.0,
            "steady_8": 230.0,
            "rss_mb": 300.0,
            "followup_ratio": 0.1,
            "cpu_8": {"python": 40.0},
            "ttft_p50_8": 300.0,
        },
        "llama_server": {"single_tps": 90.0, "agg_4": 160.0, "agg_8": 190.0, "rss_mb": 220.0},
        "llama_cpp_server": {"single_tps": 60.0, "agg_4": 60.0},
        "llama_limit": {"single_tps": 105.0, "agg_8": 240.0},
    }
    met = {
        what: ok for what, _, ok in targets(results, baseline={"python_us_per_token": {"8": 100.0}})
    }
    assert met["single stream >= 1.0x llama-server"] is True
    assert met["single stream >= 0.97x llama-bench tg"] is False  # 100 / 105 = 0.952
    assert met["aggregate @4 >= 1.0x llama-server"] is False
    assert met["aggregate @8 >= 1.0x llama-server"] is True
    assert met["aggregate @8 >= 0.95x llama-batched-bench S_TG"] is False  # 200 / 240
    assert met["decode phase @8 >= 0.95x llama-batched-bench S_TG"] is True  # 230 / 240
    assert met["aggregate @4 >= 2x llama_cpp.server"] is True
    assert met["Python CPU per token @8 <= 0.5x before"] is True  # 40 / 100
    assert met["Python CPU per token @16 <= 0.5x before"] is None  # not measured
    assert met["TTFT p50 @8 <= llama-server"] is None
    assert met["peak RSS <= llama-server + 60 MB"] is False
    assert met["follow-up TTFT <= 0.2x cold prefill"] is True
    assert met["cold start <= 1.2x llama-server"] is None  # not measured: no verdict
    labels = {
        "nimbus": "nimbus (HTTP)",
        "llama_server": "llama-server",
        "llama_limit": "llama.cpp limit",
    }
    meta = {
        "model_name": "m.gguf",
        "threads": 2,
        "n_ctx": 1024,
        "slots": 4,
        "max_tokens": 8,
        "repeats": 1,
        "cpu": "2 cores",
        "command": "python -m benchmarks",
        "platform_cold_start": {
            "lambda": {"median_ms": {"init": 900.0, "cold first": 950.0, "warm gen": 400.0}},
            "modal": {
                "median_ms": {},
                "snapshot_restore_to_first_token_ms": 300.0,
                "no_snapshot_to_first_token_ms": 1300.0,
            },
        },
    }
    table = markdown(results, labels, meta)
    assert "| single-stream decode, tok/s | 100 | 90 | 105 | 1.11x | 1.67x | 0.952x |" in table
    assert "1.11x" in table
    assert "16 streams" not in table  # a level no peer measured has no row
    assert "`llama-bench` tg8" in table
    assert "init 900 ms" in table and "300 ms to the first token" in table


def test_the_step_table_sets_each_round_beside_s_tg_at_the_batch_it_decoded() -> None:
    results = {
        "nimbus": {
            "agg_8": 126.0,
            "agg_16": 112.0,
            "cpu_8": {
                "python": 1.0,
                "evaluated per generated": 1.23,
                "llama.cpp per evaluated": 12_800.0,
                "prompt steps share": 0.17,
                "decode-only rows per step": 7.9,
                "decode-only tok/s": 160.0,
            },
            # 16 streams over 8 slots: each decode-only step still has 8 rows.
            "cpu_16": {
                "python": 1.0,
                "evaluated per generated": 1.25,
                "llama.cpp per evaluated": 12_900.0,
                "prompt steps share": 0.2,
                "decode-only rows per step": 8.0,
                "decode-only tok/s": 158.0,
            },
        },
        "llama_limit": {"agg_4": 149.0, "agg_8": 160.0, "agg_16": 200.0},
    }
    lines = steps_table(results, {"threads": 2})
    rows = [line for line in lines if line.startswith("| 8 |") or line.startswith("| 16 |")]
    assert rows == [
        "| 8 | 126 | 1.23 | 12800 | 17 % | 7.9 | 160 | 160 (batch 8) | 12500 |",
        "| 16 | 112 | 1.25 | 12900 | 20 % | 8 | 158 | 160 (batch 8) | 12500 |",
    ]
    # A run whose probe had no step counters shows no table.
    assert steps_table({"nimbus": {"cpu_8": {"python": 1.0}}}, {"threads": 2}) == []


def test_every_level_is_decoded_as_one_batch() -> None:
    from benchmarks.run import build_config, parse_args

    # The default levels go up to 16 streams: 16 slots, so 16 streams are one batch of 16, as
    # llama-batched-bench's S_TG at 16 is.
    assert build_config(parse_args([])).slots == 16
    assert build_config(parse_args(["--streams", "1,4"])).slots == 4
    assert build_config(parse_args(["--quick"])).slots == 2
