"""Ordered origins: failover past dead, broken, garbage-speaking and silent origins, never once a
stream has started; health shows each origin."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.handlers.cloudflare.conftest import EDGE_KEYS, Edge

pytestmark = pytest.mark.integration

AUTH = {"authorization": f"Bearer {EDGE_KEYS[0]}"}


def test_request_fails_over_to_the_first_origin_that_answers(edge: Edge) -> None:
    # Order: closed port, HTTP 500, not HTTP, the real server.
    r = httpx.post(
        edge.urls["failover"] + "/api/generate",
        json={"prompt": "Say yes.", "maxTokens": 4, "temperature": 0},
        headers=AUTH,
        timeout=120,
    )
    assert r.status_code == 200, r.text
    assert r.headers["x-nimbus-origin"] == "3"
    assert r.json()["tokens"] >= 1


def test_an_origin_that_never_answers_is_skipped_after_its_timeout(edge: Edge) -> None:
    r = httpx.post(
        edge.urls["slow"] + "/api/generate",
        json={"prompt": "hi"},
        headers={**AUTH, "x-test-id": "slow"},
        timeout=60,
    )
    assert r.status_code == 200 and r.headers["x-nimbus-origin"] == "1"
    assert edge.origins.capture.requests_with("x-test-id", "slow")


def test_stream_fails_over_before_its_first_byte(edge: Edge) -> None:
    with httpx.stream(
        "POST",
        edge.urls["failover"] + "/api/generate",
        json={"prompt": "Say yes.", "maxTokens": 4, "stream": True},
        headers=AUTH,
        timeout=120,
    ) as r:
        assert r.status_code == 200 and r.headers["x-nimbus-origin"] == "3"
        lines = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"


def test_a_started_stream_is_never_retried(edge: Edge) -> None:
    """Origin 0 sends its headers and one event, then drops the connection: the client gets that
    event and then an error event in core's shape, and origin 1 never sees the request."""
    with httpx.stream(
        "POST",
        edge.urls["midstream"] + "/api/generate",
        json={"prompt": "hi", "stream": True},
        headers={**AUTH, "x-test-id": "midstream"},
        timeout=60,
    ) as r:
        assert r.status_code == 200 and r.headers["x-nimbus-origin"] == "0"
        events = [
            line.removeprefix("data: ") for line in r.iter_lines() if line.startswith("data: ")
        ]
    assert len(events) == 2 and json.loads(events[0]) == {"token": "first"}
    error = json.loads(events[1])["error"]
    assert (error["type"], error["code"]) == ("server_error", "origin_stream_interrupted")
    assert edge.origins.capture_behind_stream.seen == []


def test_when_every_origin_fails_the_last_5xx_is_passed_on(edge: Edge) -> None:
    # Origin 0 answers 500 (with Retry-After), origin 1 is down: the client gets origin 0's answer.
    r = httpx.post(
        edge.urls["dead"] + "/api/generate", json={"prompt": "hi"}, headers=AUTH, timeout=60
    )
    assert r.status_code == 500 and r.headers["x-nimbus-origin"] == "0"
    assert r.headers["retry-after"] == "7"
    assert r.json()["error"]["code"] == "broken"


def test_when_no_origin_answers_the_edge_says_502(edge: Edge) -> None:
    r = httpx.post(
        edge.urls["unreachable"] + "/api/generate", json={"prompt": "hi"}, headers=AUTH, timeout=60
    )
    assert r.status_code == 502
    error = r.json()["error"]
    assert (error["type"], error["code"]) == ("server_error", "origin_unavailable")
    assert "origin 0" in error["message"] and "origin 1" in error["message"]
    assert "127.0.0.1" not in error["message"], "origin addresses must not leak"


def test_health_lists_every_origin(edge: Edge) -> None:
    r = httpx.get(edge.urls["failover"] + "/api/health", timeout=60)
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ready" and body["edge"]["origins"] == 4
    by_index = {o["origin"]: o for o in body["origins"]}
    assert [by_index[i]["ok"] for i in range(4)] == [False, False, False, True]
    assert by_index[0]["status"] is None and by_index[0]["error"]
    assert by_index[1]["status"] == 500
    assert by_index[2]["status"] is None and by_index[2]["error"]
    assert by_index[3]["health"]["status"] == "ready"
    slow = httpx.get(edge.urls["slow"] + "/api/health", timeout=60).json()
    assert "no response within 3000 ms" in slow["origins"][0]["error"]
    assert slow["origins"][1]["ok"]


def test_health_is_503_when_no_origin_is_ready(edge: Edge) -> None:
    r = httpx.get(edge.urls["dead"] + "/api/health", timeout=60)
    assert r.status_code == 503
    body = r.json()
    assert body["status"] == "unavailable" and body["edge"]["status"] == "ok"
    assert [o["ok"] for o in body["origins"]] == [False, False]
