"""n choices, log-probabilities, UTF-8 at a cut and embeddings in the real engine (in-process)."""

from __future__ import annotations

import array
import asyncio
import math
from collections.abc import Iterator

import pytest

from core.engine.grammar import JSON_OBJECT_GBNF
from core.engine.llama import LlamaEngine
from core.engine.types import ChatMessage, GenerationRequest, SamplingParams
from tests.conftest import model_settings

pytestmark = pytest.mark.integration

GREEDY = SamplingParams(temperature=0)
SEEDED = SamplingParams(temperature=0.9, seed=42)


def _engine(**engine: object) -> LlamaEngine:
    e = LlamaEngine(model_settings(engine={"slots": 4, "n_threads": 1, **engine}))
    e.load()
    return e


@pytest.fixture(scope="module")
def engine() -> Iterator[LlamaEngine]:
    e = _engine()
    yield e
    e.close()


@pytest.fixture(scope="module")
def solo() -> Iterator[LlamaEngine]:
    """One slot, no prefix cache: every request starts from an empty KV cache, so two runs of a
    prompt compute exactly the same floats (cells in the same places)."""
    e = _engine(slots=1, prefix_cache=False)
    yield e
    e.close()


def _request(e: LlamaEngine, text: str, n_tokens: int, **kw: object) -> GenerationRequest:
    return GenerationRequest(
        prompt=e.render_chat([ChatMessage("user", text)]),
        max_tokens=n_tokens,
        **kw,  # type: ignore[arg-type]
    )


async def test_n_choices_evaluate_the_prompt_once_and_decode_together() -> None:
    e = _engine(prefix_cache=False)
    try:
        one = await e.submit(_request(e, "Name three fruits.", 12, sampling=GREEDY)).collect()
        before = e.scheduler_stats()
        three = await e.submit(
            _request(e, "Name three fruits.", 12, sampling=GREEDY, n=3)
        ).collect()
        after = e.scheduler_stats()
        assert before is not None and after is not None
        assert [c.text for c in three.all_choices()] == [one.text] * 3
        assert three.completion_tokens == 3 * one.completion_tokens
        # As many decode steps as one choice alone: one prompt evaluation, then the three
        # choices side by side in every step.
        assert after.steps - before.steps == before.steps
        assert e.stats().active == 0
    finally:
        e.close()


async def test_seeded_choices_differ_and_the_first_is_the_single_run(engine: LlamaEngine) -> None:
    single = await engine.submit(_request(engine, "Tell me a fact.", 12, sampling=SEEDED)).collect()
    two = await engine.submit(
        _request(engine, "Tell me a fact.", 12, sampling=SEEDED, n=2)
    ).collect()
    texts = [c.text for c in two.all_choices()]
    assert texts[0] == single.text and texts[1] != texts[0]


@pytest.mark.parametrize(
    ("sampling", "extra"),
    [
        (GREEDY, {}),
        (SEEDED, {}),
        (SamplingParams(temperature=0.7, seed=5, repeat_penalty=1.3), {"logit_bias": ((13, 5.0),)}),
        (GREEDY, {"grammar": JSON_OBJECT_GBNF}),
    ],
    ids=["greedy", "seeded", "penalties-bias", "grammar"],
)
async def test_asking_for_logprobs_does_not_change_the_output(
    solo: LlamaEngine, sampling: SamplingParams, extra: dict[str, object]
) -> None:
    plain = await solo.submit(
        _request(solo, "Describe the sea.", 16, sampling=sampling, **extra)
    ).collect()
    scored = await solo.submit(
        _request(solo, "Describe the sea.", 16, sampling=sampling, logprobs=3, **extra)
    ).collect()
    assert scored.text == plain.text
    assert scored.logprobs is not None and len(scored.logprobs) == scored.completion_tokens
    assert (
        b"".join(e.piece for e in scored.logprobs)
        .decode("utf-8", "replace")
        .startswith(plain.text[:8])
    )
    for entry in scored.logprobs:
        assert entry.logprob <= 0 and len(entry.top) == 3
        values = [v for _, v in entry.top]
        assert values == sorted(values, reverse=True)
        assert sum(math.exp(v) for v in values) <= 1 + 1e-6


async def test_a_grammar_shows_in_the_logprobs(engine: LlamaEngine) -> None:
    """Log-probabilities come after the grammar: tokens it forbids never appear, and those it
    allows share all the probability."""
    grammar = 'root ::= "yes" | "no"'
    result = await engine.submit(
        _request(engine, "Is the sky blue?", 4, sampling=GREEDY, grammar=grammar, logprobs=20)
    ).collect()
    assert result.text in {"yes", "no"}
    assert result.logprobs is not None
    first = result.logprobs[0]
    assert all(b"yes".startswith(p) or b"no".startswith(p) for p, _ in first.top)
    assert math.isclose(sum(math.exp(v) for _, v in first.top), 1.0, rel_tol=1e-4)


async def test_a_cut_inside_a_character_drops_it(engine: LlamaEngine) -> None:
    prompt = "Translate 'thank you' to Japanese."
    cuts_inside = 0
    for n in range(1, 8):
        cut = await engine.submit(
            _request(engine, prompt, n, sampling=GREEDY, logprobs=0)
        ).collect()
        assert cut.logprobs is not None and "\ufffd" not in cut.text
        pieces = b"".join(e.piece for e in cut.logprobs)
        assert cut.text == pieces.decode("utf-8", "ignore")  # whole characters only
        try:
            pieces.decode()
        except UnicodeDecodeError:
            cuts_inside += 1
    assert cuts_inside >= 2


async def test_embeddings_run_beside_generation_without_changing_it(solo: LlamaEngine) -> None:
    alone = await solo.submit(_request(solo, "Write a haiku.", 24, sampling=GREEDY)).collect()
    stream = solo.submit(_request(solo, "Write a haiku.", 24, sampling=GREEDY))
    texts = ["a dog runs in the park"] * 3 + ["quarterly revenue grew"] * 2
    embedded, generated = await asyncio.gather(solo.embed(texts), stream.collect())
    assert generated.text == alone.text
    vectors = [array.array("f", v).tolist() for v in embedded.vectors]
    assert vectors[0] == vectors[1] == vectors[2] and vectors[3] == vectors[4]
    assert all(math.isclose(sum(x * x for x in v), 1.0, rel_tol=1e-5) for v in vectors)
    assert embedded.pooling == "mean" and embedded.dimensions == 576
    assert solo.stats().active == 0
