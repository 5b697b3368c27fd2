"""Telemetry: what happened (a request answered, a generation finished, a refusal, a redaction)
turned into catalog measurements for every recorder an app was given, and the engine's gauges
read on demand for scrapers. Without recorders every call returns at once."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from core.metrics import catalog as m
from core.metrics.recorder import Recorder, Sample

if TYPE_CHECKING:
    from core.engine.types import Completion, EngineStats

log = logging.getLogger("nimbus.metrics")

_NO_LABELS: dict[str, str] = {}
_METHODS = frozenset({"GET", "POST", "HEAD", "OPTIONS", "PUT", "PATCH", "DELETE"})


class Telemetry:
    def __init__(
        self,
        recorders: Sequence[Recorder] = (),
        stats: Callable[[], EngineStats] | None = None,
    ) -> None:
        self.recorders = tuple(recorders)
        self._stats = stats

    def _record(self, metric: m.Metric, value: float, labels: dict[str, str] = _NO_LABELS) -> None:
        for recorder in self.recorders:
            try:
                recorder.record(metric, value, labels)
            except Exception:  # a metrics backend never breaks a response
                log.exception("recording %s failed", metric.name)

    # -- events ------------------------------------------------------------------------------
    def completion(self, c: Completion) -> None:
        """A finished generation (the app's completion observer)."""
        if not self.recorders:
            return
        if c.queue_wait_s is not None:  # it got a slot: its prompt was really taken in
            self._record(m.PROMPT_TOKENS, c.prompt_tokens)
            self._record(m.QUEUE_WAIT, c.queue_wait_s)
        if c.completion_tokens:
            self._record(m.COMPLETION_TOKENS, c.completion_tokens)
            if c.total_s > 0:
                self._record(m.TOKENS_PER_SECOND, c.tokens_per_second)
        ttft = c.time_to_first_token_s
        if ttft is not None:
            self._record(m.TIME_TO_FIRST_TOKEN, ttft)
            if c.completion_tokens > 1:
                gap = (c.total_s - ttft) / (c.completion_tokens - 1)
                self._record(m.INTER_TOKEN_LATENCY, max(0.0, gap))

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        """An HTTP request answered (``route`` is the route template, or 'other')."""
        if not self.recorders:
            return
        method = method if method in _METHODS else "other"
        self._record(m.REQUESTS, 1, {"route": route, "method": method, "status": str(status)})
        self._record(m.REQUEST_DURATION, seconds, {"route": route})

    def refused(self, error_code: str) -> None:
        """An error answer; counted when its code is one of the refusal reasons."""
        reason = m.REFUSAL_REASONS.get(error_code)
        if reason is not None and self.recorders:
            self._record(m.REFUSALS, 1, {"reason": reason})

    def redacted(self, count: int) -> None:
        if count > 0 and self.recorders:
            self._record(m.REDACTIONS, count)

    # -- engine gauges -----------------------------------------------------------------------
    def samples(self) -> list[Sample]:
        """The engine-sourced metrics now (called by a scraper)."""
        if self._stats is None:
            return []
        s = self._stats()
        out = [
            Sample(m.SLOTS, s.slots),
            Sample(m.SLOTS_BUSY, s.active),
            Sample(m.QUEUE_DEPTH, s.waiting),
            Sample(m.KV_CACHE_CELLS, s.kv_cells),
            Sample(m.KV_CACHE_USED_CELLS, s.kv_cells_used),
            Sample(m.PREFIX_CACHE_REQUESTS, s.reuse_hits, {"result": "hit"}),
            Sample(m.PREFIX_CACHE_REQUESTS, s.placed - s.reuse_hits, {"result": "miss"}),
            Sample(m.PREFIX_CACHE_TOKENS, s.reused_tokens, {"result": "hit"}),
            Sample(m.PREFIX_CACHE_TOKENS, s.prompt_tokens - s.reused_tokens, {"result": "miss"}),
            Sample(m.DECODE_CALLS, s.decode_calls),
        ]
        if s.load_seconds is not None:
            out.append(Sample(m.MODEL_LOAD, s.load_seconds))
        return out
