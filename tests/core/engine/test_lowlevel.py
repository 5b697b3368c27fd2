"""The thin llama.cpp wrappers on the real bundled model."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from core.engine.llama import LlamaEngine
from core.engine.types import SamplingParams
from tests.conftest import model_settings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def loaded() -> Iterator[tuple[object, object]]:
    from core.engine import lowlevel

    path = LlamaEngine(model_settings()).resolve()
    model = lowlevel.Model(str(path), n_gpu_layers=0, use_mmap=True)
    ctx = lowlevel.Context(
        model, lowlevel.ContextConfig(n_ctx=512, n_batch=128, n_seq=2, n_threads=1)
    )
    yield model, ctx
    ctx.close()
    model.close()


def test_greedy_fast_path_picks_what_llama_cpp_greedy_picks(loaded: tuple[object, object]) -> None:
    import llama_cpp as C

    from core.engine.lowlevel import Context, Model, Sampler

    model, ctx = loaded
    assert isinstance(model, Model) and isinstance(ctx, Context)
    fast = Sampler(model, SamplingParams(temperature=0), None)
    assert fast.greedy_only and fast.ptr is None
    chain = C.llama_sampler_chain_init(C.llama_sampler_chain_default_params())
    C.llama_sampler_chain_add(chain, C.llama_sampler_init_greedy())
    try:
        tokens = model.tokenize(
            b"Once upon a time, in a small village,", add_bos=True, special=True
        )
        ctx.clear()
        ctx.batch_clear()
        row = 0
        for pos, token in enumerate(tokens):
            row = ctx.batch_add(token, pos, 0, pos == len(tokens) - 1)
        assert ctx.decode() == 0
        picked: list[int] = []
        for pos in range(len(tokens), len(tokens) + 24):
            expected = int(C.llama_sampler_sample(chain, ctx.ptr, row))
            assert fast.sample(ctx, row) == expected
            picked.append(expected)
            ctx.batch_clear()
            row = ctx.batch_add(expected, pos, 0, True)
            assert ctx.decode() == 0
        assert len(set(picked)) > 3  # real text, not one token repeated
    finally:
        C.llama_sampler_free(chain)
        fast.close()


def test_sampling_with_temperature_or_penalties_keeps_the_chain(
    loaded: tuple[object, object],
) -> None:
    from core.engine.lowlevel import Model, Sampler

    model, _ = loaded
    assert isinstance(model, Model)
    for params in (
        SamplingParams(temperature=0.7),
        SamplingParams(temperature=0, repeat_penalty=1.2),
    ):
        sampler = Sampler(model, params, None)
        assert not sampler.greedy_only and sampler.ptr is not None
        sampler.close()
    grammar = Sampler(model, SamplingParams(temperature=0), 'root ::= "yes" | "no"')
    assert not grammar.greedy_only
    grammar.close()


def test_scored_sampling_reports_the_log_softmax_after_processing(
    loaded: tuple[object, object],
) -> None:
    import math

    import llama_cpp as C
    import numpy as np

    from core.engine.lowlevel import Context, Model, Sampler

    model, ctx = loaded
    assert isinstance(model, Model) and isinstance(ctx, Context)
    tokens = model.tokenize(b"The capital of France is", add_bos=True, special=True)
    ctx.clear()
    ctx.batch_clear()
    row = 0
    for pos, token in enumerate(tokens):
        row = ctx.batch_add(token, pos, 0, pos == len(tokens) - 1)
    assert ctx.decode() == 0
    raw = np.ctypeslib.as_array(
        C.llama_get_logits_ith(ctx.ptr, row), shape=(model.n_vocab,)
    ).astype(np.float64)

    def log_softmax(x: np.ndarray) -> np.ndarray:
        return x - (x.max() + np.log(np.exp(x - x.max()).sum()))  # type: ignore[no-any-return]

    greedy = Sampler(model, SamplingParams(temperature=0), None)
    token, logprob, top = greedy.sample_scored(ctx, row, 5)
    expected = log_softmax(raw)
    assert token == int(raw.argmax())
    assert math.isclose(logprob, expected[token], abs_tol=1e-4)
    assert [t for t, _ in top] == [int(i) for i in np.argsort(-expected)[:5]]
    # With a logit bias the values are those of the biased logits (what sampling sees), and
    # a temperature does not change them.
    runner_up = top[1][0]
    biased = Sampler(
        model, SamplingParams(temperature=1.5, seed=3), None, logit_bias=[(runner_up, 4.0)]
    )
    _, _, biased_top = biased.sample_scored(ctx, row, 3)
    shifted = raw.copy()
    shifted[runner_up] += 4.0
    expected = log_softmax(shifted)
    assert biased_top[0][0] == runner_up
    assert all(math.isclose(v, expected[t], abs_tol=1e-4) for t, v in biased_top)
    greedy.close()
    biased.close()


def test_one_argmax_over_the_batch_is_each_rows_greedy_token(
    loaded: tuple[object, object],
) -> None:
    """Context.argmax reads every output row from one llama_get_logits view: the same token as
    llama.cpp's greedy sampler on that row, for rows in any order and any subset."""
    import llama_cpp as C

    from core.engine.lowlevel import Context, Model

    model, ctx = loaded
    assert isinstance(model, Model) and isinstance(ctx, Context)
    chain = C.llama_sampler_chain_init(C.llama_sampler_chain_default_params())
    C.llama_sampler_chain_add(chain, C.llama_sampler_init_greedy())
    try:
        a = model.tokenize(b"The capital of France is", add_bos=True, special=True)
        b = model.tokenize(b"1, 2, 3, 4,", add_bos=True, special=True)
        ctx.clear()
        ctx.batch_clear()
        rows: list[int] = []
        # Sequence 0 with logits on its last two tokens, sequence 1 on its last one: three
        # output rows, not at the batch's first positions.
        for pos, token in enumerate(a):
            r = ctx.batch_add(token, pos, 0, pos >= len(a) - 2)
            if pos >= len(a) - 2:
                rows.append(r)
        for pos, token in enumerate(b):
            r = ctx.batch_add(token, pos, 1, pos == len(b) - 1)
            if pos == len(b) - 1:
                rows.append(r)
        assert ctx.decode() == 0
        expected = [int(C.llama_sampler_sample(chain, ctx.ptr, r)) for r in rows]
        assert ctx.argmax(rows) == expected
        assert ctx.argmax(rows[::-1]) == expected[::-1]
        assert ctx.argmax(rows[2:]) == expected[2:]  # a few rows: one at a time
        assert len(set(expected)) > 1
    finally:
        C.llama_sampler_free(chain)
