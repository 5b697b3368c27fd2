"""The OpenAI surface with the official `openai` client against the real bundled model over
loopback HTTP: tools (a two-turn agent loop, the stream helpers), logprobs, n, embeddings,
errors, clean UTF-8 at a length cut, compact JSON, /tokenize."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema
import openai
import pytest
from openai import OpenAI
from pydantic import BaseModel

from tests.conftest import LiveServer, live_server, model_settings

pytestmark = pytest.mark.integration

WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]}},
    "required": ["city", "unit"],
    "additionalProperties": False,
}
TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather in a city",
            "parameters": WEATHER,
        },
    },
    {
        "type": "function",
        "function": {
            "name": "add",
            "description": "Add two numbers",
            "parameters": {
                "type": "object",
                "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
                "required": ["a", "b"],
            },
        },
    },
]
JAPANESE = "Translate 'thank you' to Japanese."


@pytest.fixture()
def client(real_server: LiveServer) -> Iterator[OpenAI]:
    with OpenAI(base_url=real_server.base_url + "/v1", api_key="unused", max_retries=0) as c:
        yield c


# -- tools ---------------------------------------------------------------------------------------


def test_a_two_turn_agent_loop(client: OpenAI) -> None:
    messages: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = client.chat.completions.create(
        model="smollm2",
        messages=messages,
        tools=TOOLS,
        tool_choice="required",
        temperature=0,
        max_tokens=80,
    )
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls or []
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "get_weather"
    arguments = json.loads(call.function.arguments)
    jsonschema.validate(arguments, WEATHER)  # the grammar held the 135M model to the schema
    # The SDK's own message object goes back into the history, as agent loops do.
    messages.append(choice.message)
    messages.append(
        {
            "role": "tool",
            "tool_call_id": call.id,
            "content": json.dumps({"city": arguments["city"], "temperature": 18, "sky": "sunny"}),
        }
    )
    second = client.chat.completions.create(
        model="smollm2", messages=messages, tools=TOOLS, temperature=0, max_tokens=60
    )
    answer = second.choices[0]
    assert answer.finish_reason == "stop"
    assert answer.message.tool_calls is None
    assert answer.message.content
    # The tool's result reached the model (the small model repeats it rather than phrasing it).
    assert "18" in answer.message.content


class GetWeather(BaseModel):
    city: str
    unit: str


def test_a_named_strict_function_parses_with_the_sdk_helper(client: OpenAI) -> None:
    tool = openai.pydantic_function_tool(GetWeather)
    completion = client.chat.completions.parse(
        model="smollm2",
        messages=[{"role": "user", "content": "Weather in Oslo, in celsius?"}],
        tools=[tool],
        tool_choice={"type": "function", "function": {"name": "GetWeather"}},
        temperature=0,
        max_tokens=60,
    )
    [call] = completion.choices[0].message.tool_calls or []
    assert isinstance(call.function.parsed_arguments, GetWeather)
    assert call.function.parsed_arguments.city


def test_streamed_tool_calls_assemble_with_the_stream_helper(client: OpenAI) -> None:
    argument_deltas = 0
    with client.chat.completions.stream(
        model="smollm2",
        messages=[{"role": "user", "content": "What is 2 plus 3?"}],
        tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "add"}},
        temperature=0,
        max_tokens=60,
    ) as stream:
        for event in stream:
            if event.type == "tool_calls.function.arguments.delta":
                argument_deltas += 1
        final = stream.get_final_completion()
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls or []
    assert call.function.name == "add"
    arguments = json.loads(call.function.arguments)
    assert isinstance(arguments["a"], int | float) and isinstance(arguments["b"], int | float)
    assert argument_deltas > 1  # the arguments arrived in pieces


def test_auto_may_answer_in_text(client: OpenAI) -> None:
    reply = client.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": "Say hello."}],
        tools=TOOLS,
        temperature=0,
        max_tokens=16,
    )
    choice = reply.choices[0]
    assert choice.message.content and choice.message.tool_calls is None
    assert choice.finish_reason in {"stop", "length"}


# -- logprobs and n ------------------------------------------------------------------------------


def test_chat_logprobs_whole_and_streamed(client: OpenAI) -> None:
    body: dict[str, Any] = {
        "model": "smollm2",
        # No near-ties in its greedy answer: the two calls below give the same tokens.
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
        "temperature": 0,
        "max_tokens": 8,
        "logprobs": True,
        "top_logprobs": 3,
    }
    whole = client.chat.completions.create(**body)
    choice = whole.choices[0]
    assert choice.logprobs is not None and choice.logprobs.content
    entries = choice.logprobs.content
    assert "".join(e.token for e in entries) == choice.message.content
    for e in entries:
        assert e.logprob <= 0 and len(e.top_logprobs) == 3
        assert bytes(e.bytes or []).decode() == e.token
        # Greedy: the token taken is the most likely one, and its value is that one's.
        assert e.top_logprobs[0].token == e.token
        assert math.isclose(e.top_logprobs[0].logprob, e.logprob)
        assert [t.logprob for t in e.top_logprobs] == sorted(
            (t.logprob for t in e.top_logprobs), reverse=True
        )
    streamed = []
    for chunk in client.chat.completions.create(**body, stream=True):
        for c in chunk.choices:
            if c.logprobs and c.logprobs.content:
                streamed += c.logprobs.content
    assert [e.token for e in streamed] == [e.token for e in entries]


def test_completion_logprobs(client: OpenAI) -> None:
    reply = client.completions.create(
        model="smollm2", prompt="The capital of France is", max_tokens=5, temperature=0, logprobs=2
    )
    lp = reply.choices[0].logprobs
    assert lp is not None and lp.tokens and lp.token_logprobs and lp.top_logprobs
    assert "".join(lp.tokens) == reply.choices[0].text
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == 5
    assert all(len(top) <= 2 and max(top.values()) <= 0 for top in lp.top_logprobs)
    assert lp.text_offset == [sum(len(t) for t in lp.tokens[:i]) for i in range(5)]


def test_n_choices(client: OpenAI) -> None:
    # A prompt whose greedy answer has no near-ties: where a shared server's KV cells sit can
    # change low-order float results (see the determinism note), which would flip a near-tie.
    messages: Any = [{"role": "user", "content": "What is the capital of France?"}]
    one = [
        client.chat.completions.create(
            model="smollm2", messages=messages, temperature=0, max_tokens=6
        )
        for _ in range(2)
    ][1]
    three = client.chat.completions.create(
        model="smollm2", messages=messages, temperature=0, max_tokens=6, n=3
    )
    assert [c.index for c in three.choices] == [0, 1, 2]
    assert {c.message.content for c in three.choices} == {one.choices[0].message.content}
    assert one.usage is not None and three.usage is not None
    assert three.usage.completion_tokens == 3 * one.usage.completion_tokens
    assert three.usage.prompt_tokens == one.usage.prompt_tokens


# -- embeddings ----------------------------------------------------------------------------------


def _cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))  # the vectors are unit length


def test_embeddings(client: OpenAI) -> None:
    texts = [
        "The cat sat on the mat.",
        "A cat was sitting on the rug.",
        "Stock markets fell sharply today.",
        "The cat sat on the mat.",
    ]
    floats = client.embeddings.create(model="smollm2", input=texts, encoding_format="float")
    # The SDK asks for base64 by default and decodes it to floats.
    decoded = client.embeddings.create(model="smollm2", input=texts)
    vectors = [d.embedding for d in floats.data]
    assert [d.embedding for d in decoded.data] == vectors
    assert len(vectors[0]) == 576 and math.isclose(_cosine(vectors[0], vectors[0]), 1, rel_tol=1e-5)
    assert vectors[0] == vectors[3]
    assert _cosine(vectors[0], vectors[1]) > _cosine(vectors[0], vectors[2])
    assert floats.model == "smollm2-135m-instruct"
    assert floats.usage.prompt_tokens == floats.usage.total_tokens > 20
    alone = [
        client.embeddings.create(model="smollm2", input=texts[1]).data[0].embedding
        for _ in range(2)
    ]
    assert alone[0] == alone[1]
    # In another batch the same text may differ in the last bits only.
    assert _cosine(alone[0], vectors[1]) > 0.99999
    with pytest.raises(openai.BadRequestError) as err:
        client.embeddings.create(model="smollm2", input="x", dimensions=64)
    assert err.value.param == "dimensions"  # type: ignore[attr-defined]


def test_seeded_choices_are_the_same_whole_and_streamed() -> None:
    # Without the prefix cache every request's KV cells sit in the same places; with it, where
    # earlier requests left cells changes low-order float results, and a draw at temperature 0.9
    # that lands next to a boundary between two tokens can flip (the determinism note).
    messages: Any = [{"role": "user", "content": "What is the capital of France?"}]
    with (
        live_server(model_settings(engine={"prefix_cache": False})) as server,
        OpenAI(base_url=server.base_url + "/v1", api_key="x", max_retries=0) as client,
    ):
        seeded: dict[str, Any] = {
            "model": "smollm2",
            "messages": messages,
            "temperature": 0.9,
            "seed": 3,
            "max_tokens": 10,
            "n": 2,
        }
        whole = client.chat.completions.create(**seeded)
        texts: dict[int, str] = {}
        finishes: dict[int, str] = {}
        usage = None
        for chunk in client.chat.completions.create(
            **seeded, stream=True, stream_options={"include_usage": True}
        ):
            usage = chunk.usage or usage
            for c in chunk.choices:
                texts[c.index] = texts.get(c.index, "") + (c.delta.content or "")
                if c.finish_reason:
                    finishes[c.index] = c.finish_reason
        assert set(texts) == {0, 1} and set(finishes) == {0, 1}
        assert texts[0] != texts[1]  # choice i draws with seed + i
        assert texts == {c.index: c.message.content for c in whole.choices}
        assert finishes == {c.index: c.finish_reason for c in whole.choices}
        assert usage == whole.usage


def test_a_separate_embedding_model_setting() -> None:
    """The same bundled GGUF stands in for a separate embedding model."""
    from core.sources import bundled_model_path

    settings = model_settings(
        embeddings={"model": str(bundled_model_path()), "model_alias": "embedder"}
    )
    with (
        live_server(settings) as server,
        OpenAI(base_url=server.base_url + "/v1", api_key="x", max_retries=0) as c,
    ):
        assert [m.id for m in c.models.list().data] == ["smollm2-135m-instruct", "embedder"]
        reply = c.embeddings.create(model="embedder", input=["a red apple", "a red apple"])
        assert reply.model == "embedder"
        assert reply.data[0].embedding == reply.data[1].embedding
        with pytest.raises(openai.NotFoundError):
            c.embeddings.create(model="smollm2", input="x")
        # Generation still answers beside it.
        chat = c.chat.completions.create(
            model="smollm2", messages=[{"role": "user", "content": "Hi"}], max_tokens=4
        )
        assert chat.choices[0].message.content


# -- errors --------------------------------------------------------------------------------------


def test_errors_through_the_sdk(client: OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x"}], max_tokens=2
        )
    assert missing.value.code == "model_not_found"  # type: ignore[attr-defined]
    for extra, param in (
        ({"presence_penalty": False}, "presence_penalty"),
        ({"max_tokens": True}, "max_tokens"),
        ({"frobnicate": 1}, "frobnicate"),
        ({"audio": {"voice": "alloy", "format": "mp3"}}, "audio"),
    ):
        with pytest.raises(openai.BadRequestError) as bad:
            client.chat.completions.create(
                model="smollm2",
                messages=[{"role": "user", "content": "x"}],
                extra_body=extra,
            )
        assert bad.value.param == param  # type: ignore[attr-defined]
    with pytest.raises(openai.BadRequestError) as empty:
        client.completions.create(model="smollm2", prompt="", max_tokens=2)
    assert empty.value.param == "prompt"  # type: ignore[attr-defined]
    assert empty.value.code != "context_length_exceeded"  # type: ignore[attr-defined]


# -- output quality at the edges -----------------------------------------------------------------


def test_a_length_cut_never_ends_in_a_broken_character(client: OpenAI) -> None:
    """Each reply is checked against its own tokens' bytes (logprobs), never against another
    call's: on a shared server a near-tie may go either way from one call to the next."""
    cuts_inside = 0
    for n in range(1, 6):
        body: dict[str, Any] = {
            "model": "smollm2",
            "messages": [{"role": "user", "content": JAPANESE}],
            "temperature": 0,
            "max_tokens": n,
            "logprobs": True,
        }
        whole = client.chat.completions.create(**body).choices[0]
        text = whole.message.content or ""
        raw = b"".join(bytes(e.bytes or []) for e in (whole.logprobs.content or []))  # type: ignore[union-attr]
        streamed, streamed_raw = "", b""
        for chunk in client.chat.completions.create(**body, stream=True):
            for c in chunk.choices:
                streamed += c.delta.content or ""
                if c.logprobs and c.logprobs.content:
                    streamed_raw += b"".join(bytes(e.bytes or []) for e in c.logprobs.content)
        for reply, tokens in ((text, raw), (streamed, streamed_raw)):
            assert "\ufffd" not in reply
            # The whole characters of the tokens generated; a cut one is dropped.
            assert reply == tokens.decode("utf-8", "ignore")
            try:
                tokens.decode()
            except UnicodeDecodeError:
                cuts_inside += 1  # this reply was cut inside a character
    assert cuts_inside >= 2  # the test really cut inside characters


def test_json_object_is_compact_enough_for_a_small_budget(client: OpenAI) -> None:
    reply = client.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": "Give me a JSON object with a key name."}],
        response_format={"type": "json_object"},
        max_tokens=40,
        temperature=0,
    )
    text = reply.choices[0].message.content or ""
    assert "\n" not in text and "  " not in text
    assert "name" in json.loads(text)


def test_tokenize_and_detokenize(http: httpx.Client, real_server: LiveServer) -> None:
    text = "Hello <|im_end|> wörld"
    tokens = http.post("/tokenize", json={"content": text}).json()["tokens"]
    from core.engine.types import PromptSegment

    assert tokens == real_server.engine.tokenize((PromptSegment(text, True),), add_bos=False)
    assert 2 in tokens  # parse_special: <|im_end|> is one token
    plain = http.post("/tokenize", json={"content": text, "parse_special": False}).json()
    assert 2 not in plain["tokens"]
    pieces = http.post("/tokenize", json={"content": text, "with_pieces": True}).json()["tokens"]
    assert [p["id"] for p in pieces] == tokens
    joined = b"".join(
        p["piece"].encode() if isinstance(p["piece"], str) else bytes(p["piece"]) for p in pieces
    )
    assert joined == text.encode()
    assert http.post("/detokenize", json={"tokens": tokens}).json()["content"] == text
    bad = http.post("/detokenize", json={"tokens": [10**7]})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "tokens"
