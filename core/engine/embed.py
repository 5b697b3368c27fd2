"""The embedding context: a second llama.cpp context with embeddings on and pooling, over the
served model or a separate embedding model. It is created on first use and never takes a
generation slot; its decodes run on the engine thread (as scheduler tasks) because llama.cpp's
OpenMP build gives every decoding thread its own worker team, and a second team slows generation
down for good (see BatchScheduler._warm_up).

Pooling: ``auto`` uses the pooling type the GGUF declares (embedding models do) and mean pooling
when it declares none (a causal LM such as the bundled one: every token's last hidden state
counts, where the last token alone mostly encodes a guess at the next token). Vectors are
L2-normalised, as OpenAI's are, and handed out as little-endian float32 bytes (the base64 form
is those bytes; the float form is the same float32 values)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import llama_cpp as C
import numpy as np

from core.engine.lowlevel import ContextConfig, Model, context_params

POOLING = {
    "mean": C.LLAMA_POOLING_TYPE_MEAN,
    "last": C.LLAMA_POOLING_TYPE_LAST,
    "cls": C.LLAMA_POOLING_TYPE_CLS,
}


@dataclass(frozen=True)
class EmbedConfig:
    n_ctx: int
    n_seq: int
    n_threads: int
    pooling: str  # 'auto', 'mean', 'last' or 'cls'


def pooling_of(model: Model, choice: str) -> tuple[str, int]:
    """(name, llama.cpp pooling type) for ``choice``; 'auto' reads the GGUF."""
    if choice != "auto":
        return choice, POOLING[choice]
    metadata = model.metadata()
    arch = metadata.get("general.architecture", "")
    declared = metadata.get(f"{arch}.pooling_type")
    names = {v: k for k, v in POOLING.items()}
    if declared is not None and declared.isdigit() and int(declared) in names:
        return names[int(declared)], int(declared)
    return "mean", C.LLAMA_POOLING_TYPE_MEAN


class EmbeddingContext:
    """Engine thread only. ``embed`` evaluates up to ``n_seq`` inputs (at most ``n_ctx`` tokens
    together) in one decode and returns one unit vector per input."""

    def __init__(self, model: Model, config: EmbedConfig) -> None:
        self.model = model
        self.pooling, pooling_type = pooling_of(model, config.pooling)
        # Pooling happens inside one micro-batch: a whole input must fit in it.
        params = context_params(
            ContextConfig(config.n_ctx, config.n_ctx, config.n_seq, config.n_threads)
        )
        params.embeddings = True
        params.pooling_type = pooling_type
        ctx = C.llama_init_from_model(model.ptr, params)
        if ctx is None:
            raise RuntimeError("llama.cpp could not create the embedding context")
        self.ptr: Any = ctx
        self.n_ctx = int(C.llama_n_ctx(ctx))
        self.n_seq = config.n_seq
        self.n_embd = int(C.llama_model_n_embd(model.ptr))
        self._memory: Any = C.llama_get_memory(ctx)
        self._batch: Any = C.llama_batch_init(self.n_ctx, 0, 1)

    def embed(self, inputs: Sequence[Sequence[int]]) -> list[bytes]:
        """One little-endian float32 vector per input."""
        if len(inputs) > self.n_seq or sum(len(t) for t in inputs) > self.n_ctx:
            raise ValueError("the inputs do not fit in one embedding batch")
        b = self._batch
        i = 0
        for seq, tokens in enumerate(inputs):
            for pos, token in enumerate(tokens):
                b.token[i] = token
                b.pos[i] = pos
                b.n_seq_id[i] = 1
                b.seq_id[i][0] = seq
                b.logits[i] = True
                i += 1
        b.n_tokens = i
        C.llama_memory_clear(self._memory, True)
        status = int(C.llama_decode(self.ptr, b))
        if status != 0:
            raise RuntimeError(f"llama_decode failed with status {status}")
        vectors = []
        for seq in range(len(inputs)):
            pooled = C.llama_get_embeddings_seq(self.ptr, seq)
            if not pooled:
                raise RuntimeError("llama.cpp returned no pooled embedding")
            v = np.ctypeslib.as_array(pooled, shape=(self.n_embd,)).astype(np.float64)
            norm = float(np.linalg.norm(v))
            vectors.append((v / norm if norm > 0 else v).astype("<f4").tobytes())
        C.llama_memory_clear(self._memory, True)
        return vectors

    def close(self) -> None:
        if self._batch is not None:
            C.llama_batch_free(self._batch)
            self._batch = None
        if self.ptr is not None:
            C.llama_free(self.ptr)
            self.ptr = None


def batches(lengths: Sequence[int], *, n_ctx: int, n_seq: int) -> list[list[int]]:
    """Indexes of the inputs grouped in order into batches of at most ``n_seq`` inputs and
    ``n_ctx`` tokens (every length is at most ``n_ctx``)."""
    out: list[list[int]] = []
    current: list[int] = []
    used = 0
    for i, length in enumerate(lengths):
        if current and (len(current) == n_seq or used + length > n_ctx):
            out.append(current)
            current, used = [], 0
        current.append(i)
        used += length
    if current:
        out.append(current)
    return out
