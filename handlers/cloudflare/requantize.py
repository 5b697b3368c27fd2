"""Re-quantize a GGUF to pure Q4_0 (token embeddings in Q4_0 too) for the edge's 128 MB isolate, and
measure what that costs in quality.

The quantizer is llama.cpp's own ``llama_model_quantize``, the function the ``llama-quantize`` tool
calls, from the llama-cpp-python build nimbus already serves with (same sdist, same llama.cpp).
k-quants do not apply at SmolLM2-135M's width of 576 (not a multiple of their 256-wide blocks),
so Q4_0 is the smallest type every tensor can take.

    python -m handlers.cloudflare.requantize                     # bundled model -> build/edge/
    python -m handlers.cloudflare.requantize --quality           # and compare the two models
    python -m handlers.cloudflare.requantize --input A.gguf --output B.gguf
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import llama_cpp
import numpy as np

from core.sources.resolve import bundled_model_path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUTPUT = ROOT / "build" / "edge" / "SmolLM2-135M-Instruct.Q4_0.gguf"

# Plain prompts, greedy: how far the two models' continuations agree, token by token.
PROMPTS = (
    "The capital of France is",
    "Water boils at a temperature of",
    "def fibonacci(n):\n    ",
    "Once upon a time, in a small village,",
    "The three primary colours are",
)
# Held-out English prose (written for this check): the perplexity of each model on it.
PASSAGE = (
    "The library opens at nine in the morning and closes at six in the evening. On weekdays "
    "most visitors come to read newspapers, borrow novels or use the computers to look for work. "
    "On Saturdays the children's room is busy with story hours, and volunteers help older "
    "people learn to send email to their grandchildren. The building is old, and in winter the "
    "heating is not always reliable, so the staff keep blankets in a basket near the door."
)


def requantize(source: Path, target: Path) -> Path:
    """Writes ``target``: every tensor of ``source`` as Q4_0, embeddings and output included."""
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_0
    params.pure = True
    params.token_embedding_type = llama_cpp.GGML_TYPE_Q4_0
    params.output_tensor_type = llama_cpp.GGML_TYPE_Q4_0
    params.allow_requantize = True  # the bundled file is already Q4_1
    params.nthread = os.cpu_count() or 1
    target.parent.mkdir(parents=True, exist_ok=True)
    status = llama_cpp.llama_model_quantize(
        str(source).encode(), str(target).encode(), ctypes.byref(params)
    )
    if status != 0:
        raise RuntimeError(f"llama_model_quantize failed ({status}) for {source}")
    return target


class _Model:
    """Just enough of llama.cpp's C API for the comparison: tokenize, and the logits of a prompt."""

    def __init__(self, path: Path) -> None:
        params = llama_cpp.llama_model_default_params()
        # No repacked weight layouts (AMX and friends): both files run the same plain CPU kernels,
        # on any x86 machine, so only the files differ.
        params.use_extra_bufts = False
        self.model = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
        if not self.model:
            raise RuntimeError(f"cannot load {path}")
        self.vocab = llama_cpp.llama_model_get_vocab(self.model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self.vocab)
        cparams = llama_cpp.llama_context_default_params()
        cparams.n_ctx = cparams.n_batch = cparams.n_ubatch = 512
        cparams.n_threads = cparams.n_threads_batch = os.cpu_count() or 1
        self.ctx = llama_cpp.llama_init_from_model(self.model, cparams)

    def tokenize(self, text: str) -> list[int]:
        raw = text.encode()
        buf = (llama_cpp.llama_token * (len(raw) + 8))()
        n = llama_cpp.llama_tokenize(self.vocab, raw, len(raw), buf, len(buf), True, False)
        return list(buf[:n])

    def detokenize(self, tokens: list[int]) -> str:
        out = b""
        buf = ctypes.create_string_buffer(256)
        for token in tokens:
            n = llama_cpp.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, False)
            out += buf.raw[:n]
        return out.decode(errors="replace")

    def decode(self, tokens: list[int], start: int, all_logits: bool) -> None:
        """Evaluates ``tokens`` at positions from ``start`` (0: a fresh sequence)."""
        if start == 0:
            llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(self.ctx), True)
        batch = llama_cpp.llama_batch_init(len(tokens), 0, 1)
        try:
            batch.n_tokens = len(tokens)
            for i, token in enumerate(tokens):
                batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, start + i, 1
                batch.seq_id[i][0] = 0
                batch.logits[i] = all_logits or i == len(tokens) - 1
            if llama_cpp.llama_decode(self.ctx, batch) != 0:
                raise RuntimeError("llama_decode failed")
        finally:
            llama_cpp.llama_batch_free(batch)

    def row(self, i: int) -> Any:
        return np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self.ctx, i), (self.n_vocab,))


def _perplexity(model: _Model, text: str) -> float:
    tokens = model.tokenize(text)
    model.decode(tokens, 0, all_logits=True)
    total = 0.0
    for i in range(len(tokens) - 1):
        row = model.row(i).astype(np.float64)
        top = row.max()
        total += float(top + np.log(np.exp(row - top).sum()) - row[tokens[i + 1]])
    return math.exp(total / (len(tokens) - 1))


def _greedy(model: _Model, prompt: str, n: int) -> list[int]:
    tokens = model.tokenize(prompt)
    model.decode(tokens, 0, all_logits=False)
    out: list[int] = []
    while len(out) < n:
        token = int(model.row(-1).argmax())
        if llama_cpp.llama_vocab_is_eog(model.vocab, token):
            break
        out.append(token)
        model.decode([token], len(tokens) + len(out) - 1, all_logits=False)
    return out


def quality(reference: Path, candidate: Path, tokens: int = 24) -> dict[str, Any]:
    """Perplexity on PASSAGE and greedy agreement on PROMPTS: ``candidate`` against ``reference``
    (the file it was quantized from)."""
    ref, cand = _Model(reference), _Model(candidate)
    report: dict[str, Any] = {
        "reference": {"file": reference.name, "bytes": reference.stat().st_size},
        "candidate": {"file": candidate.name, "bytes": candidate.stat().st_size},
        "perplexity": {
            "reference": _perplexity(ref, PASSAGE),
            "candidate": _perplexity(cand, PASSAGE),
        },
        "prompts": [],
    }
    for prompt in PROMPTS:
        a, b = _greedy(ref, prompt, tokens), _greedy(cand, prompt, tokens)
        pairs = enumerate(zip(a, b, strict=False))
        same = next((i for i, (x, y) in pairs if x != y), min(len(a), len(b)))
        report["prompts"].append(
            {
                "prompt": prompt,
                "same_prefix_tokens": same,
                "reference": ref.detokenize(a),
                "candidate": cand.detokenize(b),
            }
        )
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m handlers.cloudflare.requantize")
    parser.add_argument("--input", type=Path, default=None, help="GGUF (default: bundled model)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="Q4_0 GGUF to write")
    parser.add_argument("--quality", action="store_true", help="compare input and output")
    parser.add_argument("--force", action="store_true", help="rewrite an existing output")
    args = parser.parse_args(argv)
    source: Path = args.input or bundled_model_path()
    if args.force or not args.output.exists():
        requantize(source, args.output)
    print(f"{args.output} ({args.output.stat().st_size} bytes) from {source.name}")
    if args.quality:
        print(json.dumps(quality(source, args.output), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
