"""Continuous batching and the prefix cache on the real bundled model (in-process engine)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest

from core.engine.grammar import grammar_for
from core.engine.llama import LlamaEngine
from core.engine.types import (
    ChatMessage,
    Completion,
    GenerationRequest,
    PromptSegment,
    SamplingParams,
)
from tests.conftest import model_settings

pytestmark = pytest.mark.integration

PROMPTS = [
    ("What is the capital of France?", 24),
    ("Write a short poem about the sea.", 40),
    ("Count from one to ten.", 16),
    ("Explain gravity to a child.", 32),
]


def _engine(**engine: object) -> LlamaEngine:
    # One thread: on a busy shared CPU two threads wait on each other at every graph node.
    e = LlamaEngine(model_settings(engine={"slots": 4, "n_threads": 1, **engine}))
    e.load()
    return e


@pytest.fixture()
def engine() -> Iterator[LlamaEngine]:
    e = _engine()
    yield e
    e.close()


def _request(
    e: LlamaEngine, text: str, n: int, sampling: SamplingParams, **kw: object
) -> GenerationRequest:
    return GenerationRequest(
        prompt=e.render_chat([ChatMessage("user", text)]),
        max_tokens=n,
        sampling=sampling,
        **kw,  # type: ignore[arg-type]
    )


GREEDY = SamplingParams(temperature=0)
SEEDED = SamplingParams(temperature=0.9, seed=42)


async def _alone(sampling: SamplingParams) -> list[Completion]:
    """Each prompt on its own, one after the other, with a cold cache every time."""
    e = _engine(prefix_cache=False)
    try:
        return [await e.submit(_request(e, p, n, sampling)).collect() for p, n in PROMPTS]
    finally:
        e.close()


@pytest.mark.parametrize("sampling", [GREEDY, SEEDED], ids=["greedy", "seeded"])
async def test_output_is_the_same_alone_and_batched(
    engine: LlamaEngine, sampling: SamplingParams
) -> None:
    alone = await _alone(sampling)
    streams = [engine.submit(_request(engine, p, n, sampling)) for p, n in PROMPTS]
    batched = await asyncio.gather(*(s.collect() for s in streams))
    assert [c.text for c in batched] == [c.text for c in alone]
    assert [c.completion_tokens for c in batched] == [c.completion_tokens for c in alone]
    # They really ran together: far fewer decode steps than tokens generated.
    stats = engine.scheduler_stats()
    assert stats is not None
    assert stats.steps < sum(c.completion_tokens for c in batched) * 0.6


async def test_a_newcomer_joins_running_streams_without_changing_them(
    engine: LlamaEngine,
) -> None:
    alone = await _alone(GREEDY)
    first = engine.submit(_request(engine, *PROMPTS[1], GREEDY))
    seen = 0
    async for _ in first:  # wait until the first stream is well under way
        seen += 1
        if seen == 5:
            break
    rest = [engine.submit(_request(engine, p, n, GREEDY)) for p, n in PROMPTS[2:]]
    done = [await s.collect() for s in rest]
    async for _ in first:
        pass
    assert first.result is not None
    assert first.result.text == alone[1].text
    assert [c.text for c in done] == [c.text for c in alone[2:]]


async def test_a_follow_up_turn_reuses_the_cached_prefix(engine: LlamaEngine) -> None:
    history = [
        ChatMessage("system", "You are a helpful assistant. " * 40),
        ChatMessage("user", "Tell me about the moon."),
    ]
    first_req = GenerationRequest(
        prompt=engine.render_chat(history), max_tokens=24, sampling=GREEDY
    )
    first = await engine.submit(first_req).collect()
    assert first.cached_tokens == 0
    follow = [
        *history,
        ChatMessage("assistant", first.text),
        ChatMessage("user", "And the sun?"),
    ]
    second = await engine.submit(
        GenerationRequest(prompt=engine.render_chat(follow), max_tokens=8, sampling=GREEDY)
    ).collect()
    # The whole first-turn prompt (and most of the reply) came from the cache.
    assert second.cached_tokens >= first.prompt_tokens
    assert second.prompt_tokens - second.cached_tokens < 40
    assert second.text


HISTORY = [
    ChatMessage("system", "You are a helpful assistant. " * 40),
    ChatMessage("user", "Tell me about the moon."),
]


async def _conversation(e: LlamaEngine) -> tuple[Completion, Completion, int]:
    """A first turn, another request in another slot, then the follow-up turn; and the KV
    cells in use just before the follow-up (when the host-memory store holds the first turn's
    cells, if it took them)."""
    first = await e.submit(
        GenerationRequest(prompt=e.render_chat(HISTORY), max_tokens=24, sampling=GREEDY)
    ).collect()
    other = GenerationRequest(
        prompt=(PromptSegment("1, 2, 3, 4,", special=True),), max_tokens=4, sampling=GREEDY
    )
    await e.submit(other).collect()
    cells = e.stats().kv_cells_used
    held = _held(e)
    follow = [*HISTORY, ChatMessage("assistant", first.text), ChatMessage("user", "And the sun?")]
    second = await e.submit(
        GenerationRequest(prompt=e.render_chat(follow), max_tokens=16, sampling=GREEDY)
    ).collect()
    # The first turn's copy went back into a slot; the other request's few cells, no longer
    # than a prefill chunk, were dropped rather than kept.
    assert _held(e) == 0 and (held > 0) == (cells < first.prompt_tokens)
    return first, second, cells


def _held(e: LlamaEngine) -> int:
    stats = e.scheduler_stats()
    assert stats is not None
    return stats.idle_cache_bytes


async def test_idle_cells_leave_the_context_and_come_back_for_a_follow_up() -> None:
    moved = _engine()
    try:
        first, second, cells = await _conversation(moved)
    finally:
        moved.close()
    assert cells < first.prompt_tokens  # only the other request's cells were left in it
    assert second.cached_tokens >= first.prompt_tokens  # ... and the first turn's came back
    kept = _engine(idle_cache_mb=0)
    try:
        first_kept, second_kept, cells_kept = await _conversation(kept)
    finally:
        kept.close()
    assert cells_kept > first_kept.prompt_tokens  # without the store they stay in the context
    assert second_kept.cached_tokens == second.cached_tokens
    assert (first.text, second.text) == (first_kept.text, second_kept.text)  # exactly the same


async def test_idle_cells_too_large_for_the_store_stay_in_the_context() -> None:
    e = _engine(idle_cache_mb=1)  # the first turn's cells take several MiB
    try:
        first, second, cells = await _conversation(e)
    finally:
        e.close()
    assert cells > first.prompt_tokens
    assert second.cached_tokens >= first.prompt_tokens


async def test_concurrent_requests_share_a_common_prefix(engine: LlamaEngine) -> None:
    system = ChatMessage("system", "Answer in one short sentence. " * 20)
    base = await engine.submit(
        GenerationRequest(
            prompt=engine.render_chat([system, ChatMessage("user", "Hi")]),
            max_tokens=4,
            sampling=GREEDY,
        )
    ).collect()
    streams = [
        engine.submit(
            GenerationRequest(
                prompt=engine.render_chat([system, ChatMessage("user", q)]),
                max_tokens=6,
                sampling=GREEDY,
            )
        )
        for q in ("Why is the sky blue?", "What is rain?", "Name a fruit.")
    ]
    results = [await s.collect() for s in streams]
    # Every request found the shared system prompt in the cache (copied with seq_cp where the
    # slot it got held something else).
    assert all(r.cached_tokens >= base.prompt_tokens - 8 for r in results)


async def test_grammar_stops_and_sampling_hold_per_request_in_one_batch(
    engine: LlamaEngine,
) -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    }
    json_req = _request(
        engine,
        "Give a person with a name and an age as JSON.",
        60,
        GREEDY,
        grammar=grammar_for("json_schema", schema),
    )
    stop_req = GenerationRequest(
        prompt=engine.render_chat([ChatMessage("user", "List: 1, 2, 3, 4, 5, 6, 7,")]),
        max_tokens=30,
        sampling=GREEDY,
        stop=(",",),
    )
    free_req = _request(engine, "Tell me a story.", 20, SEEDED)
    streams = [engine.submit(r) for r in (json_req, stop_req, free_req)]
    as_json, stopped, free = [await s.collect() for s in streams]
    data = json.loads(as_json.text)
    assert isinstance(data["name"], str) and isinstance(data["age"], int)
    assert as_json.finish_reason == "stop"
    assert "," not in stopped.text and stopped.finish_reason in {"stop", "length"}
    assert free.completion_tokens == 20


async def test_cancelled_stream_leaves_and_frees_its_slot(engine: LlamaEngine) -> None:
    long = engine.submit(_request(engine, "Write a very long story.", 800, SEEDED))
    other = engine.submit(_request(engine, *PROMPTS[0], GREEDY))
    async for _ in long:
        long.cancel()
        break
    async for _ in long:
        pass
    assert long.result is not None and long.result.finish_reason == "cancelled"
    assert long.result.completion_tokens < 800
    assert (await other.collect()).text
    assert engine.stats().active == 0


async def test_a_full_kv_cache_ends_requests_cleanly() -> None:
    # 256 cells shared by 4 slots that each want ~200: the cache fills up mid-generation.
    e = _engine(n_ctx=256, n_batch=64)
    try:
        streams = [
            e.submit(_request(e, f"Write a long story about {w}.", 400, SEEDED))
            for w in ("cats", "dogs", "ships", "trees")
        ]
        results = [await s.collect() for s in streams]
        assert all(r.finish_reason == "length" for r in results)
        assert all(r.completion_tokens > 0 for r in results)
        assert sum(r.prompt_tokens + r.completion_tokens for r in results) > 256
        after = await e.submit(_request(e, *PROMPTS[0], GREEDY)).collect()
        assert after.text
    finally:
        e.close()
