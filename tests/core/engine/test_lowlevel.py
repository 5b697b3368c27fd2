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
