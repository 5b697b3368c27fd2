"""The Prometheus recorder renders the catalog's metrics in the text format Prometheus parses."""

from __future__ import annotations

from core.metrics import catalog as m
from core.metrics.prometheus import PrometheusRecorder
from core.metrics.recorder import Sample
from tests.support.metrics import Scrape


def test_recorded_values_and_engine_samples_are_exposed() -> None:
    rec = PrometheusRecorder()
    rec.record(m.REQUESTS, 1, {"route": "/api/generate", "method": "POST", "status": "200"})
    rec.record(m.REQUESTS, 1, {"route": "/api/generate", "method": "POST", "status": "200"})
    rec.record(m.PROMPT_TOKENS, 17, {})
    rec.record(m.TIME_TO_FIRST_TOKEN, 0.3, {})
    rec.record(m.TIME_TO_FIRST_TOKEN, 7.0, {})
    reads = []

    def samples() -> list[Sample]:
        reads.append(1)
        return [Sample(m.SLOTS_BUSY, 3), Sample(m.PREFIX_CACHE_TOKENS, 40, {"result": "hit"})]

    rec.read_on_scrape(samples)
    body, content_type = rec.render()
    assert content_type.startswith("text/plain")
    s = Scrape(body.decode())
    assert s.value("nimbus_requests_total", route="/api/generate", status="200") == 2
    assert s.value("nimbus_prompt_tokens_total") == 17
    assert s.value("nimbus_time_to_first_token_seconds_count") == 2
    assert s.value("nimbus_time_to_first_token_seconds_sum") == 7.3
    assert s.value("nimbus_time_to_first_token_seconds_bucket", le="0.5") == 1
    assert s.value("nimbus_slots_busy") == 3
    assert s.value("nimbus_prefix_cache_tokens_total", result="hit") == 40
    assert s.types["nimbus_slots_busy"] == "gauge"
    assert s.types["nimbus_prefix_cache_tokens"] == "counter"
    assert s.types["nimbus_request_duration_seconds"] == "histogram"
    before = len(reads)
    rec.render()
    assert len(reads) == before + 1  # engine values are read afresh on every scrape


def test_each_recorder_has_its_own_registry() -> None:
    a, b = PrometheusRecorder(), PrometheusRecorder()
    a.record(m.COMPLETION_TOKENS, 5, {})
    assert Scrape(a.render()[0].decode()).value("nimbus_completion_tokens_total") == 5
    assert Scrape(b.render()[0].decode()).value("nimbus_completion_tokens_total") == 0
