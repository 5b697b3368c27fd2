"""The OpenAI surface on a fake engine (fast): strict validation, model names, n, logprobs,
tool calls, embeddings and tokenize shapes. The real model and the official client are in
test_openai_client.py."""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from core.app import create_app
from core.settings import Settings
from tests.core.api.test_routes import assert_error, sse_data
from tests.support.fakes import FakeEngine

MSGS = [{"role": "user", "content": "hi"}]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


def make(engine: FakeEngine | None = None, **settings: Any) -> tuple[httpx.AsyncClient, FakeEngine]:
    engine = engine or FakeEngine()
    app = create_app(Settings(**settings), engine)  # type: ignore[arg-type]
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
    return client, engine


@pytest.fixture()
async def client() -> AsyncIterator[httpx.AsyncClient]:
    c, _ = make()
    async with c:
        yield c


def chunks_of(resp: httpx.Response) -> list[dict[str, Any]]:
    data = sse_data(resp.text)
    assert data[-1] == "[DONE]"
    return [json.loads(d) for d in data[:-1]]


# -- strict validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/api/generate", {"prompt": "x", "maxTokens": True}, "maxTokens"),
        ("/api/generate", {"prompt": "x", "max_token": 5}, "max_token"),
        ("/api/generate", {"prompt": "x", "temperature": "0.5"}, "temperature"),
        ("/v1/chat/completions", {"messages": MSGS, "presence_penalty": False}, "presence_penalty"),
        ("/v1/chat/completions", {"messages": MSGS, "max_tokens": 5.0}, "max_tokens"),
        ("/v1/chat/completions", {"messages": MSGS, "n": "2"}, "n"),
        ("/v1/chat/completions", {"messages": MSGS, "stream": 1}, "stream"),
        (
            "/v1/chat/completions",
            {
                "messages": MSGS,
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "x", "schema": {}, "strict": 0},
                },
            },
            "response_format.json_schema.strict",
        ),
        ("/v1/chat/completions", {"messages": MSGS, "temprature": 0.5}, "temprature"),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x", "x": 1}]}, None),
        ("/v1/completions", {"prompt": "x", "logprobs": True}, "logprobs"),
        ("/v1/embeddings", {"input": "x", "encoding_format": "float16"}, "encoding_format"),
    ],
)
async def test_types_are_strict_and_unknown_fields_refused(
    client: httpx.AsyncClient, path: str, body: dict[str, Any], param: str | None
) -> None:
    err = assert_error(await client.post(path, json=body), 400)
    if param is not None:
        assert err["param"] == param, err
    else:
        assert err["param"] == "messages.0.x"
    assert "Traceback" not in err["message"]


async def test_unknown_parameters_name_themselves(client: httpx.AsyncClient) -> None:
    err = assert_error(
        await client.post("/v1/chat/completions", json={"messages": MSGS, "temprature": 1}), 400
    )
    assert err["message"] == "unrecognized request argument: 'temprature'"
    assert err["code"] == "invalid_parameter"


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("audio", {"voice": "alloy"}, "audio"),
        ("functions", [], "use 'tools'"),
        ("reasoning_effort", "low", "reasoning"),
        ("metadata", {"a": "b"}, "stored"),
        ("store", True, "not stored"),
        ("service_tier", "flex", "auto"),
    ],
)
async def test_unsupported_openai_parameters_are_refused_with_a_reason(
    client: httpx.AsyncClient, field: str, value: Any, words: str
) -> None:
    err = assert_error(
        await client.post("/v1/chat/completions", json={"messages": MSGS, field: value}), 400
    )
    assert err["param"] == field
    assert words in err["message"]


async def test_values_that_mean_what_the_server_does_are_accepted(
    client: httpx.AsyncClient,
) -> None:
    body = {
        "messages": MSGS,
        "store": False,
        "modalities": ["text"],
        "service_tier": "auto",
        "user": "u1",
        "prompt_cache_key": "k",
        "parallel_tool_calls": True,
    }
    assert (await client.post("/v1/chat/completions", json=body)).status_code == 200
    resp = await client.post("/v1/completions", json={"prompt": "x", "best_of": 1, "suffix": ""})
    assert resp.status_code == 200


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        (
            "/v1/chat/completions",
            {"messages": [*MSGS, {"role": "tool", "content": "18C"}]},
            "messages.1.tool_call_id",
        ),
        (
            "/v1/chat/completions",
            {"messages": [*MSGS, {"role": "tool", "tool_call_id": "c1"}]},
            "messages.1.content",
        ),
        (
            "/v1/chat/completions",
            {
                "messages": [
                    *MSGS,
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {
                                "id": "c1",
                                "type": "function",
                                "function": {"name": "f", "arguments": {"a": 1}},
                            }
                        ],
                    },
                ]
            },
            "messages.1.tool_calls.0.function.arguments",
        ),
        (
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": "x", "tool_call_id": "c1"}]},
            "messages.0.tool_call_id",
        ),
        ("/v1/completions", {"prompt": ""}, "prompt"),
        ("/v1/completions", {"prompt": []}, "prompt"),
        (
            "/v1/chat/completions",
            {"messages": MSGS, "response_format": {"type": "json_schema", "json_schema": None}},
            "response_format.json_schema",
        ),
        ("/v1/chat/completions", {"messages": MSGS, "top_logprobs": 2}, "top_logprobs"),
        (
            "/v1/chat/completions",
            {"messages": MSGS, "top_logprobs": 21, "logprobs": True},
            "top_logprobs",
        ),
        ("/v1/chat/completions", {"messages": MSGS, "logit_bias": {"abc": 1}}, "logit_bias"),
        ("/v1/chat/completions", {"messages": MSGS, "logit_bias": {"5": 101}}, "logit_bias"),
        ("/v1/completions", {"prompt": "x", "best_of": 3}, "best_of"),
        ("/v1/completions", {"prompt": "x", "suffix": "end"}, "suffix"),
        ("/v1/completions", {"prompt": "x", "echo": True, "logprobs": 1}, "logprobs"),
        ("/v1/completions", {"prompt": [1, -5]}, "prompt"),
        ("/v1/chat/completions", {"messages": MSGS, "tool_choice": "required"}, "tool_choice"),
        ("/v1/chat/completions", {"messages": MSGS, "tools": []}, "tools"),
        (
            "/v1/chat/completions",
            {
                "messages": MSGS,
                "tools": TOOLS,
                "tool_choice": {"type": "function", "function": {"name": "other"}},
            },
            "tool_choice.function.name",
        ),
        (
            "/v1/chat/completions",
            {"messages": MSGS, "tools": TOOLS, "response_format": {"type": "json_object"}},
            "response_format",
        ),
        ("/v1/chat/completions", {"messages": MSGS, "tools": TOOLS, "logprobs": True}, "logprobs"),
        ("/v1/chat/completions", {"messages": MSGS, "tools": TOOLS * 2}, "tools.1.function.name"),
        (
            "/v1/chat/completions",
            {
                "messages": MSGS,
                "tools": [
                    {
                        "type": "function",
                        "function": {"name": "f", "parameters": {"type": "string"}},
                    }
                ],
            },
            "tools.0.function.parameters",
        ),
        ("/v1/embeddings", {"input": ""}, "input"),
        ("/v1/embeddings", {"input": []}, "input"),
        ("/v1/embeddings", {"input": ["a", ""]}, "input.1"),
        ("/v1/embeddings", {"input": "a", "dimensions": 3}, "dimensions"),
        ("/detokenize", {"tokens": [-1]}, "tokens"),
    ],
)
async def test_bad_requests_are_400_with_the_parameter(
    client: httpx.AsyncClient, path: str, body: dict[str, Any], param: str
) -> None:
    err = assert_error(await client.post(path, json=body), 400)
    assert err["param"] == param, err
    assert err["code"] != "context_length_exceeded"


# -- model names ---------------------------------------------------------------------------------


async def test_an_unknown_model_is_404_model_not_found() -> None:
    c, _ = make(model_aliases=["gpt-4o-mini"])
    async with c:
        for path, body in (
            ("/v1/chat/completions", {"messages": MSGS}),
            ("/v1/completions", {"prompt": "x"}),
            ("/v1/embeddings", {"input": "x"}),
        ):
            err = assert_error(await c.post(path, json={**body, "model": "gpt-5"}), 404)
            assert (err["code"], err["param"], err["type"]) == (
                "model_not_found",
                "model",
                "invalid_request_error",
            )
            ok = await c.post(path, json={**body, "model": "gpt-4o-mini"})
            assert ok.status_code == 200, ok.text
            assert (await c.post(path, json={**body, "model": "fake-model"})).status_code == 200
        assert (await c.get("/v1/models/fake-model")).json()["id"] == "fake-model"
        assert (await c.get("/v1/models/gpt-4o-mini")).json()["id"] == "fake-model"
        assert_error(await c.get("/v1/models/gpt-5"), 404, "model_not_found")


# -- n and logprobs ------------------------------------------------------------------------------


async def test_n_choices_whole_and_streamed(client: httpx.AsyncClient) -> None:
    body = {"messages": MSGS, "n": 3, "max_tokens": 2}
    whole = (await client.post("/v1/chat/completions", json=body)).json()
    assert [c["index"] for c in whole["choices"]] == [0, 1, 2]
    assert all(c["message"]["content"] == "Hello from" for c in whole["choices"])
    assert whole["usage"]["completion_tokens"] == 6  # every choice counts
    streamed = chunks_of(
        await client.post(
            "/v1/chat/completions",
            json={**body, "stream": True, "stream_options": {"include_usage": True}},
        )
    )
    texts: dict[int, str] = {}
    finishes: dict[int, str] = {}
    for chunk in streamed:
        for c in chunk["choices"]:
            texts[c["index"]] = texts.get(c["index"], "") + (c["delta"].get("content") or "")
            if c["finish_reason"]:
                finishes[c["index"]] = c["finish_reason"]
    assert texts == {0: "Hello from", 1: "Hello from", 2: "Hello from"}
    assert finishes == {0: "length", 1: "length", 2: "length"}
    # Interleaved by index as generated, not one choice after the other.
    order = [c["index"] for ch in streamed for c in ch["choices"] if c["delta"].get("content")]
    assert order[:3] == [0, 1, 2]
    assert streamed[-1]["usage"]["completion_tokens"] == 6


async def test_chat_logprobs_shape_whole_and_streamed(client: httpx.AsyncClient) -> None:
    body = {"messages": MSGS, "logprobs": True, "top_logprobs": 2, "max_tokens": 2}
    choice = (await client.post("/v1/chat/completions", json=body)).json()["choices"][0]
    content = choice["logprobs"]["content"]
    assert [e["token"] for e in content] == ["Hello", " from"]
    assert content[0]["bytes"] == list(b"Hello") and content[0]["logprob"] == -0.5
    assert [t["token"] for t in content[1]["top_logprobs"]] == [" from", " x"]
    streamed = chunks_of(await client.post("/v1/chat/completions", json={**body, "stream": True}))
    entries = [
        e
        for ch in streamed
        for c in ch["choices"]
        if c["logprobs"]
        for e in c["logprobs"]["content"]
    ]
    assert entries == content


async def test_completion_logprobs_legacy_shape(client: httpx.AsyncClient) -> None:
    body = {"prompt": "x", "logprobs": 1, "max_tokens": 3}
    lp = (await client.post("/v1/completions", json=body)).json()["choices"][0]["logprobs"]
    assert lp["tokens"] == ["Hello", " from", " the"]
    assert lp["token_logprobs"] == [-0.5, -0.5, -0.5]
    assert lp["top_logprobs"] == [{"Hello": -0.5}, {" from": -0.5}, {" the": -0.5}]
    assert lp["text_offset"] == [0, 5, 10]
    streamed = chunks_of(await client.post("/v1/completions", json={**body, "stream": True}))
    offsets = [
        o
        for ch in streamed
        for c in ch["choices"]
        if c["logprobs"]
        for o in c["logprobs"]["text_offset"]
    ]
    assert offsets == [0, 5, 10]


async def test_logprobs_never_reveal_redacted_text() -> None:
    words = ["My", " card", " is", " 4111", " 1111", " 1111", " 1111", " ok", "."]
    c, _ = make(FakeEngine(words))
    async with c:
        body = {"messages": MSGS, "logprobs": True, "top_logprobs": 1}
        whole = (await c.post("/v1/chat/completions", json=body)).json()
        streamed = chunks_of(await c.post("/v1/chat/completions", json={**body, "stream": True}))
    text = whole["choices"][0]["message"]["content"]
    assert text == "My card is [REDACTED] ok."
    tokens = [e["token"] for e in whole["choices"][0]["logprobs"]["content"]]
    assert tokens == ["My", " card", " is", "[REDACTED]", "", "", "", " ok", "."]
    assert "1111" not in json.dumps(whole)
    assert "1111" not in "".join(json.dumps(ch) for ch in streamed)
    stream_tokens = [
        e["token"]
        for ch in streamed
        for c in ch["choices"]
        if c["logprobs"]
        for e in c["logprobs"]["content"]
    ]
    assert stream_tokens == tokens


# -- tool calls ----------------------------------------------------------------------------------

CALL_WORDS = [
    "<tool",
    '_call>{"name": "get_',
    'weather", "arguments": {"ci',
    'ty": "Pa',
    'ris"}}</tool_call>',
]


async def test_tool_calls_whole_and_as_stream_deltas() -> None:
    c, engine = make(FakeEngine(CALL_WORDS))
    async with c:
        body = {"messages": MSGS, "tools": TOOLS, "tool_choice": "required"}
        whole = (await c.post("/v1/chat/completions", json=body)).json()
        streamed = chunks_of(await c.post("/v1/chat/completions", json={**body, "stream": True}))
    choice = whole["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    [call] = choice["message"]["tool_calls"]
    assert call["type"] == "function" and call["id"].startswith("call_")
    assert call["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}
    request = engine.requests[0]
    assert request.grammar is not None and "get_weather" in request.grammar
    assert request.grammar_triggers == ()  # required: the grammar holds from the first token
    assert engine.tools[0][0]["function"]["name"] == "get_weather"
    deltas = [
        c["delta"]["tool_calls"][0]
        for ch in streamed
        for c in ch["choices"]
        if c["delta"].get("tool_calls")
    ]
    assert deltas[0]["id"].startswith("call_") and deltas[0]["function"]["name"] == "get_weather"
    assert deltas[0]["type"] == "function" and deltas[0]["function"]["arguments"] == ""
    pieces = [d["function"]["arguments"] for d in deltas[1:]]
    assert len(pieces) > 1 and "".join(pieces) == '{"city": "Paris"}'
    assert all("id" not in d for d in deltas[1:])
    assert [c["finish_reason"] for ch in streamed for c in ch["choices"] if c["finish_reason"]] == [
        "tool_calls"
    ]


async def test_auto_uses_a_lazy_grammar_and_none_renders_no_tools() -> None:
    c, engine = make()
    async with c:
        auto = await c.post("/v1/chat/completions", json={"messages": MSGS, "tools": TOOLS})
        none = await c.post(
            "/v1/chat/completions", json={"messages": MSGS, "tools": TOOLS, "tool_choice": "none"}
        )
    assert auto.json()["choices"][0]["message"]["content"] == "Hello from the fake engine."
    assert auto.json()["choices"][0]["finish_reason"] == "stop"
    assert engine.requests[0].grammar_triggers and engine.requests[0].grammar
    assert none.status_code == 200
    assert engine.requests[1].grammar is None and engine.tools[1] is None


async def test_a_model_without_the_generic_format_is_parsed_at_the_end() -> None:
    engine = FakeEngine(['{"name": "get_weather", ', '"parameters": {"city": "Oslo"}}'])
    engine.tool_call_tag = None  # e.g. a Llama 3.x template
    c, _ = make(engine)
    async with c:
        body = {"messages": MSGS, "tools": TOOLS, "stream": True}
        streamed = chunks_of(await c.post("/v1/chat/completions", json=body))
    calls = [
        c["delta"]["tool_calls"][0]
        for ch in streamed
        for c in ch["choices"]
        if c["delta"].get("tool_calls")
    ]
    assert calls[0]["function"]["name"] == "get_weather"
    assert json.loads("".join(c["function"]["arguments"] for c in calls)) == {"city": "Oslo"}
    assert engine.requests[0].grammar is None  # auto, and no format to hold the model to


async def test_history_with_tool_calls_reaches_the_template() -> None:
    c, engine = make()
    history = [
        *MSGS,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
    ]
    async with c:
        resp = await c.post("/v1/chat/completions", json={"messages": history, "tools": TOOLS})
    assert resp.status_code == 200, resp.text
    segments = engine.requests[0].prompt
    assert any(s.text == "18C" and not s.special for s in segments)


# -- embeddings and tokenize ---------------------------------------------------------------------


async def test_embeddings_shapes(client: httpx.AsyncClient) -> None:
    floats = (await client.post("/v1/embeddings", json={"input": ["ab", "cd"]})).json()
    assert floats["object"] == "list" and floats["model"] == "fake-model"
    assert [d["index"] for d in floats["data"]] == [0, 1]
    assert floats["usage"] == {"prompt_tokens": 4, "total_tokens": 4}
    b64 = (
        await client.post(
            "/v1/embeddings", json={"input": ["ab", "cd"], "encoding_format": "base64"}
        )
    ).json()
    for f, b in zip(floats["data"], b64["data"], strict=True):
        raw = base64.b64decode(b["embedding"])
        assert list(struct.unpack(f"<{len(raw) // 4}f", raw)) == f["embedding"]
    tokens = (await client.post("/v1/embeddings", json={"input": [97, 98]})).json()
    assert tokens["data"][0]["embedding"] == floats["data"][0]["embedding"]
    assert (
        await client.post("/v1/embeddings", json={"input": "x", "dimensions": 4})
    ).status_code == 200


async def test_embeddings_can_be_switched_off() -> None:
    c, _ = make(embeddings={"enabled": False})
    async with c:
        assert_error(await c.post("/v1/embeddings", json={"input": "x"}), 404, "not_found")


async def test_tokenize_and_detokenize(client: httpx.AsyncClient) -> None:
    resp = await client.post("/tokenize", json={"content": "hé"})
    assert resp.json() == {"tokens": [104, 233]}
    pieces = (await client.post("/tokenize", json={"content": "h", "with_pieces": True})).json()
    assert pieces == {"tokens": [{"id": 104, "piece": "h"}]}
    assert (await client.post("/detokenize", json={"tokens": [104, 233]})).json() == {
        "content": "hé"
    }
