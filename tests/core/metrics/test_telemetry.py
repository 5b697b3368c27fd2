"""Telemetry turns events into catalog measurements (recorded by a list; no model)."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from core.engine.types import Completion, EngineStats
from core.metrics import catalog as m
from core.metrics.catalog import Metric
from core.metrics.telemetry import Telemetry


class Recorded:
    def __init__(self) -> None:
        self.values: list[tuple[str, float, dict[str, str]]] = []

    def record(self, metric: Metric, value: float, labels: Mapping[str, str]) -> None:
        assert set(labels) == set(metric.labels)
        self.values.append((metric.name, value, dict(labels)))

    def of(self, metric: Metric) -> list[float]:
        return [v for name, v, _ in self.values if name == metric.name]


def test_a_finished_generation() -> None:
    rec = Recorded()
    Telemetry([rec]).completion(
        Completion(
            "abc",
            "length",
            prompt_tokens=20,
            completion_tokens=5,
            time_to_first_token_s=0.5,
            total_s=1.5,
            queue_wait_s=0.25,
        )
    )
    assert rec.of(m.PROMPT_TOKENS) == [20] and rec.of(m.COMPLETION_TOKENS) == [5]
    assert rec.of(m.QUEUE_WAIT) == [0.25] and rec.of(m.TIME_TO_FIRST_TOKEN) == [0.5]
    assert rec.of(m.INTER_TOKEN_LATENCY) == [pytest.approx(0.25)]  # (1.5 - 0.5) / 4 gaps
    assert rec.of(m.TOKENS_PER_SECOND) == [pytest.approx(5 / 1.5)]


def test_a_request_that_never_got_a_slot_counts_no_prompt_tokens() -> None:
    rec = Recorded()
    Telemetry([rec]).completion(Completion("", "cancelled", 30, 0, total_s=0.1))
    assert rec.values == []


def test_requests_refusals_and_redactions() -> None:
    rec = Recorded()
    t = Telemetry([rec])
    t.request("/api/generate", "POST", 200, 0.3)
    t.request("other", "BREW", 405, 0.001)
    t.refused("rate_limit_exceeded")
    t.refused("invalid_parameter")  # an error, not a refusal
    t.redacted(0)
    t.redacted(2)
    assert rec.values == [
        ("requests", 1, {"route": "/api/generate", "method": "POST", "status": "200"}),
        ("request_duration_seconds", 0.3, {"route": "/api/generate"}),
        ("requests", 1, {"route": "other", "method": "other", "status": "405"}),
        ("request_duration_seconds", 0.001, {"route": "other"}),
        ("refusals", 1, {"reason": "rate_limit"}),
        ("redactions", 2, {}),
    ]


def test_a_broken_recorder_does_not_stop_the_others() -> None:
    class Broken:
        def record(self, metric: Metric, value: float, labels: Mapping[str, str]) -> None:
            raise RuntimeError("backend down")

    rec = Recorded()
    Telemetry([Broken(), rec]).request("/v1/models", "GET", 200, 0.01)
    assert len(rec.values) == 2


def test_engine_samples() -> None:
    stats = EngineStats(
        active=2,
        waiting=1,
        capacity=20,
        slots=4,
        kv_cells=1024,
        kv_cells_used=300,
        placed=10,
        reuse_hits=3,
        prompt_tokens=500,
        reused_tokens=120,
        decode_calls=77,
        load_seconds=0.8,
    )
    samples = {
        (s.metric.name, tuple(s.labels.values())): s.value
        for s in Telemetry(stats=lambda: stats).samples()
    }
    assert samples == {
        ("slots", ()): 4,
        ("slots_busy", ()): 2,
        ("queue_depth", ()): 1,
        ("kv_cache_cells", ()): 1024,
        ("kv_cache_used_cells", ()): 300,
        ("prefix_cache_requests", ("hit",)): 3,
        ("prefix_cache_requests", ("miss",)): 7,
        ("prefix_cache_tokens", ("hit",)): 120,
        ("prefix_cache_tokens", ("miss",)): 380,
        ("decode_calls", ()): 77,
        ("model_load_seconds", ()): 0.8,
    }
