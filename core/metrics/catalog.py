"""Every metric nimbus reports, once: its name, type, unit, labels and help text. Prometheus
(``/metrics``) and CloudWatch EMF (Lambda) both name and scale their series from this table, so
the platforms never disagree on what a number means.

Naming: ``name`` is the Prometheus base (``nimbus_`` + name, ``_total`` added to counters); the
EMF name is the same words in CamelCase without the unit (``time_to_first_token_seconds`` ->
``TimeToFirstToken``, unit Seconds). Durations are seconds everywhere."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["counter", "histogram", "gauge"]
Unit = Literal["count", "tokens", "seconds", "tokens_per_second", "cells"]
Source = Literal["request", "engine"]

PREFIX = "nimbus_"

# Seconds for request-sized waits (queue, first token, whole request) and for token gaps.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_GAP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
_RATE_BUCKETS = (1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000)

_EMF_UNITS: dict[Unit, str] = {
    "count": "Count",
    "tokens": "Count",
    "seconds": "Seconds",
    "tokens_per_second": "Count/Second",
    "cells": "Count",
}


@dataclass(frozen=True)
class Metric:
    name: str
    kind: Kind
    unit: Unit
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()
    source: Source = "request"
    """'request': recorded as requests finish (Prometheus and EMF); 'engine': read from the
    engine when scraped (Prometheus only: a Lambda environment serves one request at a time)."""
    emf_dimensions: tuple[str, ...] = ()
    """Labels that become EMF dimensions (each combination is a billed CloudWatch metric)."""

    @property
    def prometheus_name(self) -> str:
        """As exposed: counters carry the ``_total`` suffix."""
        return PREFIX + self.name + ("_total" if self.kind == "counter" else "")

    @property
    def emf_name(self) -> str:
        words = self.name.removesuffix("_seconds").split("_")
        return "".join(w[:1].upper() + w[1:] for w in words)

    @property
    def emf_unit(self) -> str:
        return _EMF_UNITS[self.unit]


# -- recorded per request (every platform) -------------------------------------------------------
REQUESTS = Metric(
    "requests",
    "counter",
    "count",
    "HTTP requests answered, by route template, method and status code.",
    labels=("route", "method", "status"),
)
REQUEST_DURATION = Metric(
    "request_duration_seconds",
    "histogram",
    "seconds",
    "End-to-end request time, first byte received to last byte sent (streams included).",
    labels=("route",),
    buckets=_LATENCY_BUCKETS,
)
PROMPT_TOKENS = Metric(
    "prompt_tokens",
    "counter",
    "tokens",
    "Prompt tokens of generations that got a slot (prefix-cache hits included).",
)
COMPLETION_TOKENS = Metric(
    "completion_tokens", "counter", "tokens", "Tokens generated (abandoned streams included)."
)
TIME_TO_FIRST_TOKEN = Metric(
    "time_to_first_token_seconds",
    "histogram",
    "seconds",
    "Submission to first generated text, queue wait and prompt evaluation included.",
    buckets=_LATENCY_BUCKETS,
)
INTER_TOKEN_LATENCY = Metric(
    "inter_token_latency_seconds",
    "histogram",
    "seconds",
    "Mean gap between a generation's tokens after the first (one observation per generation).",
    buckets=_GAP_BUCKETS,
)
QUEUE_WAIT = Metric(
    "queue_wait_seconds",
    "histogram",
    "seconds",
    "Time a generation waited for a free slot.",
    buckets=_LATENCY_BUCKETS,
)
TOKENS_PER_SECOND = Metric(
    "tokens_per_second",
    "histogram",
    "tokens_per_second",
    "Completion tokens over the generation's whole time (queue and prompt included).",
    buckets=_RATE_BUCKETS,
)
REFUSALS = Metric(
    "refusals",
    "counter",
    "count",
    "Requests refused before generating, by reason: auth (401), rate_limit (429), "
    "queue_full (503), prompt_rejected (400), too_large (413), not_ready (503).",
    labels=("reason",),
    emf_dimensions=("reason",),
)
REDACTIONS = Metric(
    "redactions", "counter", "count", "Matches replaced by the output filter in responses."
)
MODEL_LOAD = Metric(
    "model_load_seconds",
    "gauge",
    "seconds",
    "Time the model took to load (llama.cpp model and context) at start.",
    source="engine",
)

# -- read from the engine when scraped (Prometheus) ----------------------------------------------
SLOTS = Metric("slots", "gauge", "count", "Requests the engine decodes together.", source="engine")
SLOTS_BUSY = Metric(
    "slots_busy", "gauge", "count", "Slots holding a request right now.", source="engine"
)
QUEUE_DEPTH = Metric(
    "queue_depth", "gauge", "count", "Requests waiting for a free slot.", source="engine"
)
KV_CACHE_CELLS = Metric(
    "kv_cache_cells", "gauge", "cells", "KV cache size in cells (tokens).", source="engine"
)
KV_CACHE_USED_CELLS = Metric(
    "kv_cache_used_cells",
    "gauge",
    "cells",
    "KV cells holding a token of some slot (a prefix shared by slots counts once).",
    source="engine",
)
PREFIX_CACHE_REQUESTS = Metric(
    "prefix_cache_requests",
    "counter",
    "count",
    "Requests placed in a slot: result=hit reused cached prompt tokens, miss reused none.",
    labels=("result",),
    source="engine",
)
PREFIX_CACHE_TOKENS = Metric(
    "prefix_cache_tokens",
    "counter",
    "tokens",
    "Prompt tokens of placed requests: result=hit reused from the cache, miss evaluated.",
    labels=("result",),
    source="engine",
)
DECODE_CALLS = Metric(
    "decode_calls",
    "counter",
    "count",
    "llama_decode calls (one per batch step, all slots together).",
    source="engine",
)

ALL: tuple[Metric, ...] = (
    REQUESTS,
    REQUEST_DURATION,
    PROMPT_TOKENS,
    COMPLETION_TOKENS,
    TIME_TO_FIRST_TOKEN,
    INTER_TOKEN_LATENCY,
    QUEUE_WAIT,
    TOKENS_PER_SECOND,
    REFUSALS,
    REDACTIONS,
    MODEL_LOAD,
    SLOTS,
    SLOTS_BUSY,
    QUEUE_DEPTH,
    KV_CACHE_CELLS,
    KV_CACHE_USED_CELLS,
    PREFIX_CACHE_REQUESTS,
    PREFIX_CACHE_TOKENS,
    DECODE_CALLS,
)

# Error codes (core.errors) that count as a refusal, and the reason label each one gets.
REFUSAL_REASONS: dict[str, str] = {
    "invalid_api_key": "auth",
    "rate_limit_exceeded": "rate_limit",
    "engine_overloaded": "queue_full",
    "prompt_rejected": "prompt_rejected",
    "payload_too_large": "too_large",
    "model_not_ready": "not_ready",
}
