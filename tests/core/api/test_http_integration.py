"""The real bundled model behind real uvicorn on loopback."""

from __future__ import annotations

import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from openai import OpenAI

from tests.conftest import LiveServer, live_server, model_settings

pytestmark = pytest.mark.integration


def test_seed_contract_over_http(http: httpx.Client) -> None:
    resp = http.post(
        "/api/generate", json={"prompt": "What is the capital of France?", "maxTokens": 16}
    )
    assert resp.status_code == 200
    body = resp.json()
    assert set(body) == {"text", "tokens", "latencyMs"}
    assert body["text"].strip()
    assert 1 <= body["tokens"] <= 16
    assert body["latencyMs"] > 0


def test_health_reports_the_model(http: httpx.Client) -> None:
    resp = http.get("/api/health")
    assert resp.status_code == 200
    assert resp.json()["status"] == "ready"
    assert resp.json()["model"] == "smollm2-135m-instruct"


def test_sse_stream_framing(http: httpx.Client) -> None:
    with http.stream(
        "POST", "/api/generate", json={"prompt": "Count to five.", "maxTokens": 20, "stream": True}
    ) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        raw = "".join(r.iter_text())
    events = [e for e in raw.split("\n\n") if e]
    assert events[-1] == "data: [DONE]"
    tokens = [json.loads(e.removeprefix("data: "))["token"] for e in events[:-1]]
    assert 1 <= len(tokens) <= 20 and "".join(tokens).strip()


def test_token_counts_are_exact(real_server: LiveServer, http: httpx.Client) -> None:
    prompt = "The quick brown fox jumps over the lazy dog."
    resp = http.post("/v1/completions", json={"prompt": prompt, "max_tokens": 5, "temperature": 0})
    usage = resp.json()["usage"]
    from core.engine.types import PromptSegment

    expected = len(real_server.engine.tokenize((PromptSegment(prompt, special=True),)))
    assert usage["prompt_tokens"] == expected
    assert usage["completion_tokens"] == 5
    assert resp.json()["choices"][0]["finish_reason"] == "length"


def test_openai_client_chat_completions_and_streaming(real_server: LiveServer) -> None:
    client = OpenAI(base_url=real_server.base_url + "/v1", api_key="unused", max_retries=0)
    chat = client.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": "Say hi."}],
        max_tokens=10,
        temperature=0,
        seed=1,
    )
    assert chat.choices[0].message.content
    assert chat.usage is not None and chat.usage.completion_tokens <= 10
    assert chat.choices[0].finish_reason in {"stop", "length"}

    text = client.completions.create(
        model="smollm2", prompt="Once upon a time", max_tokens=8, temperature=0
    )
    assert text.choices[0].text and text.usage is not None and text.usage.completion_tokens == 8

    pieces, finishes = [], []
    usage = None
    for chunk in client.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": "Name a color."}],
        max_tokens=12,
        stream=True,
        stream_options={"include_usage": True},
        temperature=0,
        seed=1,
    ):
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            pieces.append(choice.delta.content or "")
            if choice.finish_reason:
                finishes.append(choice.finish_reason)
    assert "".join(pieces).strip()
    assert len(finishes) == 1
    assert usage is not None and usage.completion_tokens >= 1

    assert [m.id for m in client.models.list().data] == ["smollm2-135m-instruct"]


def test_seeded_sampling_is_repeatable(http: httpx.Client) -> None:
    # The first call warms the prefix cache, so the next two see the same cache state (a cache hit
    # can change low-order float results, as in llama-server; see docs/api.md "Determinism").
    body = {
        "messages": [{"role": "user", "content": "Tell me a fact."}],
        "max_tokens": 16,
        "temperature": 0.8,
        "seed": 1234,
    }
    outputs = [
        http.post("/v1/chat/completions", json=body).json()["choices"][0]["message"]["content"]
        for _ in range(3)
    ]
    assert outputs[1] == outputs[2]
    other = http.post("/v1/chat/completions", json={**body, "seed": 99}).json()
    assert other["choices"][0]["message"]["content"]


def test_repetition_penalties_are_applied(http: httpx.Client) -> None:
    # Greedy counting repeats ", " between numbers; penalising repeats must change the text
    # (and must not fail: llama.cpp's penalties sampler takes the vocabulary size first).
    body = {"prompt": "1, 2, 3, 4, 5, 6, 7, 8,", "max_tokens": 24, "temperature": 0}
    plain = http.post("/v1/completions", json=body)
    assert plain.status_code == 200, plain.text
    for extra in ({"frequency_penalty": 1.5}, {"repeat_penalty": 2.0}):
        resp = http.post("/v1/completions", json={**body, **extra})
        assert resp.status_code == 200, resp.text
        assert resp.json()["choices"][0]["text"] != plain.json()["choices"][0]["text"], extra


def test_stop_sequence_cuts_output(http: httpx.Client) -> None:
    body = {"prompt": "1, 2, 3, 4, 5, 6, 7, 8,", "max_tokens": 30, "temperature": 0}
    free = http.post("/v1/completions", json=body).json()["choices"][0]["text"]
    assert "," in free
    stop = http.post("/v1/completions", json={**body, "stop": [","]}).json()["choices"][0]
    assert "," not in stop["text"] and stop["finish_reason"] == "stop"
    assert free.startswith(stop["text"])


def test_json_object_response_format_gives_json(http: httpx.Client) -> None:
    resp = http.post(
        "/v1/chat/completions",
        json={
            "messages": [
                {"role": "user", "content": "Give a person with a name and an age as JSON."}
            ],
            "response_format": {
                "type": "json_schema",
                "json_schema": {
                    "name": "p",
                    "schema": {
                        "type": "object",
                        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
                        "required": ["name", "age"],
                    },
                },
            },
            "max_tokens": 60,
            "temperature": 0,
        },
    )
    assert resp.status_code == 200
    choice = resp.json()["choices"][0]
    assert choice["finish_reason"] == "stop", choice
    data = json.loads(choice["message"]["content"])
    assert isinstance(data["name"], str) and isinstance(data["age"], int)


def test_parallel_requests_all_succeed(http: httpx.Client, real_server: LiveServer) -> None:
    def one(i: int) -> int:
        with httpx.Client(base_url=real_server.base_url, timeout=300) as c:
            r = c.post("/api/generate", json={"prompt": f"Say the number {i}.", "maxTokens": 8})
            return r.status_code

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(one, range(8))) == [200] * 8


def test_context_overflow_is_400(http: httpx.Client) -> None:
    resp = http.post("/v1/completions", json={"prompt": "word " * 3000, "max_tokens": 4})
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "context_length_exceeded"


def test_garbage_json_is_422_and_server_keeps_serving(http: httpx.Client) -> None:
    resp = http.post(
        "/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert resp.status_code == 422
    assert resp.json()["error"]["code"] == "invalid_json"
    assert http.get("/api/health").status_code == 200


def _wait_idle(http: httpx.Client, timeout: float = 120) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        queue = http.get("/api/health").json()["queue"]
        if queue["active"] == 0 and queue["waiting"] == 0:
            return queue  # type: ignore[no-any-return]
        time.sleep(0.05)
    raise AssertionError("engine still busy")


def _record_streams(monkeypatch: pytest.MonkeyPatch, engine: Any) -> list[Any]:
    """Wrap engine.submit to keep each GenerationStream, so a test can read how a run ended."""
    streams: list[Any] = []
    submit = engine.submit

    def recording(request: Any) -> Any:
        stream = submit(request)
        streams.append(stream)
        return stream

    monkeypatch.setattr(engine, "submit", recording)
    return streams


def test_disconnect_stops_generation_and_frees_the_engine(
    real_server: LiveServer, http: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    streams = _record_streams(monkeypatch, real_server.engine)
    host, port = real_server.base_url.removeprefix("http://").split(":")
    body = json.dumps(
        {
            "prompt": "Write a very long story.",
            "maxTokens": 2000,
            "stream": True,
            "temperature": 1.0,
        }
    )
    sock = socket.create_connection((host, int(port)))
    sock.sendall(
        f"POST /api/generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n{body}".encode()
    )
    received = b""
    while b"data: " not in received:  # wait until the stream has started
        chunk = sock.recv(4096)
        assert chunk, "server closed the connection before streaming"
        received += chunk
    sock.close()
    _wait_idle(http)
    # The run ended because the client left, long before its token budget.
    result = streams[0].result
    assert result is not None and result.finish_reason == "cancelled"
    assert result.completion_tokens < 500
    assert http.post("/api/generate", json={"prompt": "hi", "maxTokens": 2}).status_code == 200


def test_non_streaming_disconnect_also_frees_the_engine(
    real_server: LiveServer, http: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    streams = _record_streams(monkeypatch, real_server.engine)
    with (
        pytest.raises(httpx.ReadTimeout),
        httpx.Client(base_url=real_server.base_url, timeout=1.0) as c,
    ):
        # Counting never reaches an end of its own, so only the disconnect can stop it early.
        body = {"prompt": "1, 2, 3, 4, 5,", "max_tokens": 900, "temperature": 0}
        c.post("/v1/completions", json=body)
    _wait_idle(http)
    result = streams[0].result
    assert result is not None and result.finish_reason == "cancelled"
    assert result.completion_tokens < 900


@pytest.mark.parametrize("slots", [1, 2])
def test_full_queue_answers_503_at_once(slots: int) -> None:
    # Capacity is `slots` running + `max_queue` waiting; one more is refused at once.
    long_body = {"prompt": "Write a long story.", "maxTokens": 400, "stream": True}
    settings = model_settings(engine={"slots": slots}, limits={"max_queue": 1, "retry_after_s": 2})
    with live_server(settings) as server:
        _check_full_queue(server, long_body, slots)


def _check_full_queue(server: LiveServer, long_body: dict[str, object], slots: int) -> None:
    def stream_long() -> int:
        with (
            httpx.Client(base_url=server.base_url, timeout=300) as c,
            c.stream("POST", "/api/generate", json=long_body) as r,
        ):
            for _ in r.iter_bytes():
                pass
            return r.status_code

    with (
        ThreadPoolExecutor(slots + 1) as pool,
        httpx.Client(base_url=server.base_url, timeout=300) as c,
    ):
        running = [pool.submit(stream_long) for _ in range(slots)]
        while server.engine.stats().active != slots:
            time.sleep(0.01)
        queued = pool.submit(stream_long)
        while (server.engine.stats().active, server.engine.stats().waiting) != (slots, 1):
            time.sleep(0.01)
        rejected = c.post("/api/generate", json={"prompt": "hi", "maxTokens": 2})
        # Refused at once: not after waiting for the running streams to end.
        assert not any(r.done() for r in running)
        assert rejected.status_code == 503
        assert rejected.headers["retry-after"] == "2"
        assert rejected.json()["error"]["code"] == "engine_overloaded"
        # Nothing accepted is lost: every admitted stream finishes.
        assert [r.result() for r in running] == [200] * slots and queued.result() == 200
