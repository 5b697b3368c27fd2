"""The metric catalog: one name per metric and platform, units that agree, refusal codes that
exist."""

from __future__ import annotations

import inspect

from core import errors
from core.metrics import catalog


def test_names_are_unique_and_follow_the_conventions() -> None:
    prom = [m.prometheus_name for m in catalog.ALL]
    emf = [m.emf_name for m in catalog.ALL]
    assert len(set(prom)) == len(prom) and len(set(emf)) == len(emf)
    for m in catalog.ALL:
        assert m.prometheus_name.startswith("nimbus_") and m.help
        assert m.prometheus_name.endswith("_total") == (m.kind == "counter")
        assert ("_seconds" in m.name) == (m.unit == "seconds")
        assert set(m.emf_dimensions) <= set(m.labels)
        assert bool(m.buckets) == (m.kind == "histogram")


def test_emf_names_and_units_come_from_the_same_entry() -> None:
    assert catalog.TIME_TO_FIRST_TOKEN.prometheus_name == "nimbus_time_to_first_token_seconds"
    assert (catalog.TIME_TO_FIRST_TOKEN.emf_name, catalog.TIME_TO_FIRST_TOKEN.emf_unit) == (
        "TimeToFirstToken",
        "Seconds",
    )
    assert catalog.PROMPT_TOKENS.prometheus_name == "nimbus_prompt_tokens_total"
    assert (catalog.PROMPT_TOKENS.emf_name, catalog.PROMPT_TOKENS.emf_unit) == (
        "PromptTokens",
        "Count",
    )
    assert catalog.TOKENS_PER_SECOND.emf_unit == "Count/Second"


def test_every_refusal_reason_is_a_real_error_code() -> None:
    codes = {
        cls.code
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.NimbusError)
    }
    assert set(catalog.REFUSAL_REASONS) <= codes
    assert set(catalog.REFUSAL_REASONS.values()) >= {
        "auth",
        "rate_limit",
        "queue_full",
        "prompt_rejected",
    }


def test_the_docs_list_every_metric() -> None:
    from pathlib import Path

    docs = (Path(__file__).resolve().parents[3] / "docs" / "observability.md").read_text()
    for m in catalog.ALL:
        assert f"`{m.prometheus_name}`" in docs, m.prometheus_name
        if m.source == "request" or m is catalog.MODEL_LOAD:
            assert f"`{m.emf_name}` ({m.emf_unit}" in docs, m.emf_name
    for reason in catalog.REFUSAL_REASONS.values():
        assert f"`{reason}`" in docs, reason
