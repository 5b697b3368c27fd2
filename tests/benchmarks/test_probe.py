"""benchmarks.probe: Python CPU time per generated token, by thread role."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from benchmarks.probe import CpuProbe, per_token, steps, thread_cpu_ns
from core.engine.types import GenerationRequest, PromptSegment, SamplingParams
from tests.conftest import model_settings


def _snap(loop: int, engine: int, other: int, decode: int, process: int) -> dict[str, object]:
    return {
        "threads": {"1": ["event loop", loop], "2": ["engine", engine], "3": ["other", other]},
        "decode_ns": decode,
        "decodes": 0,
        "process_ns": process,
    }


def test_python_time_is_every_python_thread_minus_the_engine_inside_decode() -> None:
    before = _snap(1_000, 5_000, 0, 4_000, 20_000)
    after = _snap(11_000, 105_000, 2_000, 94_000, 220_000)
    out = per_token(before, after, tokens=4)
    # loop 10 us + engine outside decode (100 - 90) 10 us + pool 2 us = 22 us for 4 tokens
    assert out["python"] == pytest.approx(5.5)
    assert out["event loop"] == pytest.approx(2.5)
    assert out["engine (outside decode)"] == pytest.approx(2.5)
    assert out["decode"] == pytest.approx(22.5)
    # native: the process (200 us) minus the Python threads (112 us)
    assert out["native"] == pytest.approx(22.0)
    assert out["KV save/restore"] == 0
    assert per_token(before, after, tokens=0) == {}


def test_kv_copies_on_the_engine_thread_are_not_python() -> None:
    before = {**_snap(0, 0, 0, 0, 0), "kv_copy_ns": 1_000}
    after = {**_snap(4_000, 100_000, 0, 80_000, 200_000), "kv_copy_ns": 13_000}
    out = per_token(before, after, tokens=4)
    # engine 100 us = decode 80 + copies 12 + Python 8
    assert out["KV save/restore"] == pytest.approx(3.0)
    assert out["engine (outside decode)"] == pytest.approx(2.0)
    assert out["python"] == pytest.approx(3.0)


def test_the_step_split_separates_prompt_steps_from_decode_only_steps() -> None:
    before = {"evaluated": 10, "decode_rows": 0, "decode_steps": 0, "decode_wall_ns": 0}
    after = {
        "evaluated": 10 + 30 + 4 * 8,  # one 30-token prompt step, then 4 steps of 8 rows
        "decode_rows": 32,
        "decode_steps": 4,
        "decode_wall_ns": 200_000_000,  # 4 x 50 ms
        "prompt_steps": 1,
        "prompt_wall_ns": 150_000_000,
    }
    out = steps(before, after, tokens=32, llama_ns=62 * 12_000_000)
    assert out["evaluated per generated"] == pytest.approx(62 / 32)
    assert out["llama.cpp per evaluated"] == pytest.approx(12_000.0)
    assert out["decode-only rows per step"] == pytest.approx(8.0)
    assert out["decode-only tok/s"] == pytest.approx(160.0)
    assert out["prompt steps share"] == pytest.approx(150 / 350)
    # Snapshots from a probe without the step counters: no split, not a crash.
    assert steps({}, {}, tokens=4, llama_ns=1) == {}


def test_a_thread_started_between_snapshots_counts_from_zero() -> None:
    before = _snap(0, 0, 0, 0, 0)
    after = _snap(0, 0, 0, 0, 10_000)
    after["threads"]["9"] = ["other", 8_000]  # type: ignore[index]
    assert per_token(before, after, tokens=1)["other threads"] == pytest.approx(8.0)


def test_thread_cpu_time_grows_while_a_thread_works() -> None:
    start = thread_cpu_ns(threading.get_native_id())
    deadline = time.thread_time() + 0.05
    while time.thread_time() < deadline:
        pass
    assert thread_cpu_ns(threading.get_native_id()) - start >= 40_000_000
    assert thread_cpu_ns(None) == 0


@pytest.mark.integration
def test_the_probe_times_llama_decode_on_the_engine_thread() -> None:
    from core.engine.llama import LlamaEngine

    probe = CpuProbe()
    probe.install()
    # Chunks of 8 tokens: the first request's cells are worth keeping in host memory when the
    # second one starts.
    engine = LlamaEngine(model_settings(engine={"slots": 2, "prefill_chunk": 8}))
    try:
        engine.load()

        def request(text: str) -> GenerationRequest:
            return GenerationRequest(
                prompt=(PromptSegment(text, special=True),),
                max_tokens=16,
                sampling=SamplingParams(temperature=0),
            )

        async def run() -> tuple[dict[str, object], dict[str, object], int]:
            before = probe.snapshot()
            result = await engine.submit(request("Count: 1, 2, 3,")).collect()
            return before, probe.snapshot(), result.completion_tokens

        before, after, tokens = asyncio.run(run())
        copies_before = probe.kv_copy_ns

        async def second() -> None:
            await engine.submit(request("Letters: a, b, c,")).collect()

        asyncio.run(second())
        assert probe.kv_copy_ns > copies_before  # the first request's cells were saved
    finally:
        engine.close()
        probe.uninstall()
    roles = {role for role, _ in after["threads"].values()}  # type: ignore[attr-defined]
    assert {"event loop", "engine"} <= roles
    assert probe.decodes >= tokens > 0
    out = per_token(before, after, tokens)
    assert out["decode"] > 0 and out["python"] > 0
    # One stream: its prompt went in one prompt step; every other step decoded its one row.
    prompt_steps = after["prompt_steps"] - before["prompt_steps"]  # type: ignore[operator]
    decode_steps = after["decode_steps"] - before["decode_steps"]  # type: ignore[operator]
    # (The engine thread's one-token warm-up may land after the first snapshot.)
    assert prompt_steps == 1 and tokens - 1 <= decode_steps <= tokens
    assert out["decode-only rows per step"] == pytest.approx(1.0)
    assert out["evaluated per generated"] > 1  # the prompt's tokens were evaluated too
    # Uninstalled: the engine class is as it was.
    from core.engine import lowlevel

    for name in ("decode", "seq_state", "seq_restore"):
        assert getattr(lowlevel.Context, name).__module__ == "core.engine.lowlevel"
