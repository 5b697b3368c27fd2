"""The edge's own model in real workerd: llama.cpp as WebAssembly in the Worker's isolate, the
bundled GGUF read from (Miniflare's local) R2. It answers when every origin is down, when the
client asks for it, or always; one generation at a time, a bounded queue, then 503."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai import OpenAI

from tests.handlers.cloudflare.conftest import EDGE_KEYS, Edge

pytestmark = pytest.mark.integration

AUTH = {"authorization": f"Bearer {EDGE_KEYS[0]}"}
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def chat(edge: Edge, instance: str, **body: Any) -> httpx.Response:
    return httpx.post(
        edge.urls[instance] + "/v1/chat/completions",
        json={"messages": QUESTION, "max_tokens": 12, "temperature": 0, **body},
        headers=AUTH,
        timeout=300,
    )


def sse_data(response: httpx.Response) -> list[str]:
    return [
        line.removeprefix("data: ") for line in response.iter_lines() if line.startswith("data: ")
    ]


def test_with_every_origin_down_the_edge_answers_from_its_model(edge: Edge) -> None:
    r = chat(edge, "edge-failover")
    assert r.status_code == 200, r.text
    assert r.headers["x-nimbus-answered-by"] == "edge"
    assert "x-nimbus-origin" not in r.headers
    body = r.json()
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    assert body["model"] == "SmolLM2-135M-Instruct.Q4_0"
    (choice,) = body["choices"]
    assert choice["message"]["role"] == "assistant"
    # The real model knows this one; a fixture or an echo would not.
    assert "Paris" in choice["message"]["content"]
    usage = body["usage"]
    assert usage["prompt_tokens"] > 10 and 1 <= usage["completion_tokens"] <= 12
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert choice["finish_reason"] in {"stop", "length"}


def test_the_edge_streams_chat_token_by_token(edge: Edge) -> None:
    client = OpenAI(
        base_url=edge.urls["edge-failover"] + "/v1",
        api_key=EDGE_KEYS[1],
        max_retries=0,
        timeout=300,
    )
    arrivals: list[float] = []
    chunks = []
    with client.chat.completions.create(
        model="any",
        messages=[{"role": "user", "content": "Count from one to ten."}],
        max_tokens=16,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    ) as stream:
        for chunk in stream:
            arrivals.append(time.monotonic())
            chunks.append(chunk)
    first, *middle, finish, usage = chunks
    assert first.choices[0].delta.role == "assistant"
    pieces = [c.choices[0].delta.content or "" for c in middle]
    assert len(pieces) >= 4 and "".join(pieces).strip()
    assert finish.choices[0].finish_reason in {"stop", "length"}
    assert usage.choices == [] and usage.usage is not None
    assert usage.usage.completion_tokens >= len(pieces)
    # Pieces come as the model makes them (each is ~100 ms of CPU here), not in one burst at the end.
    assert arrivals[-2] - arrivals[1] > 0.2


def test_edge_sse_framing_and_done(edge: Edge) -> None:
    with httpx.stream(
        "POST",
        edge.urls["edge-failover"] + "/v1/completions",
        json={"prompt": "1, 2, 3, 4,", "max_tokens": 6, "temperature": 0, "stream": True},
        headers=AUTH,
        timeout=300,
    ) as r:
        assert r.status_code == 200 and r.headers["x-nimbus-answered-by"] == "edge"
        assert r.headers["content-type"].startswith("text/event-stream")
        events = sse_data(r)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "text_completion" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1 and chunks[0]["id"].startswith("cmpl-")
    text = "".join(c["choices"][0]["text"] for c in chunks)
    assert "5" in text  # the real model continues the count
    assert chunks[-1]["choices"][0]["finish_reason"] in {"stop", "length"}


def test_completion_echo_and_the_native_route_at_the_edge(edge: Edge) -> None:
    r = httpx.post(
        edge.urls["edge-failover"] + "/v1/completions",
        json={"prompt": "The sky is", "max_tokens": 4, "temperature": 0, "echo": True},
        headers=AUTH,
        timeout=300,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "text_completion"
    assert body["choices"][0]["text"].startswith("The sky is")
    assert body["usage"]["completion_tokens"] <= 4
    native = httpx.post(
        edge.urls["edge-failover"] + "/api/generate",
        json={"prompt": "Say hello.", "maxTokens": 6, "temperature": 0},
        headers=AUTH,
        timeout=300,
    )
    assert native.status_code == 200, native.text
    payload = native.json()
    assert set(payload) == {"text", "tokens", "latencyMs"}
    assert payload["text"] and 1 <= payload["tokens"] <= 6 and payload["latencyMs"] > 0
    with httpx.stream(
        "POST",
        edge.urls["edge-failover"] + "/api/generate",
        json={"prompt": "Say hello.", "maxTokens": 6, "temperature": 0, "stream": True},
        headers=AUTH,
        timeout=300,
    ) as streamed:
        events = sse_data(streamed)
    assert events[-1] == "[DONE]"
    assert "".join(json.loads(e)["token"] for e in events[:-1]) == payload["text"]


def test_stop_sequences_end_the_answer_at_the_edge(edge: Edge) -> None:
    r = httpx.post(
        edge.urls["edge-failover"] + "/v1/completions",
        json={"prompt": "1, 2, 3, 4,", "max_tokens": 12, "temperature": 0, "stop": [" 7"]},
        headers=AUTH,
        timeout=300,
    )
    assert r.status_code == 200, r.text
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "stop"
    assert "6" in choice["text"] and "7" not in choice["text"]


def health(edge: Edge, instance: str) -> dict[str, Any]:
    # The isolate is single-threaded: while the model loads or computes a token it answers nothing.
    r = httpx.get(edge.urls[instance] + "/api/health", timeout=120)
    body: dict[str, Any] = r.json()
    return body


def test_one_generation_at_a_time_then_a_bounded_queue_then_503(edge: Edge) -> None:
    """EDGE_MAX_QUEUE=1: the first request runs, the second waits for it, the third is refused
    with core's 503 and Retry-After; the second starts only when the first has finished."""
    url = edge.urls["edge-failover"] + "/v1/chat/completions"
    assert chat(edge, "edge-failover", max_tokens=1).status_code == 200  # loaded before the race
    spans: dict[str, tuple[float, float]] = {}
    statuses: dict[str, int] = {}

    def run(name: str) -> None:
        body = {
            "messages": [{"role": "user", "content": f"Tell me a story about {name}."}],
            "max_tokens": 24,
            "temperature": 0,
            "stream": True,
        }
        with httpx.stream("POST", url, json=body, headers=AUTH, timeout=300) as r:
            statuses[name] = r.status_code
            times = [time.monotonic() for line in r.iter_lines() if line.startswith("data: ")]
        spans[name] = (times[0], times[-1])

    first = threading.Thread(target=run, args=("a fox",))
    first.start()
    assert wait_for(lambda: health(edge, "edge-failover")["edge"]["model"]["queue"]["active"] == 1)
    second = threading.Thread(target=run, args=("a bear",))
    second.start()
    assert wait_for(lambda: health(edge, "edge-failover")["edge"]["model"]["queue"]["waiting"] == 1)
    third = chat(edge, "edge-failover")
    assert third.status_code == 503
    error = third.json()["error"]
    assert (error["type"], error["code"]) == ("server_error", "engine_overloaded")
    assert third.headers["retry-after"] == "1"
    first.join(300)
    second.join(300)
    assert statuses == {"a fox": 200, "a bear": 200}
    assert spans["a bear"][0] > spans["a fox"][1], "the two generations overlapped"
    assert wait_for(lambda: health(edge, "edge-failover")["edge"]["model"]["queue"]["active"] == 0)


def wait_for(condition: Any, timeout: float = 120) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_a_client_that_leaves_frees_the_model(edge: Edge) -> None:
    assert chat(edge, "edge-failover", max_tokens=1).status_code == 200  # loaded first
    host, port = edge.urls["edge-failover"].removeprefix("http://").split(":")
    body = json.dumps(
        # A count goes on for all 48 tokens (a question would be answered in a few).
        {"prompt": "1, 2, 3, 4, 5,", "max_tokens": 48, "temperature": 0, "stream": True}
    ).encode()
    with socket.create_connection((host, int(port)), timeout=300) as sock:
        sock.sendall(
            b"POST /v1/completions HTTP/1.1\r\nHost: edge\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {EDGE_KEYS[0]}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        received = b""
        while b"data: " not in received:
            received += sock.recv(65536)
        assert health(edge, "edge-failover")["edge"]["model"]["queue"]["active"] == 1
        sock.shutdown(socket.SHUT_RDWR)
    # The socket is closed: workerd stops running the request's code. The model is freed when
    # workerd signals the hang-up, or at the latest once the generation has not moved for 10 s,
    # and the next request is served.
    assert wait_for(
        lambda: health(edge, "edge-failover")["edge"]["model"]["queue"]["active"] == 0, 15
    )
    assert chat(edge, "edge-failover", max_tokens=2).status_code == 200


def workerd_rss_bytes(edge: Edge) -> int:
    """Resident memory of the largest workerd process under the harness (one per instance)."""
    biggest = 0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        if "\nName:\tworkerd" not in "\n" + text:
            continue
        rss = next(int(line.split()[1]) for line in text.splitlines() if line.startswith("VmRSS:"))
        biggest = max(biggest, rss * 1024)
    return biggest


def test_the_edge_reports_its_memory_and_fits_128_mib(edge: Edge) -> None:
    """The default build (32-bit, growing heap) with the Q4_0 model: the GGUF is read in place
    from the heap, so the heap holds it once plus the KV cache, buffers and tokenizer."""
    r = chat(edge, "edge-failover", max_tokens=2)
    assert r.status_code == 200, r.text
    model = health(edge, "edge-failover")["edge"]["model"]
    assert model["status"] == "ready" and model["wasm"] == "nimbus"
    assert model["id"] == "SmolLM2-135M-Instruct.Q4_0" and model["n_ctx"] == 256
    assert model["model_bytes"] < model["heap_live_bytes"] < model["model_bytes"] + 32 * 2**20
    assert model["heap_live_bytes"] <= model["heap_used_bytes"] <= model["heap_bytes"]
    assert model["heap_bytes"] < 128 * 2**20
    assert int(r.headers["x-nimbus-edge-heap-bytes"]) == model["heap_bytes"]
    assert model["load_ms"] > 0
    # The process running the isolate holds at least that much.
    assert workerd_rss_bytes(edge) >= model["heap_bytes"]


def test_with_the_origin_up_requests_are_forwarded_as_before(edge: Edge) -> None:
    r = httpx.post(
        edge.urls["edge-up"] + "/v1/chat/completions",
        json={"messages": QUESTION, "max_tokens": 4},
        headers={**AUTH, "x-test-id": "edge-up"},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    assert r.headers["x-nimbus-answered-by"] == "origin" and r.headers["x-nimbus-origin"] == "0"
    assert r.json()["model"] == "capture"
    (seen,) = edge.origins.capture.requests_with("x-test-id", "edge-up")
    assert json.loads(seen.body)["messages"] == QUESTION
    assert health(edge, "edge-up")["edge"]["model"]["status"] == "unloaded"


def test_a_client_may_ask_for_the_edge_explicitly(edge: Edge) -> None:
    r = httpx.post(
        edge.urls["edge-up"] + "/v1/chat/completions",
        json={"messages": QUESTION, "max_tokens": 8, "temperature": 0},
        headers={**AUTH, "x-nimbus-route": "edge", "x-test-id": "explicit-edge"},
        timeout=300,
    )
    assert r.status_code == 200, r.text
    assert r.headers["x-nimbus-answered-by"] == "edge"
    assert r.json()["model"] == "SmolLM2-135M-Instruct.Q4_1"
    assert "Paris" in r.json()["choices"][0]["message"]["content"]
    assert not edge.origins.capture.requests_with("x-test-id", "explicit-edge")
    # The published wllama build: 64-bit memory that starts at 128 MiB and grows past it.
    model = health(edge, "edge-up")["edge"]["model"]
    assert model["wasm"] == "wllama" and model["status"] == "ready"
    assert model["heap_bytes"] > max(128 * 2**20, model["model_bytes"])


@pytest.mark.parametrize(
    ("instance", "route", "message"),
    [
        ("edge-up", "somewhere", 'x-nimbus-route must be "origin" or "edge"'),
        ("direct", "edge", "this edge holds no model (EDGE_MODE is off)"),
        ("edge-always", "origin", "this edge answers from its own model only"),
    ],
)
def test_an_impossible_route_is_refused(
    edge: Edge, instance: str, route: str, message: str
) -> None:
    r = httpx.post(
        edge.urls[instance] + "/v1/chat/completions",
        json={"messages": QUESTION},
        headers={**AUTH, "x-nimbus-route": route},
        timeout=60,
    )
    assert r.status_code == 400
    assert r.json()["error"] == {
        "message": message,
        "type": "invalid_request_error",
        "code": "invalid_parameter",
        "param": "x-nimbus-route",
    }


def test_an_edge_without_origins_reports_its_model(edge: Edge) -> None:
    body = health(edge, "edge-always")
    assert body["status"] == "ready" and body["origins"] == []
    assert body["model"] == "SmolLM2-135M-Instruct.Q4_0"
    assert body["edge"]["mode"] == "always" and body["edge"]["model"]["status"] == "unloaded"
    models = httpx.get(edge.urls["edge-always"] + "/v1/models", headers=AUTH, timeout=30)
    assert models.status_code == 200 and models.headers["x-nimbus-answered-by"] == "edge"
    assert models.json()["data"][0]["id"] == "SmolLM2-135M-Instruct.Q4_0"
    # Routes the model does not serve are not found, as at the origin.
    r = httpx.post(edge.urls["edge-always"] + "/v1/embeddings", json={}, headers=AUTH, timeout=30)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_a_missing_model_object_is_a_clear_misconfiguration(edge: Edge) -> None:
    r = chat(edge, "edge-no-model")
    assert r.status_code == 500
    error = r.json()["error"]
    assert error["code"] == "edge_misconfigured"
    assert "models/absent.gguf" in error["message"] and "MODEL_BUCKET" in error["message"]
    body = health(edge, "edge-no-model")
    assert r.status_code == 500 and body["edge"]["model"]["status"] == "failed"
    assert body["status"] == "unavailable"


def test_a_bad_edge_mode_is_a_misconfiguration(edge: Edge) -> None:
    r = chat(edge, "edge-bad-mode")
    assert r.status_code == 500
    assert "EDGE_MODE must be one of off, failover, always" in r.json()["error"]["message"]


def test_the_edge_refuses_what_it_cannot_do(edge: Edge) -> None:
    too_many = chat(edge, "edge-failover", max_tokens=49)
    assert too_many.status_code == 400
    assert too_many.json()["error"] == {
        "message": "max_tokens must be at most 48 when the edge's model answers",
        "type": "invalid_request_error",
        "code": "invalid_parameter",
        "param": "max_tokens",
    }
    constrained = chat(edge, "edge-failover", response_format={"type": "json_object"})
    assert constrained.status_code == 400
    assert constrained.json()["error"]["param"] == "response_format"
