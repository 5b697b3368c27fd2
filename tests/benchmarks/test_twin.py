"""A timing twin is a real GGUF model llama.cpp loads and runs at the shapes it was given."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from benchmarks.twin import PRESETS, Shapes, write_twin
from core.settings import ModelSourceSettings
from core.sources import resolve_model


def test_presets_are_the_published_shapes() -> None:
    big = PRESETS["smollm2-1.7b"]
    assert (big.layers, big.hidden, big.ffn, big.heads, big.kv_heads) == (24, 2048, 8192, 32, 32)
    mid = PRESETS["smollm2-360m"]
    assert (mid.layers, mid.hidden, mid.ffn, mid.heads, mid.kv_heads) == (32, 960, 2560, 15, 5)


@pytest.mark.integration
def test_a_tiny_twin_loads_and_generates(tmp_path: Path) -> None:
    import gguf

    from core.engine.llama import LlamaEngine
    from core.engine.types import GenerationRequest, PromptSegment, SamplingParams
    from core.settings import Settings

    out = tmp_path / "tiny.gguf"
    write_twin(
        Shapes("tiny", 2, 64, 128, 2, 1, 10000.0, "test"),
        resolve_model("default", ModelSourceSettings()),
        out,
    )
    fields = gguf.GGUFReader(str(out)).fields
    assert fields["llama.block_count"].contents() == 2
    assert fields["llama.embedding_length"].contents() == 64
    assert fields["tokenizer.ggml.model"].contents() == "gpt2"  # copied from the bundled model

    engine = LlamaEngine(
        Settings(model=str(out), engine={"n_ctx": 256, "n_threads": 1, "slots": 1})
    )
    engine.load()

    async def run() -> int:
        stream = engine.submit(
            GenerationRequest(
                prompt=(PromptSegment("Count: 1, 2, 3,", special=False),),
                max_tokens=8,
                sampling=SamplingParams(temperature=0.0),
            )
        )
        async for _ in stream:
            pass
        assert stream.result is not None
        return stream.result.completion_tokens

    try:
        assert asyncio.run(run()) >= 1
    finally:
        engine.close()
