"""Routing, SSE framing and error mapping on a fake engine (fast, no model)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest

from core.app import create_app
from core.settings import Settings
from tests.support.fakes import FakeEngine


def make(engine: FakeEngine | None = None, **limits: int) -> tuple[httpx.AsyncClient, FakeEngine]:
    engine = engine or FakeEngine()
    app = create_app(Settings(limits=limits), engine)  # type: ignore[arg-type]
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
    return client, engine


@pytest.fixture()
async def client() -> AsyncIterator[httpx.AsyncClient]:
    c, _ = make()
    async with c:
        yield c


def sse_data(body: str) -> list[str]:
    assert body.endswith("\n\n"), "every SSE event ends with a blank line"
    events = [e for e in body.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events)
    return [e[len("data: ") :] for e in events]


def assert_error(resp: httpx.Response, status: int, code: str | None = None) -> dict[str, str]:
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert set(err) >= {"message", "type", "code"}
    assert "Traceback" not in resp.text
    if code:
        assert err["code"] == code
    return err  # type: ignore[no-any-return]


async def test_generate_seed_contract(client: httpx.AsyncClient) -> None:
    resp = await client.post("/api/generate", json={"prompt": "hi", "maxTokens": 3})
    assert resp.status_code == 200
    body = resp.json()
    assert body["text"] == "Hello from the"
    assert body["tokens"] == 3
    assert isinstance(body["latencyMs"], float) and body["latencyMs"] >= 0
    assert set(body) == {"text", "tokens", "latencyMs"}


async def test_generate_defaults_follow_the_seed() -> None:
    c, engine = make()
    async with c:
        await c.post("/api/generate", json={"prompt": "hi"})
    request = engine.requests[0]
    assert request.max_tokens == 256
    assert request.sampling.temperature == 0.7
    # The prompt is wrapped in the chat template and kept as plain (non-special) text.
    assert [s.text for s in request.prompt if not s.special] == ["hi"]


async def test_generate_stream_framing(client: httpx.AsyncClient) -> None:
    resp = await client.post("/api/generate", json={"prompt": "hi", "stream": True})
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/event-stream")
    data = sse_data(resp.text)
    assert data[-1] == "[DONE]"
    tokens = [json.loads(d)["token"] for d in data[:-1]]
    assert "".join(tokens) == "Hello from the fake engine."


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"prompt": ""},
        {"prompt": 42},
        {"prompt": None},
        {"prompt": ["a"]},
        {"prompt": "x", "maxTokens": 0},
    ],
)
async def test_generate_invalid_prompt_is_400(
    client: httpx.AsyncClient, body: dict[str, object]
) -> None:
    assert_error(await client.post("/api/generate", json=body), 400)


async def test_garbage_json_is_422(client: httpx.AsyncClient) -> None:
    resp = await client.post(
        "/api/generate", content=b'{"prompt": "hi"', headers={"content-type": "application/json"}
    )
    assert_error(resp, 422, "invalid_json")


async def test_max_tokens_above_cap_is_400() -> None:
    c, _ = make(max_tokens_cap=8)
    async with c:
        err = assert_error(await c.post("/api/generate", json={"prompt": "x", "maxTokens": 9}), 400)
    assert "8" in err["message"]


async def test_body_over_limit_is_413_before_parsing() -> None:
    c, engine = make(max_body_bytes=2048)
    async with c:
        resp = await c.post("/api/generate", content=b"{" + b" " * 5000)
        assert_error(resp, 413, "payload_too_large")
        # The server keeps serving afterwards.
        assert (await c.post("/api/generate", json={"prompt": "ok"})).status_code == 200
    assert len(engine.requests) == 1


async def test_prompt_over_char_limit_is_413() -> None:
    c, _ = make(max_prompt_chars=10)
    async with c:
        assert_error(await c.post("/api/generate", json={"prompt": "x" * 11}), 413)


async def test_overloaded_engine_is_503_with_retry_after() -> None:
    c, engine = make()
    engine.overloaded = True
    async with c:
        resp = await c.post(
            "/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}]}
        )
    assert_error(resp, 503, "engine_overloaded")
    assert resp.headers["retry-after"] == "1"


async def test_context_overflow_is_400() -> None:
    c, _ = make(FakeEngine(n_ctx=4))
    async with c:
        resp = await c.post("/v1/completions", json={"prompt": "one two three four five"})
    assert_error(resp, 400, "context_length_exceeded")


async def test_health_ready_and_loading() -> None:
    c, _ = make()
    async with c:
        resp = await c.get("/api/health")
    assert resp.status_code == 200
    assert resp.json()["status"] == "ready" and resp.json()["model"] == "fake-model"
    c, _ = make(FakeEngine(state="loading"))
    async with c:
        resp = await c.get("/api/health")
        assert resp.status_code == 503 and resp.json()["status"] == "loading"
        gen = await c.post("/api/generate", json={"prompt": "x"})
    assert_error(gen, 503, "model_not_ready")


async def test_chat_completion_shape(client: httpx.AsyncClient) -> None:
    resp = await client.post(
        "/v1/chat/completions",
        json={
            "model": "fake-model",
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 2,
        },
    )
    body = resp.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "Hello from"}
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}


async def test_chat_stream_chunks_and_usage(client: httpx.AsyncClient) -> None:
    resp = await client.post(
        "/v1/chat/completions",
        json={
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    )
    data = sse_data(resp.text)
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "Hello from the fake engine."
    finals = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert [f["choices"][0]["finish_reason"] for f in finals] == ["stop"]
    assert chunks[-1]["usage"]["completion_tokens"] == 6


async def test_chat_rejects_n_above_the_limit_and_bad_roles(client: httpx.AsyncClient) -> None:
    msgs = [{"role": "user", "content": "x"}]
    err = assert_error(
        await client.post("/v1/chat/completions", json={"messages": msgs, "n": 5}), 400
    )
    assert err["param"] == "n" and "4" in err["message"]
    bad = [{"role": "wizard", "content": "x"}]
    assert_error(await client.post("/v1/chat/completions", json={"messages": bad}), 400)
    assert_error(await client.post("/v1/chat/completions", json={"messages": []}), 400)


async def test_too_many_stop_sequences_is_400(client: httpx.AsyncClient) -> None:
    body = {"prompt": "x", "stop": ["a", "b", "c", "d", "e"]}
    err = assert_error(await client.post("/v1/completions", json=body), 400)
    assert err["param"] == "stop"


async def test_completions_echo_and_stream(client: httpx.AsyncClient) -> None:
    resp = await client.post(
        "/v1/completions", json={"prompt": "P:", "echo": True, "max_tokens": 1}
    )
    assert resp.json()["choices"][0]["text"] == "P:Hello"
    resp = await client.post("/v1/completions", json={"prompt": "P", "stream": True})
    data = sse_data(resp.text)
    assert data[-1] == "[DONE]"
    assert json.loads(data[0])["object"] == "text_completion"


async def test_models_and_unknown_route(client: httpx.AsyncClient) -> None:
    models = (await client.get("/v1/models")).json()
    assert models["data"][0]["id"] == "fake-model"
    assert_error(await client.get("/v1/nope"), 404, "not_found")
    assert_error(await client.get("/api/generate"), 405, "method_not_allowed")


async def test_openapi_documents_the_routes(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    for path in (
        "/api/generate",
        "/api/health",
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/models",
    ):
        assert path in spec["paths"]
    gen = spec["components"]["schemas"]["GenerateRequest"]["properties"]
    assert {"prompt", "maxTokens", "temperature", "stream"} <= set(gen)
    assert "ErrorResponse" in spec["components"]["schemas"]
