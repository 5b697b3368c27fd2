"""The edge worker in real workerd, forwarding to our own server on the bundled model."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
from openai import OpenAI

from tests.handlers.cloudflare.conftest import EDGE_KEYS, ORIGIN_KEY, Edge

pytestmark = pytest.mark.integration

AUTH = {"authorization": f"Bearer {EDGE_KEYS[0]}"}


def wait_idle(engine: Any, timeout: float = 60) -> bool:
    """The engine frees its slot just after the last event of an earlier stream is sent."""
    deadline = time.monotonic() + timeout
    while engine.stats().active and time.monotonic() < deadline:
        time.sleep(0.05)
    return bool(engine.stats().active == 0)


def test_generate_is_forwarded_to_the_origin(edge: Edge) -> None:
    r = httpx.post(
        edge.urls["direct"] + "/api/generate",
        json={"prompt": "Say hi.", "maxTokens": 8, "temperature": 0},
        headers=AUTH,
        timeout=120,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"text", "tokens", "latencyMs"} and 1 <= body["tokens"] <= 8
    assert r.headers["x-nimbus-origin"] == "0"


def test_get_routes_and_origin_errors_pass_through(edge: Edge) -> None:
    models = httpx.get(edge.urls["direct"] + "/v1/models", headers=AUTH, timeout=30)
    assert models.status_code == 200
    assert models.json()["data"][0]["id"] == edge.origins.live.engine.model_id
    # A route the edge does not know but the origin does not have either: the origin's 404.
    missing = httpx.get(edge.urls["direct"] + "/v1/nothing-here", headers=AUTH, timeout=30)
    assert missing.status_code == 404 and missing.headers["x-nimbus-origin"] == "0"
    assert missing.json()["error"]["code"] == "not_found"


def test_paths_outside_the_api_are_answered_at_the_edge(edge: Edge) -> None:
    r = httpx.get(edge.urls["direct"] + "/admin", headers=AUTH, timeout=30)
    assert r.status_code == 404 and "x-nimbus-origin" not in r.headers
    assert r.json() == {
        "error": {
            "message": "Not Found",
            "type": "invalid_request_error",
            "code": "not_found",
            "param": None,
        }
    }


def test_openai_client_works_through_the_edge(edge: Edge) -> None:
    client = OpenAI(
        base_url=edge.urls["direct"] + "/v1", api_key=EDGE_KEYS[1], timeout=120, max_retries=0
    )
    reply = client.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": "Name a colour."}],
        max_tokens=8,
        temperature=0,
    )
    assert reply.choices[0].message.content
    assert reply.usage is not None and 1 <= reply.usage.completion_tokens <= 8
    pieces = [
        chunk.choices[0].delta.content or ""
        for chunk in client.chat.completions.create(
            model="smollm2",
            messages=[{"role": "user", "content": "Count to three."}],
            max_tokens=12,
            temperature=0,
            stream=True,
        )
        if chunk.choices
    ]
    assert len(pieces) >= 2 and "".join(pieces)


def test_stream_is_passed_through_while_the_origin_is_still_generating(edge: Edge) -> None:
    """The first SSE event reaches the client while the origin's engine is still busy with the
    same request: the edge relays bytes as they come instead of buffering the response."""
    engine = edge.origins.live.engine
    assert wait_idle(engine)
    active_at_first_event = None
    events: list[str] = []
    with httpx.stream(
        "POST",
        edge.urls["direct"] + "/v1/completions",
        json={"prompt": "1, 2, 3, 4, 5, 6,", "max_tokens": 24, "temperature": 0, "stream": True},
        headers=AUTH,
        timeout=120,
    ) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["x-nimbus-origin"] == "0"
        for line in r.iter_lines():
            if not line.startswith("data: "):
                continue
            if active_at_first_event is None:
                active_at_first_event = engine.stats().active
            events.append(line.removeprefix("data: "))
    assert active_at_first_event == 1, "the first event arrived only after generation had ended"
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert len(chunks) > 5 and chunks[-1]["choices"][0]["finish_reason"] in {"stop", "length"}


def test_native_stream_through_the_edge(edge: Edge) -> None:
    with httpx.stream(
        "POST",
        edge.urls["direct"] + "/api/generate",
        json={"prompt": "Write one sentence.", "maxTokens": 16, "stream": True},
        headers={"x-api-key": EDGE_KEYS[1]},
        timeout=120,
    ) as r:
        assert r.status_code == 200
        lines = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    assert all("token" in json.loads(line[6:]) for line in lines[:-1])


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"authorization": "Bearer wrong"},
        {"x-api-key": "edge-key"},
        {"authorization": f"Basic {EDGE_KEYS[0]}"},
    ],
    ids=["missing", "wrong-bearer", "wrong-x-api-key", "not-bearer"],
)
def test_requests_without_a_valid_key_are_refused_at_the_edge(
    edge: Edge, headers: dict[str, str]
) -> None:
    before = len(edge.origins.capture.seen)
    r = httpx.post(
        edge.urls["capture"] + "/api/generate", json={"prompt": "hi"}, headers=headers, timeout=30
    )
    assert r.status_code == 401
    error = r.json()["error"]
    assert (error["type"], error["code"]) == ("authentication_error", "invalid_api_key")
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert len(edge.origins.capture.seen) == before, "a refused request reached the origin"


def test_key_is_checked_before_the_body_is_read(edge: Edge) -> None:
    r = httpx.post(edge.urls["capture"] + "/api/generate", content=b"x" * 2_000_000, timeout=30)
    assert r.status_code == 401


def test_edge_without_a_key_fails_closed(edge: Edge) -> None:
    r = httpx.post(
        edge.urls["keyless"] + "/api/generate", json={"prompt": "hi"}, headers=AUTH, timeout=30
    )
    assert r.status_code == 500 and r.json()["error"]["code"] == "edge_misconfigured"


def test_anonymous_edge_forwards_without_a_key(edge: Edge) -> None:
    r = httpx.post(
        edge.urls["anonymous"] + "/api/generate",
        json={"prompt": "hi"},
        headers={"x-test-id": "anonymous"},
        timeout=30,
    )
    assert r.status_code == 200 and r.json()["path"] == "/api/generate"
    assert edge.origins.capture.requests_with("x-test-id", "anonymous")


def test_headers_are_filtered_both_ways(edge: Edge) -> None:
    r = httpx.post(
        edge.urls["capture"] + "/v1/completions?trace=1",
        json={"prompt": "hi"},
        headers={
            "authorization": f"Bearer {EDGE_KEYS[0]}",
            "x-test-id": "headers",
            "x-custom": "kept",
            "x-forwarded-for": "6.6.6.6",
            "x-real-ip": "6.6.6.6",
            "te": "trailers",
            "connection": "x-drop-me",
            "x-drop-me": "1",
            "proxy-authorization": "Basic Zm9vOmJhcg==",
            "keep-alive": "timeout=5",
        },
        timeout=30,
    )
    assert r.status_code == 200
    (seen,) = edge.origins.capture.requests_with("x-test-id", "headers")
    assert seen.path == "/v1/completions?trace=1" and json.loads(seen.body) == {"prompt": "hi"}
    assert seen.headers["x-custom"] == "kept"
    # The client address comes from CF-Connecting-IP, never from what the client claims.
    assert seen.headers["x-forwarded-for"] == "127.0.0.1"
    assert seen.headers["x-forwarded-proto"] == "http"
    for dropped in (
        "te",
        "x-drop-me",
        "proxy-authorization",
        "keep-alive",
        "x-real-ip",
        "cf-connecting-ip",
    ):
        assert dropped not in seen.headers, dropped
    # The edge key stays at the edge; the origin gets its own key.
    assert seen.headers["x-api-key"] == ORIGIN_KEY
    assert EDGE_KEYS[0] not in json.dumps(seen.headers)
    # Response: the origin's own headers are kept, hop-by-hop ones dropped.
    assert r.headers["x-origin-header"] == "kept"
    assert "keep-alive" not in r.headers and "proxy-authenticate" not in r.headers


def test_health_reports_the_edge_and_the_origin(edge: Edge) -> None:
    r = httpx.get(edge.urls["direct"] + "/api/health", timeout=30)  # no key needed
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ready" and body["edge"]["status"] == "ok"
    assert body["model"] == edge.origins.live.engine.model_id
    (origin,) = body["origins"]
    assert origin["ok"] and origin["status"] == 200 and origin["health"]["status"] == "ready"
    assert "127.0.0.1" not in r.text, "the health answer must not reveal origin addresses"


def test_client_disconnect_reaches_the_origin(edge: Edge) -> None:
    """A client that hangs up mid-stream frees the origin's engine: the edge does not keep
    reading (and paying for) a generation nobody receives."""
    engine = edge.origins.live.engine
    assert wait_idle(engine)
    with httpx.stream(
        "POST",
        edge.urls["direct"] + "/v1/completions",
        json={"prompt": "1, 2, 3, 4, 5, 6,", "max_tokens": 2000, "temperature": 0, "stream": True},
        headers=AUTH,
        timeout=120,
    ) as r:
        for line in r.iter_lines():
            if line.startswith("data: "):
                break
        assert engine.stats().active == 1
    # 2000 tokens take minutes here; the cancelled run stops at its next token.
    assert wait_idle(engine), "the origin kept generating after the client left"
