"""A timing twin: a GGUF file with a bigger model's exact shapes and random weights.

`python -m benchmarks.twin smollm2-1.7b /tmp/twin.gguf` writes a model that llama.cpp runs
exactly as it would run the real one (same layers, widths, heads, vocabulary, quantisation, so
the same work per token), but whose weights are random: its text is noise, its speed is real.
No weights are downloaded; the tokenizer and chat template are copied from the bundled
SmolLM2-135M, whose family the SmolLM2 shapes share. `nimbus cost --measure --model FILE`
then prices a bigger model from a measurement instead of an extrapolation.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Architecture keys the twin sets itself; every other key is copied from the bundled model.
_OWN_KEYS = {
    "general.architecture",
    "general.name",
    "general.size_label",
    "general.basename",
    "general.finetune",
    "llama.block_count",
    "llama.embedding_length",
    "llama.feed_forward_length",
    "llama.attention.head_count",
    "llama.attention.head_count_kv",
    "llama.rope.dimension_count",
    "llama.rope.freq_base",
    "llama.context_length",
}


@dataclass(frozen=True)
class Shapes:
    name: str
    layers: int
    hidden: int
    ffn: int
    heads: int
    kv_heads: int
    rope_base: float
    note: str


# Published configurations (the models' config.json on their model cards).
PRESETS = {
    "smollm2-1.7b": Shapes(
        "SmolLM2-1.7B", 24, 2048, 8192, 32, 32, 130000.0, "HuggingFaceTB/SmolLM2-1.7B-Instruct"
    ),
    "smollm2-360m": Shapes(
        "SmolLM2-360M", 32, 960, 2560, 15, 5, 100000.0, "HuggingFaceTB/SmolLM2-360M-Instruct"
    ),
}


def _blocks(np: Any, n_weights: int, kind: str, rng: Any) -> Any:
    """Valid quantised blocks with small random weights (no NaN, no overflow)."""
    n = n_weights // 32
    if kind == "Q4_1":  # f16 scale, f16 minimum, 32 4-bit values
        block = np.dtype([("d", "<f2"), ("m", "<f2"), ("qs", "u1", (16,))])
        out = np.empty(n, dtype=block)
        out["d"], out["m"] = 0.002, -0.015
    else:  # Q8_0: f16 scale, 32 8-bit values
        block = np.dtype([("d", "<f2"), ("qs", "i1", (32,))])
        out = np.empty(n, dtype=block)
        out["d"] = 0.001
    out["qs"] = rng.integers(0, 256, size=out["qs"].shape, dtype=np.uint8).view(out["qs"].dtype)
    return out.view(np.uint8)


def write_twin(shapes: Shapes, source: Path, out: Path, seed: int = 0) -> int:
    """Write the twin; returns its size in bytes."""
    import gguf
    import numpy as np

    reader = gguf.GGUFReader(str(source))
    vocab = int(reader.fields["llama.vocab_size"].contents())
    head_dim = shapes.hidden // shapes.heads
    kv = head_dim * shapes.kv_heads
    writer = gguf.GGUFWriter(str(out), "llama")
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key in _OWN_KEYS:
            continue
        vtype = field.types[0]
        sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(key, field.contents(), vtype, sub)
    writer.add_name(f"{shapes.name} timing twin (random weights)")
    writer.add_size_label(shapes.name.split("-")[-1])
    writer.add_block_count(shapes.layers)
    writer.add_embedding_length(shapes.hidden)
    writer.add_feed_forward_length(shapes.ffn)
    writer.add_head_count(shapes.heads)
    writer.add_head_count_kv(shapes.kv_heads)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(shapes.rope_base)
    writer.add_context_length(8192)

    q41, q80, f32 = (
        gguf.GGMLQuantizationType.Q4_1,
        gguf.GGMLQuantizationType.Q8_0,
        gguf.GGMLQuantizationType.F32,
    )
    # (name, rows, row length, type) as the bundled model quantises them: Q8_0 embeddings
    # (tied to the output), Q4_1 matrices, f32 norms.
    tensors: list[tuple[str, int, int, Any]] = [("token_embd.weight", vocab, shapes.hidden, q80)]
    for i in range(shapes.layers):
        b = f"blk.{i}."
        tensors += [
            (b + "attn_norm.weight", 1, shapes.hidden, f32),
            (b + "attn_q.weight", shapes.hidden, shapes.hidden, q41),
            (b + "attn_k.weight", kv, shapes.hidden, q41),
            (b + "attn_v.weight", kv, shapes.hidden, q41),
            (b + "attn_output.weight", shapes.hidden, shapes.hidden, q41),
            (b + "ffn_norm.weight", 1, shapes.hidden, f32),
            (b + "ffn_gate.weight", shapes.ffn, shapes.hidden, q41),
            (b + "ffn_up.weight", shapes.ffn, shapes.hidden, q41),
            (b + "ffn_down.weight", shapes.hidden, shapes.ffn, q41),
        ]
    tensors.append(("output_norm.weight", 1, shapes.hidden, f32))

    def shape_of(rows: int, cols: int, kind: Any) -> tuple[int, ...]:
        if kind == f32:
            return (cols,)
        return (rows, gguf.quant_shape_to_byte_shape((cols,), kind)[0])

    for name, rows, cols, kind in tensors:
        shape = shape_of(rows, cols, kind)
        dtype = np.float32 if kind == f32 else np.uint8
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        writer.add_tensor_info(name, shape, np.dtype(dtype), nbytes, raw_dtype=kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    rng = np.random.default_rng(seed)
    for _name, rows, cols, kind in tensors:
        if kind == f32:
            writer.write_tensor_data(np.ones(cols, dtype=np.float32))
        else:
            data = _blocks(np, rows * cols, kind.name, rng)
            writer.write_tensor_data(data.reshape(shape_of(rows, cols, kind)))
    writer.close()
    return out.stat().st_size


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.twin", description=__doc__)
    p.add_argument("preset", choices=sorted(PRESETS))
    p.add_argument("out", type=Path, help="GGUF file to write")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    from core.settings import ModelSourceSettings
    from core.sources import resolve_model

    source = resolve_model("default", ModelSourceSettings())
    size = write_twin(PRESETS[args.preset], source, args.out, args.seed)
    print(
        f"wrote {args.out} ({size / 1e6:.0f} MB): {PRESETS[args.preset].name} shapes, "
        f"random weights",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
