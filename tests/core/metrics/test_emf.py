"""The EMF recorder through the real Powertools Metrics: the catalog's names and units, and
dimensions only where the catalog asks for them."""

from __future__ import annotations

import json

import pytest
from aws_lambda_powertools import Metrics

from core.metrics import catalog as m
from core.metrics.emf import EmfRecorder
from tests.support.metrics import emf_units, emf_values


def test_names_units_and_dimensions(capsys: pytest.CaptureFixture[str]) -> None:
    metrics = Metrics(namespace="nimbus-test", service="svc")
    rec = EmfRecorder(metrics, namespace="nimbus-test", service="svc")
    rec.record(m.PROMPT_TOKENS, 12, {})
    rec.record(m.TIME_TO_FIRST_TOKEN, 0.25, {})
    rec.record(m.REQUESTS, 1, {"route": "/api/generate", "method": "POST", "status": "200"})
    rec.record(m.REFUSALS, 1, {"reason": "rate_limit"})  # printed at once, with its dimension
    metrics.flush_metrics()
    docs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    assert emf_units(docs) == {
        "PromptTokens": "Count",
        "TimeToFirstToken": "Seconds",
        "Requests": "Count",
        "Refusals": "Count",
    }
    assert emf_values(docs, "PromptTokens") == [12] and emf_values(docs, "Refusals") == [1]
    refusal = next(d for d in docs if "Refusals" in d)
    assert refusal["reason"] == "rate_limit" and refusal["service"] == "svc"
    assert refusal["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["service", "reason"]]
    batch = next(d for d in docs if "PromptTokens" in d)
    assert "route" not in batch  # route/status are Prometheus labels, not EMF dimensions
    assert batch["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "nimbus-test"
