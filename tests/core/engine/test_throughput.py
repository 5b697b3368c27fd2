"""The scheduler's measured speed and the Retry-After it derives (no model: the engine thread
is not started, only the accounting is exercised)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from core.engine.batched import BatchScheduler, Job, Throughput
from core.errors import EngineOverloadedError


def scheduler(slots: int = 2, waiting: int = 3, floor: int = 1, cap: int = 60) -> BatchScheduler:
    ctx: Any = SimpleNamespace(n_batch=512)
    return BatchScheduler(
        None,  # type: ignore[arg-type]
        ctx,
        slots=slots,
        prefill_chunk=128,
        max_waiting=waiting,
        retry_after_s=floor,
        retry_after_max_s=cap,
    )


def job() -> Job:
    return Job(request=None, tokens=[1], max_new=1, stream=None)  # type: ignore[arg-type]


def test_throughput_folds_periods_into_a_moving_average() -> None:
    t = Throughput(period_s=0.5, weight=0.5)
    t.step(10, 0.25)
    assert t.tokens_per_s == 0  # less than a period measured
    t.step(10, 0.25)
    assert t.tokens_per_s == pytest.approx(40.0)
    t.step(10, 0.5)  # 20 tok/s now: halfway there
    assert t.tokens_per_s == pytest.approx(30.0)
    t.finished(10)
    t.finished(20)
    assert t.tokens_per_request == pytest.approx(15.0)


def test_retry_after_is_the_floor_until_measured_then_queue_over_rate() -> None:
    s = scheduler(slots=2, waiting=8)
    assert s.retry_after_s() == 1
    s.throughput.tokens_per_s = 20.0  # all slots together
    s.throughput.tokens_per_request = 10.0  # so two requests finish per second
    assert s.retry_after_s() == 1  # empty queue: the next finish frees a place in 0.5 s
    for _ in range(6):
        s._queue.append(job())
    assert s.retry_after_s() == 4  # (6 queued + 1) / 2 per second = 3.5 s
    s.throughput.tokens_per_s = 0.5
    assert s.retry_after_s() == 60  # capped


def test_a_full_engine_refuses_with_the_estimate() -> None:
    s = scheduler(slots=1, waiting=2)
    s.throughput.tokens_per_s, s.throughput.tokens_per_request = 10.0, 20.0
    s._active = 1
    s.submit(job())
    s.submit(job())
    with pytest.raises(EngineOverloadedError) as refused:
        s.submit(job())
    assert refused.value.headers["Retry-After"] == "6"  # (2 + 1) * 20 / 10
    stats = s.stats()
    assert (stats.waiting, stats.retry_after_s, stats.tokens_per_s) == (2, 6, 10.0)
