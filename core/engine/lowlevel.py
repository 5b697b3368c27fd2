"""Thin typed wrappers over llama-cpp-python's low-level (ctypes) llama.cpp bindings.

Only the engine thread imports this module (it loads libllama). ``Llama`` (the high-level class)
is not used: it owns a single-sequence context, and continuous batching needs one context with
one sequence id per slot, a shared batch and a C sampler chain per request."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import math
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import llama_cpp as C
import numpy as np
from llama_cpp import _internals

from core.engine.types import SamplingParams

T = TypeVar("T")
_backend_lock = threading.Lock()
_backend_ready = False
DEFAULT_SEED = 0xFFFFFFFF  # LLAMA_DEFAULT_SEED: a fresh random seed per sampler
PENALTY_LAST_N = 64  # the window llama-cpp-python's Llama uses for repetition penalties


def _init_backend() -> None:
    global _backend_ready
    with _backend_lock:
        if not _backend_ready:
            from llama_cpp import _logger

            _logger.set_verbose(False)  # llama.cpp's info logs (context set-up) go nowhere
            C.llama_backend_init()
            _backend_ready = True


_quiet_lock = threading.Lock()
_quiet_depth = 0


@functools.cache  # also keeps the ctypes function object alive while llama.cpp points at it
def _native_log_sink() -> Any:
    """A C function that drops llama.cpp's log lines without taking the GIL (None if none).

    libc's ``abs`` reads its first argument (the level) and returns; the text and user-data
    arguments are ignored, which every C calling convention llama.cpp runs on allows (the caller
    passes them in registers and cleans up)."""
    try:
        return ctypes.cast(ctypes.CDLL(None).abs, C.llama_log_callback)
    except Exception:  # no libc symbol lookup (Windows): keep the Python logger
        return None


@contextlib.contextmanager
def quiet_native_logs() -> Iterator[None]:
    """Silence llama.cpp's logs in C while a model and context load.

    llama.cpp writes about 2,300 log lines while it loads a model and creates a context, and
    llama-cpp-python's sink is a Python function: every line has to take the GIL. When the web
    stack is being imported on another thread at the same time (``nimbus serve`` overlaps them),
    each line waits for a GIL switch and the load stalls (measured 0.6 s instead of 0.2 s).
    The Python sink (which prints errors) comes back as soon as the last loader leaves."""
    global _quiet_depth
    _init_backend()  # first: importing llama-cpp-python's logger installs its Python sink
    sink = _native_log_sink()
    if sink is None:
        yield
        return
    with _quiet_lock:
        if _quiet_depth == 0:
            C.llama_log_set(sink, None)
        _quiet_depth += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_depth -= 1
            if _quiet_depth == 0:
                from llama_cpp import _logger

                C.llama_log_set(_logger.llama_log_callback, ctypes.c_void_p(0))


def load_quietly(make: Callable[[], T]) -> T:
    """``make()`` with llama.cpp's logs kept in C; if it fails, once more with them on, so that
    llama.cpp's own reason reaches stderr before the error propagates."""
    try:
        with quiet_native_logs():
            return make()
    except Exception:
        return make()


@dataclass(frozen=True)
class ContextConfig:
    n_ctx: int
    n_batch: int
    n_seq: int
    n_threads: int


def context_params(config: ContextConfig) -> Any:
    """llama.cpp context parameters for ``config``: one micro-batch per batch, one thread count
    for decode and prompt, and one pool of KV cells for all sequences (a shared prefix is stored
    once, seq_cp only tags cells, and a request can use the whole window when the others are
    short)."""
    params = C.llama_context_default_params()
    params.n_ctx = config.n_ctx
    params.n_batch = config.n_batch
    params.n_ubatch = config.n_batch
    params.n_seq_max = config.n_seq
    params.n_threads = config.n_threads
    params.n_threads_batch = config.n_threads
    params.kv_unified = True
    params.no_perf = True
    return params


class Model:
    """A loaded GGUF model (mmap'd when asked): vocabulary, tokenizer, metadata."""

    def __init__(self, path: str, *, n_gpu_layers: int, use_mmap: bool) -> None:
        _init_backend()
        params = C.llama_model_default_params()
        params.n_gpu_layers = n_gpu_layers
        params.use_mmap = use_mmap
        self._impl: Any = _internals.LlamaModel(path_model=path, params=params, verbose=False)
        self.ptr: Any = self._impl.model
        self.vocab: Any = self._impl.vocab
        self.n_vocab = int(C.llama_vocab_n_tokens(self.vocab))
        self.n_ctx_train = int(self._impl.n_ctx_train())
        self._piece = ctypes.create_string_buffer(256)
        # Per-token answers cached in Python: every ctypes call releases and re-takes the GIL,
        # and under load the HTTP thread can hold it for a while each time (a convoy per token).
        self._pieces: dict[int, bytes] = {}
        self._eog: dict[int, bool] = {}
        self._control: tuple[str, ...] | None = None

    def metadata(self) -> dict[str, str]:
        return dict(self._impl.metadata())

    def tokenize(self, text: bytes, *, add_bos: bool, special: bool) -> list[int]:
        return list(self._impl.tokenize(text, add_bos=add_bos, special=special))

    def piece(self, token: int, *, special: bool = False) -> bytes:
        """The bytes of one token (a UTF-8 character may span several tokens)."""
        if not special:
            cached = self._pieces.get(token)
            if cached is None:
                cached = self._pieces[token] = self._piece_of(token, special=False)
            return cached
        return self._piece_of(token, special=True)

    def _piece_of(self, token: int, *, special: bool) -> bytes:
        n = C.llama_token_to_piece(self.vocab, token, self._piece, 256, 0, special)
        if n < 0:  # buffer too small (never for real vocabularies): retry at the asked size
            buf = ctypes.create_string_buffer(-n)
            n = C.llama_token_to_piece(self.vocab, token, buf, -n, 0, special)
            return bytes(buf.raw[:n])
        return bytes(self._piece.raw[:n])

    def is_eog(self, token: int) -> bool:
        eog = self._eog.get(token)
        if eog is None:
            eog = self._eog[token] = bool(C.llama_vocab_is_eog(self.vocab, token))
        return eog

    def control_tokens(self) -> tuple[str, ...]:
        """The text of every control token (``<|im_end|>`` ...); read once, when first asked
        (one call per vocabulary entry: not at load, where it would add to the cold start)."""
        if self._control is None:
            self._control = tuple(
                self._piece_of(t, special=True).decode("utf-8", "replace")
                for t in range(self.n_vocab)
                if C.llama_vocab_get_attr(self.vocab, t) & C.LLAMA_TOKEN_ATTR_CONTROL
            )
        return self._control

    @property
    def bos(self) -> int:
        return int(C.llama_vocab_bos(self.vocab))

    @property
    def eos(self) -> int:
        return int(C.llama_vocab_eos(self.vocab))

    def close(self) -> None:
        self._impl.close()


class Context:
    """One llama.cpp context whose KV cache is shared (unified) by ``n_seq`` sequences."""

    def __init__(self, model: Model, config: ContextConfig) -> None:
        ctx = C.llama_init_from_model(model.ptr, context_params(config))
        if ctx is None:
            raise RuntimeError("llama.cpp could not create a context")
        self.ptr: Any = ctx
        self.n_ctx = int(C.llama_n_ctx(ctx))
        self.n_batch = config.n_batch
        self.memory: Any = C.llama_get_memory(ctx)
        self._n = 0
        self.n_vocab = model.n_vocab
        self._outputs: dict[int, int] = {}  # batch row -> its row in llama_get_logits
        # The batch's columns are numpy arrays owned here: a step writes a prompt chunk's
        # tokens, positions, sequence and logits flags with one call per column, not five
        # ctypes stores per token. Every token belongs to one sequence (n_seq_id 1).
        n = config.n_batch
        self._tok = np.zeros(n, dtype=np.int32)
        self._pos = np.zeros(n, dtype=np.int32)
        self._seq = np.zeros(n, dtype=np.int32)
        self._logit = np.zeros(n, dtype=np.int8)
        self._one = np.ones(n, dtype=np.int32)
        seq_p = ctypes.POINTER(C.llama_seq_id)
        self._seq_rows = (seq_p * n)(
            *(ctypes.cast(self._seq.ctypes.data + 4 * i, seq_p) for i in range(n))
        )
        b: Any = C.llama_batch()
        b.n_tokens = 0
        b.token = self._tok.ctypes.data_as(ctypes.POINTER(C.llama_token))
        b.embd = None
        b.pos = self._pos.ctypes.data_as(ctypes.POINTER(C.llama_pos))
        b.n_seq_id = self._one.ctypes.data_as(ctypes.POINTER(ctypes.c_int32))
        b.seq_id = ctypes.cast(self._seq_rows, ctypes.POINTER(seq_p))
        b.logits = self._logit.ctypes.data_as(ctypes.POINTER(ctypes.c_int8))
        self._batch: Any = b

    # -- KV cells ---------------------------------------------------------------------------
    def seq_rm(self, seq: int, p0: int = -1, p1: int = -1) -> bool:
        return bool(C.llama_memory_seq_rm(self.memory, seq, p0, p1))

    def seq_cp(self, src: int, dst: int, p0: int, p1: int) -> None:
        C.llama_memory_seq_cp(self.memory, src, dst, p0, p1)

    def clear(self) -> None:
        C.llama_memory_clear(self.memory, True)

    def seq_state_size(self, seq: int) -> int:
        return int(C.llama_state_seq_get_size(self.ptr, seq))

    def seq_state(self, seq: int, size: int | None = None) -> bytearray:
        """A copy of ``seq``'s cells (empty when it has none); ``size``: ``seq_state_size``
        when the caller already asked."""
        if size is None:
            size = self.seq_state_size(seq)
        if size <= 0:
            return bytearray()
        # llama.cpp writes straight into the bytearray: a zero-filled ctypes array and a copy
        # out of it took 2-8x as long, on the engine thread, before the next step.
        state = bytearray(size)
        written = int(
            C.llama_state_seq_get_data(
                self.ptr, (ctypes.c_uint8 * size).from_buffer(state), size, seq
            )
        )
        del state[written:]
        return state

    def seq_restore(self, seq: int, state: bytearray) -> bool:
        """Put cells saved by ``seq_state`` back as ``seq``'s; False when they do not fit."""
        size = len(state)
        buf = (ctypes.c_uint8 * size).from_buffer(state)
        return int(C.llama_state_seq_set_data(self.ptr, buf, size, seq)) > 0

    # -- batch ------------------------------------------------------------------------------
    def batch_clear(self) -> None:
        self._n = 0
        self._outputs = {}

    @property
    def batch_size(self) -> int:
        return self._n

    @property
    def batch_outputs(self) -> int:
        """Rows of the current batch that ask for logits (all of them in a decode-only step)."""
        return len(self._outputs)

    def batch_add(self, token: int, pos: int, seq: int, logits: bool) -> int:
        """Append one token; returns its row index (for sampling when ``logits``)."""
        i = self._n
        self._tok[i] = token
        self._pos[i] = pos
        self._seq[i] = seq
        self._logit[i] = logits
        if logits:
            self._outputs[i] = len(self._outputs)
        self._n = i + 1
        return i

    def batch_add_span(
        self, tokens: Sequence[int], pos: int, seq: int, *, logits_last: bool
    ) -> int | None:
        """Append consecutive tokens of one sequence (a prompt chunk) starting at position
        ``pos``; returns the last one's row when it asks for logits."""
        i, k = self._n, len(tokens)
        if k == 0:
            return None
        self._tok[i : i + k] = tokens
        self._pos[i : i + k] = np.arange(pos, pos + k, dtype=np.int32)
        self._seq[i : i + k] = seq
        self._logit[i : i + k] = 0
        self._n = i + k
        if not logits_last:
            return None
        self._logit[i + k - 1] = 1
        self._outputs[i + k - 1] = len(self._outputs)
        return i + k - 1

    def argmax(self, rows: Sequence[int]) -> list[int]:
        """The most likely token of each batch row in ``rows`` (rows that asked for logits),
        from one view of all the last decode's logits: one native call for the whole batch
        instead of one per row. Ties go to the lowest id, as llama.cpp's greedy sampler does."""
        outputs = self._outputs
        logits = np.ctypeslib.as_array(
            C.llama_get_logits(self.ptr), shape=(len(outputs), self.n_vocab)
        )
        if 2 * len(rows) >= len(outputs):
            best = logits.argmax(axis=1).tolist()  # one pass; no copy of the rows
            return [best[outputs[r]] for r in rows]
        return [int(logits[outputs[r]].argmax()) for r in rows]

    def decode(self) -> int:
        """0 ok, 1 no KV room (nothing changed), 2 aborted, < 0 error."""
        self._batch.n_tokens = self._n
        return int(C.llama_decode(self.ptr, self._batch))

    def warm_up(self, token: int) -> None:
        """Decode one token and forget it, as llama-server does at start: the first real
        request then does not pay for thread start-up and first-touch page faults of the
        weights (measured ~70 ms on the bundled model). Call it from the thread that decodes."""
        self.batch_clear()
        self.batch_add(token, 0, 0, True)
        self.decode()
        self.clear()
        self.batch_clear()

    def close(self) -> None:
        # The batch's memory is the numpy columns above (nothing to free in llama.cpp).
        if self.ptr is not None:
            C.llama_free(self.ptr)
            self.ptr = None


# Candidate arrays as llama.cpp lays them out (llama_token_data: id, logit, p).
_TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])

# (token id, log-probability) of the sampled token, and of the most likely ones.
Scored = tuple[int, float, list[tuple[int, float]]]


class Sampler:
    """A per-request llama.cpp sampler chain: logit bias, penalties and grammar first (they
    *process* the logits), then top-k/p, min-p, temperature and the draw (they *select*)."""

    def __init__(
        self,
        model: Model,
        params: SamplingParams,
        grammar: str | None,
        *,
        grammar_triggers: Sequence[str] = (),
        logit_bias: Sequence[tuple[int, float]] = (),
    ) -> None:
        penalties = (params.repeat_penalty, params.frequency_penalty, params.presence_penalty)
        # Plain greedy needs no chain: an argmax over the row's logits is the same token (the
        # first of equal maxima, as llama.cpp's greedy sampler picks) for ~10 us instead of
        # ~100 us spent copying the whole vocabulary into a candidate array every token.
        self.n_vocab = model.n_vocab
        self.greedy_only = (
            params.temperature <= 0
            and grammar is None
            and penalties == (1, 0, 0)
            and not logit_bias
        )
        self.ptr: Any = None
        self.n_process = 0  # samplers at the head of the chain that process (not select)
        self._candidates: Any = None
        if self.greedy_only:
            return
        chain = C.llama_sampler_chain_init(C.llama_sampler_chain_default_params())
        self.ptr = chain
        add = C.llama_sampler_chain_add
        if logit_bias:
            biases = (C.llama_logit_bias * len(logit_bias))(
                *(C.llama_logit_bias(token, bias) for token, bias in logit_bias)
            )
            add(chain, C.llama_sampler_init_logit_bias(model.n_vocab, len(logit_bias), biases))
            self.n_process += 1
        if penalties != (1.0, 0.0, 0.0):
            add(
                chain,
                C.llama_sampler_init_penalties(
                    model.n_vocab,
                    PENALTY_LAST_N,
                    params.repeat_penalty,
                    params.frequency_penalty,
                    params.presence_penalty,
                ),
            )
            self.n_process += 1
        if grammar is not None:
            g = self._grammar(model, grammar, grammar_triggers)
            if g is None:
                self.close()
                raise ValueError("llama.cpp could not parse the grammar")
            add(chain, g)
            self.n_process += 1
        if params.temperature <= 0:
            add(chain, C.llama_sampler_init_greedy())
        else:
            add(chain, C.llama_sampler_init_top_k(params.top_k))
            add(chain, C.llama_sampler_init_top_p(params.top_p, 1))
            add(chain, C.llama_sampler_init_min_p(params.min_p, 1))
            add(chain, C.llama_sampler_init_temp(params.temperature))
            seed = params.seed if params.seed is not None else DEFAULT_SEED
            add(chain, C.llama_sampler_init_dist(seed & 0xFFFFFFFF))

    @staticmethod
    def _grammar(model: Model, grammar: str, triggers: Sequence[str]) -> Any:
        if not triggers:
            return C.llama_sampler_init_grammar(model.vocab, grammar.encode(), b"root")
        patterns = (ctypes.c_char_p * len(triggers))(*(t.encode() for t in triggers))
        return C.llama_sampler_init_grammar_lazy_patterns(
            model.vocab, grammar.encode(), b"root", patterns, len(triggers), None, 0
        )

    def sample(self, ctx: Context, row: int) -> int:
        """Sample from the logits of batch row ``row`` (and accept the token into the chain)."""
        if self.greedy_only:
            logits = C.llama_get_logits_ith(ctx.ptr, row)
            return int(np.ctypeslib.as_array(logits, shape=(self.n_vocab,)).argmax())
        return int(C.llama_sampler_sample(self.ptr, ctx.ptr, row))

    def sample_scored(self, ctx: Context, row: int, top: int) -> Scored:
        """``sample`` that also returns log-probabilities: the log-softmax of the logits after
        the processing samplers (bias, penalties, grammar), before the selecting ones. The
        token drawn is the one ``sample`` draws: this is what ``llama_sampler_sample`` does
        (candidates from the row's logits, apply the chain, accept), split in two."""
        raw = np.ctypeslib.as_array(C.llama_get_logits_ith(ctx.ptr, row), shape=(self.n_vocab,))
        if self.greedy_only:
            return _scored(int(raw.argmax()), raw, None, top)
        if self._candidates is None:
            self._candidates = np.zeros(self.n_vocab, dtype=_TOKEN_DATA)
        cand = self._candidates
        cand["id"] = np.arange(self.n_vocab, dtype=np.int32)
        cand["logit"] = raw
        cand["p"] = 0.0
        arr = C.llama_token_data_array(
            cand.ctypes.data_as(C.llama_token_data_p), self.n_vocab, -1, False
        )
        ref = ctypes.byref(arr)
        n = C.llama_sampler_chain_n(self.ptr)
        for i in range(self.n_process):
            C.llama_sampler_apply(C.llama_sampler_chain_get(self.ptr, i), ref)
        processed = _view(arr)
        # Copied: the selecting samplers sort and cut the array.
        logits, ids = processed["logit"].copy(), processed["id"].copy()
        for i in range(self.n_process, n):
            C.llama_sampler_apply(C.llama_sampler_chain_get(self.ptr, i), ref)
        token = int(_view(arr)["id"][arr.selected])
        C.llama_sampler_accept(self.ptr, token)
        return _scored(token, logits, ids, top)

    def close(self) -> None:
        if self.ptr is not None:
            C.llama_sampler_free(self.ptr)
            self.ptr = None


def _view(arr: Any) -> Any:
    """The candidates a llama_token_data_array points at, as a numpy structured array."""
    address = ctypes.cast(arr.data, ctypes.c_void_p).value
    buffer = (ctypes.c_char * (arr.size * _TOKEN_DATA.itemsize)).from_address(address)
    return np.frombuffer(buffer, dtype=_TOKEN_DATA, count=arr.size)


def _scored(token: int, logits: Any, ids: Any, top: int) -> Scored:
    """Log-softmax values (token ``ids[i]`` at ``i``; ids None = in id order) of the token
    and of the ``top`` most likely ones: one pass over the vocabulary for the normaliser, the
    rest only for the tokens reported."""
    peak = float(logits.max())
    total = float(np.exp(logits - np.float32(peak)).sum(dtype=np.float64))
    norm = peak + math.log(total)
    if ids is None or (token < len(ids) and ids[token] == token):
        index = token  # the processing samplers keep the candidates in id order
    else:
        index = int(np.flatnonzero(ids == token)[0])
    best: list[tuple[int, float]] = []
    k = min(top, int(np.count_nonzero(logits > -np.inf)))
    if k > 0:
        part = np.argpartition(logits, -k)[-k:]
        part = part[np.argsort(-logits[part], kind="stable")]
        best = [(int(i if ids is None else ids[i]), float(logits[i]) - norm) for i in part]
    return token, float(logits[index]) - norm, best


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i
