"""How much memory nimbus needs to serve a model: weights + KV cache + compute + runtime.

The estimate follows what llama.cpp allocates for nimbus's context (core/engine/lowlevel.py):

* weights: the GGUF's tensor data, memory-mapped; every page is read in at load, so the whole
  file counts towards resident memory (and towards a container's limit).
* KV cache: one pool of ``n_ctx`` cells shared by all slots (unified KV), f16 keys and values in
  every layer: ``n_ctx x sum over layers of kv_heads x (key_length + value_length) x 2`` bytes.
  Sliding-window layers (Gemma 3) get full-size caches too (llama.cpp's default with several
  sequences), so they count like the others.
* compute: the activations of one batch (``n_batch`` tokens through the widest layer) and the
  output logits (one row of ``vocab`` floats per slot). llama.cpp reserves a worst case of one
  logits row per batch token, but nimbus asks for at most one per sequence, so those pages are
  never touched and do not count.
* runtime: the Python process around it (interpreter, llama.cpp's libraries, the web stack):
  a fixed amount, measured.

The test suite checks the total against the measured resident memory of ``nimbus serve``
(peak RSS after concurrent requests) for the bundled model and Gemma 3 270M."""

from __future__ import annotations

from dataclasses import dataclass

from core.models.header import ModelHeader

MB = 1 << 20
# Resident memory of `nimbus serve` before the model loads: Python, FastAPI/uvicorn, llama.cpp's
# shared libraries and their allocator arenas. Measured (tests/core/models/test_estimate.py).
RUNTIME_BYTES = 110 * MB
# Live activations per batch token, in floats per unit of model width (hidden size + feed-forward
# size): the attention and FFN intermediates llama.cpp keeps at the widest point of the graph.
ACTIVATION_FLOATS_PER_WIDTH = 6


@dataclass(frozen=True)
class MemoryEstimate:
    weights: int
    kv_cache: int
    compute: int
    runtime: int
    n_ctx: int
    slots: int
    n_batch: int

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.compute + self.runtime

    @property
    def total_mb(self) -> int:
        return -(-self.total // MB)


def kv_cache_bytes(header: ModelHeader, n_ctx: int) -> int:
    per_cell = sum(kv * (header.key_length + header.value_length) for kv in header.kv_heads)
    return n_ctx * per_cell * 2  # f16


def compute_bytes(header: ModelHeader, *, slots: int, n_batch: int) -> int:
    width = header.embedding + header.feed_forward
    activations = n_batch * ACTIVATION_FLOATS_PER_WIDTH * width * 4
    logits = slots * header.vocab_size * 4
    return activations + logits


def estimate_memory(
    header: ModelHeader, *, n_ctx: int, slots: int, n_batch: int = 512
) -> MemoryEstimate:
    """Resident memory of ``nimbus serve`` with this model, context and slot count."""
    n_batch = min(n_batch, n_ctx)
    return MemoryEstimate(
        weights=header.file_size,
        kv_cache=kv_cache_bytes(header, n_ctx),
        compute=compute_bytes(header, slots=slots, n_batch=n_batch),
        runtime=RUNTIME_BYTES,
        n_ctx=n_ctx,
        slots=slots,
        n_batch=n_batch,
    )
