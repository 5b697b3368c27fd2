"""One fast smoke run of each reliability scenario against a real `nimbus serve` (the figures
and targets come from `make reliability`; in this smoke each scenario must run and its mechanics hold)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from benchmarks.reliability import scenarios
from benchmarks.reliability.run import main, markdown
from benchmarks.reliability.scenarios import Plan, percentile
from benchmarks.reliability.server import Server, serve

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def plan(tmp_path_factory: pytest.TempPathFactory) -> Plan:
    return Plan.quick(tmp_path_factory.mktemp("reliability-logs"))


@pytest.fixture(scope="module")
def server(plan: Plan) -> Iterator[Server]:
    env = {
        "NIMBUS_LIMITS__MAX_TOKENS_CAP": "16",
        "NIMBUS_LIMITS__MAX_TOKENS_DEFAULT": "8",
        # One decode thread: on a busy shared CPU two threads wait on each other at every graph
        # node and a 10-token answer can take longer than a smoke window (the mechanics under
        # test do not depend on the thread count).
        "NIMBUS_ENGINE__N_THREADS": "1",
    }
    with serve(env, log_dir=plan.log_dir, name="smoke") as s:
        # One answer first: the model's pages and the first decode are not what the smoke
        # windows are for.
        httpx.post(f"{s.base_url}/api/generate", json={"prompt": "hi", "maxTokens": 2}, timeout=300)
        yield s


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 99) is None
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([float(i) for i in range(1, 101)], 99) == 99.0


def test_load_answers_every_request(plan: Plan, server: Server) -> None:
    result = scenarios.load(plan, server)
    assert result["accepted"] > 0
    assert result["errors"] == 0, result


def test_flood_refuses_beyond_capacity_and_keeps_serving(plan: Plan, server: Server) -> None:
    result = scenarios.flood(plan, server)
    base, flooded = result["baseline"], result["flood"]
    assert result["capacity"] == 20  # the defaults: 4 slots + 16 queued
    assert result["admitting_while_refusing"] == 8  # while refusing: 4 slots + 4 queued
    assert base["accepted"] > 0 and flooded["accepted"] > 0
    assert base["refused"] == 0  # 10 connections fit
    assert flooded["refused"] > 0  # 50 do not: the rest are refused, and retry at once
    assert all(int(v) >= 1 for v in flooded["retry_after_values"])
    # A refusal keeps the connection: each client sent every request on the one it opened.
    rounds = plan.flood_rounds
    assert base["connects"] == 10 * rounds and flooded["connects"] == 50 * rounds, result
    # Each refusal waits for a place for admission_wait_ms (50) first: refusals cannot spin.
    assert flooded["refusal_p50_ms"] >= 45
    assert result["targets"]["no_other_errors"]["met"], flooded


def test_fuzz_sends_schema_cases_without_5xx(plan: Plan, server: Server) -> None:
    result = scenarios.fuzz(plan, server)
    assert result["cases"] >= plan.fuzz_cases
    assert {"POST /api/generate", "POST /v1/chat/completions"} <= set(result["by_operation"])
    assert result["targets"]["no_5xx"]["met"], result["failures"]
    assert result["server_alive"]


def test_storm_of_dropped_streams_drains(plan: Plan, server: Server) -> None:
    result = scenarios.storm(plan, server)
    assert result["streams_aborted"] == plan.storm_streams
    assert result["targets"]["drained"]["met"] and result["request_after_storm"] == 200


def test_soak_samples_rss_and_sees_no_5xx(plan: Plan, server: Server) -> None:
    result = scenarios.soak(plan, server)
    assert len(result["rss_samples"]) >= 3
    assert result["targets"]["no_5xx"]["met"], result["statuses"]
    assert any(k.startswith("bad-json 422") for k in result["statuses"])


def test_abuse_set_holds(plan: Plan) -> None:
    result = scenarios.abuse(plan)
    failed = [c for c in result["checks"] if not c["met"]]
    assert not failed, failed
    assert len(result["checks"]) >= 12


def test_the_runner_writes_markdown_and_json(tmp_path: Path) -> None:
    # The in-process scenario only: the runner and its report, without another server.
    code = main(["--only", "injection", "--out", str(tmp_path)])
    report = json.loads((tmp_path / "reliability.json").read_text())
    assert code == 0
    assert report["scenarios"]["injection"]["targets"]["miss_rate"]["met"]
    text = (tmp_path / "reliability.md").read_text()
    assert "## Injection policy" in text and "| injection | miss_rate |" in text
    assert markdown(report, "cmd").startswith("# Reliability run")
