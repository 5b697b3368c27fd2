"""LlamaEngine: llama.cpp (via llama-cpp-python's low-level bindings) with continuous batching.

A llama.cpp context is not thread-safe, so exactly one thread (core.engine.batched) touches it.
Up to ``engine.slots`` requests decode together; ``limits.max_queue`` more wait. A request that
finds both full is refused at once (503 + Retry-After)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from core.engine.chat import ChatTemplate
from core.engine.stream import GenerationStream
from core.engine.templates import load_chat_template
from core.engine.types import (
    ChatMessage,
    Embeddings,
    EngineState,
    EngineStats,
    GenerationRequest,
    PromptSegment,
)
from core.errors import (
    ContextOverflowError,
    EngineError,
    InvalidParameterError,
    ModelLoadError,
    ModelNotReadyError,
    NimbusError,
)
from core.settings import Settings
from core.sources import resolve_model
from core.sources.resolve import ProgressCallback

if TYPE_CHECKING:
    from core.engine.batched import BatchScheduler, SchedulerStats
    from core.engine.embed import EmbeddingContext
    from core.engine.lowlevel import Context, Model

log = logging.getLogger("nimbus.engine")
T = TypeVar("T")


class LlamaEngine:
    """Construct cheaply, then ``load()`` (blocking; may run in a background thread)."""

    def __init__(self, settings: Settings, *, progress: ProgressCallback | None = None) -> None:
        self._settings = settings
        self._progress = progress
        self._state: EngineState = "loading"
        self._detail: str | None = "model not loaded yet"
        self._model: Model | None = None
        self._ctx: Context | None = None
        self._scheduler: BatchScheduler | None = None
        self._template: ChatTemplate | None = None
        self._model_path: Path | None = None
        self._model_id = settings.model_alias or _alias_for(settings.model)
        self._load_seconds: float | None = None
        emb = settings.embeddings
        self._embedding_id = emb.model_alias or (_alias_for(emb.model) if emb.model else None)
        self._embedder: EmbeddingContext | None = None
        self._embed_model: Model | None = None  # a separate embedding model, once loaded
        self._embed_lock = threading.Lock()

    # -- lifecycle --------------------------------------------------------------------------
    def resolve(self) -> Path:
        """Find (or download) and verify the GGUF file. Raises ModelLoadError naming the source."""
        if self._model_path is None:
            try:
                self._model_path = resolve_model(
                    self._settings.model, self._settings.source, progress=self._progress
                )
            except NimbusError as exc:
                self._state, self._detail = "failed", exc.message
                raise
        return self._model_path

    def load(self) -> None:
        """Resolve, verify and load the model, then start the scheduler. Raises ModelLoadError."""
        path = self.resolve()
        started = time.perf_counter()
        try:
            model, ctx = self._open(path)
            eng = self._settings.engine
            self._model, self._ctx = model, ctx
            self._template = ChatTemplate(
                load_chat_template(eng.chat_template)
                or model.metadata().get("tokenizer.chat_template"),
                bos_token=self._token_text(model.bos),
                eos_token=self._token_text(model.eos),
                model=f"model {self._settings.model!r}",
                control_tokens=model.control_tokens,
            )
        except NimbusError as exc:
            self._state, self._detail = "failed", exc.message
            raise
        except Exception as exc:
            self._state, self._detail = "failed", f"model {self._settings.model!r}: {exc}"
            raise ModelLoadError(self._detail) from exc
        if self._settings.model_alias is None:
            self._model_id = _alias_for(self._settings.model, path)
        from core.engine.batched import BatchScheduler

        self._scheduler = BatchScheduler(
            model,
            ctx,
            slots=eng.slots,
            prefill_chunk=eng.prefill_chunk,
            max_waiting=self._settings.limits.max_queue,
            retry_after_s=self._settings.limits.retry_after_s,
            retry_after_max_s=self._settings.limits.retry_after_max_s,
            prefix_cache=eng.prefix_cache,
            idle_cache_bytes=eng.idle_cache_mb * 1024 * 1024,
            warm_up_token=max(model.bos, 0),
        )
        self._scheduler.start()
        self._load_seconds = time.perf_counter() - started
        self._state, self._detail = "ready", None
        log.info(
            "model %s ready (%s, n_ctx=%d, slots=%d)", self._model_id, path, self.n_ctx, eng.slots
        )

    def _open(self, path: Path) -> tuple[Model, Context]:
        # Heavy import (loads libllama): only when a model is really loaded.
        from core.engine.lowlevel import Context, ContextConfig, Model, load_quietly

        eng = self._settings.engine
        config = ContextConfig(
            n_ctx=eng.n_ctx,
            n_batch=min(eng.n_batch, eng.n_ctx),
            n_seq=eng.slots,
            n_threads=eng.n_threads,
        )
        try:
            model = load_quietly(
                lambda: Model(str(path), n_gpu_layers=eng.n_gpu_layers, use_mmap=eng.use_mmap)
            )
        except Exception as exc:
            raise ModelLoadError(
                f"model {self._settings.model!r}: llama.cpp could not load {path}: {exc}"
            ) from exc
        try:
            ctx = load_quietly(lambda: Context(model, config))
        except Exception as exc:
            model.close()
            raise ModelLoadError(f"model {self._settings.model!r}: {exc}") from exc
        return model, ctx

    def close(self) -> None:
        if self._scheduler is not None:
            for job in self._scheduler.close():
                job.stream.fail(ModelNotReadyError("server is shutting down"))
            if self._scheduler.stopped:  # nothing touches llama.cpp any more: free it now
                if self._embedder is not None:
                    self._embedder.close()
                if self._embed_model is not None:
                    self._embed_model.close()
                if self._ctx is not None:
                    self._ctx.close()
                if self._model is not None:
                    self._model.close()
        if self._state == "ready":
            self._state, self._detail = "stopped", "engine closed"

    # -- introspection ----------------------------------------------------------------------
    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def model_path(self) -> Path | None:
        return self._model_path

    @property
    def state(self) -> EngineState:
        return self._state

    @property
    def state_detail(self) -> str | None:
        return self._detail

    @property
    def n_ctx(self) -> int:
        return self._ctx.n_ctx if self._ctx is not None else self._settings.engine.n_ctx

    def stats(self) -> EngineStats:
        slots = self._settings.engine.slots
        if self._scheduler is None:
            capacity = slots + self._settings.limits.max_queue
            return EngineStats(
                active=0,
                waiting=0,
                capacity=capacity,
                slots=slots,
                retry_after_s=self._settings.limits.retry_after_s,
            )
        s = self._scheduler.stats()
        return EngineStats(
            active=s.active,
            waiting=s.waiting,
            capacity=self._scheduler.capacity,
            slots=slots,
            kv_cells=self.n_ctx,
            kv_cells_used=s.kv_cells_used,
            placed=s.placed,
            reuse_hits=s.reuse_hits,
            prompt_tokens=s.prompt_tokens,
            reused_tokens=s.reused_tokens,
            decode_calls=s.steps,
            load_seconds=self._load_seconds,
            retry_after_s=s.retry_after_s,
        )

    def scheduler_stats(self) -> SchedulerStats | None:
        """Counters of the batching scheduler (prompt tokens seen/reused, decode steps)."""
        return self._scheduler.stats() if self._scheduler is not None else None

    @property
    def n_vocab(self) -> int:
        self._require_ready()
        assert self._model is not None
        return self._model.n_vocab

    @property
    def embedding_model_id(self) -> str:
        """The id /v1/embeddings answers with: the served model's unless a separate one is set."""
        return self._embedding_id or self._model_id

    @property
    def tool_call_tag(self) -> str | None:
        """The tag that opens a tool call in the format the model is prompted with, when that
        format is the generic one (core.engine.toolprompt); None for other native formats."""
        self._require_ready()
        assert self._template is not None
        if self._template.knows_tools:
            return self._template.tool_call_tag
        from core.engine.toolprompt import TOOL_CALL_OPEN

        return TOOL_CALL_OPEN

    # -- prompts ----------------------------------------------------------------------------
    def render_chat(
        self, messages: Sequence[ChatMessage], tools: Sequence[dict[str, Any]] | None = None
    ) -> tuple[PromptSegment, ...]:
        self._require_ready()
        assert self._template is not None
        return self._template.render(messages, tools)

    def tokenize(self, prompt: Sequence[PromptSegment], *, add_bos: bool = True) -> list[int]:
        self._require_ready()
        tokens: list[int] = []
        for i, segment in enumerate(prompt):
            assert self._model is not None
            tokens += self._model.tokenize(
                segment.text.encode("utf-8", errors="replace"),
                add_bos=add_bos and i == 0,
                special=segment.special,
            )
        return tokens

    def count_tokens(self, prompt: Sequence[PromptSegment]) -> int:
        return len(self.tokenize(prompt))

    def token_piece(self, token: int) -> bytes:
        """A token's bytes, control tokens as their text (as llama-server's /detokenize)."""
        self._require_ready()
        assert self._model is not None
        if not 0 <= token < self._model.n_vocab:
            raise InvalidParameterError(
                f"token {token} is not in the vocabulary (0..{self._model.n_vocab - 1})",
                param="tokens",
            )
        return self._model.piece(token, special=True)

    # -- requests ---------------------------------------------------------------------------
    def submit(self, request: GenerationRequest) -> GenerationStream:
        self._require_ready()
        if request.tokens is not None:
            tokens = list(request.tokens)
            n_vocab = self.n_vocab
            bad = next((t for t in tokens if not 0 <= t < n_vocab), None)
            if bad is not None:
                raise InvalidParameterError(
                    f"token {bad} is not in the vocabulary (0..{n_vocab - 1})", param="prompt"
                )
        else:
            tokens = self.tokenize(request.prompt, add_bos=request.add_bos)
        room = self.n_ctx - len(tokens)
        if not tokens:
            raise ContextOverflowError("the prompt is empty after tokenization", param="prompt")
        if room <= 0:
            raise ContextOverflowError(
                f"the prompt is {len(tokens)} tokens; this model's context window is {self.n_ctx}",
                param="messages",
            )
        slots = self._settings.engine.slots
        if request.n > slots:
            # The choices decode side by side, one slot each.
            raise InvalidParameterError(
                f"n must be at most {slots} (the engine's slots)", param="n"
            )
        from core.engine.batched import Job

        assert self._scheduler is not None
        stream = GenerationStream(
            len(tokens), asyncio.get_running_loop(), outbox=self._scheduler.outbox
        )
        self._scheduler.submit(Job(request, tokens, min(request.max_tokens, room), stream))
        return stream

    # -- embeddings ---------------------------------------------------------------------------
    async def embed(self, inputs: Sequence[str | Sequence[int]]) -> Embeddings:
        """Pooled unit vectors, one per input (text, or token ids of the embedding model).
        Errors name the input as ``input.<i>``."""
        self._require_ready()
        ctx = self._embedder
        if ctx is None:
            ctx = await asyncio.to_thread(self._open_embedder)
        model = ctx.model
        token_lists: list[list[int]] = []
        for i, item in enumerate(inputs):
            if isinstance(item, str):
                ids = model.tokenize(item.encode("utf-8", "replace"), add_bos=True, special=False)
            else:
                ids = list(item)
                bad = next((t for t in ids if not 0 <= t < model.n_vocab), None)
                if bad is not None:
                    raise InvalidParameterError(
                        f"token {bad} is not in the vocabulary (0..{model.n_vocab - 1})",
                        param=f"input.{i}",
                    )
            if not ids:
                raise InvalidParameterError("the input is empty", param=f"input.{i}")
            if len(ids) > ctx.n_ctx:
                raise ContextOverflowError(
                    f"input {i} is {len(ids)} tokens; the embedding context holds {ctx.n_ctx}",
                    param=f"input.{i}",
                )
            token_lists.append(ids)
        from core.engine.embed import batches

        # Repeated inputs are evaluated once: the same vector for each, and less work. (Where an
        # input sits in a batch can change the last bits of its vector, as in llama-server.)
        unique = list(dict.fromkeys(tuple(t) for t in token_lists))
        groups = batches([len(t) for t in unique], n_ctx=ctx.n_ctx, n_seq=ctx.n_seq)
        results = await asyncio.gather(
            *(
                self._on_engine_thread(functools.partial(ctx.embed, [unique[i] for i in g]))
                for g in groups
            )
        )
        by_tokens = dict(zip(unique, (v for r in results for v in r), strict=True))
        return Embeddings(
            vectors=[by_tokens[tuple(t)] for t in token_lists],
            prompt_tokens=sum(len(t) for t in token_lists),
            model=self.embedding_model_id,
            dimensions=ctx.n_embd,
            pooling=ctx.pooling,
        )

    def _open_embedder(self) -> EmbeddingContext:
        """Create the embedding context (loading a separate model first when one is set); runs
        on a worker thread: loading decodes nothing, so it needs no engine thread."""
        from core.engine.embed import EmbedConfig, EmbeddingContext
        from core.engine.lowlevel import Model, load_quietly

        with self._embed_lock:
            if self._embedder is not None:
                return self._embedder
            emb, eng = self._settings.embeddings, self._settings.engine
            model = self._model
            assert model is not None
            try:
                if emb.model is not None and self._embed_model is None:
                    path = resolve_model(emb.model, self._settings.source)
                    self._embed_model = load_quietly(
                        lambda: Model(
                            str(path), n_gpu_layers=eng.n_gpu_layers, use_mmap=eng.use_mmap
                        )
                    )
                    if emb.model_alias is None:
                        self._embedding_id = _alias_for(emb.model, path)
                if self._embed_model is not None:
                    model = self._embed_model
                config = EmbedConfig(
                    n_ctx=emb.n_ctx, n_seq=emb.n_seq, n_threads=eng.n_threads, pooling=emb.pooling
                )
                chosen = model
                self._embedder = load_quietly(lambda: EmbeddingContext(chosen, config))
            except NimbusError:
                raise
            except Exception as exc:
                name = emb.model or self._settings.model
                raise ModelLoadError(f"embedding model {name!r}: {exc}") from exc
            log.info("embedding context ready (%s pooling)", self._embedder.pooling)
            return self._embedder

    async def _on_engine_thread(self, fn: Callable[[], T]) -> T:
        assert self._scheduler is not None
        call = _ThreadCall(fn, asyncio.get_running_loop())
        self._scheduler.call(call)
        return await call.future

    def _require_ready(self) -> None:
        if self._state != "ready":
            raise ModelNotReadyError(
                f"model is {self._state}: {self._detail or ''}".rstrip(": "),
                headers={"Retry-After": str(self._settings.limits.retry_after_s)},
            )

    def _token_text(self, token: int) -> str:
        if token < 0:
            return ""
        assert self._model is not None
        return self._model.piece(token, special=True).decode("utf-8", errors="replace")


def _alias_for(spec: str, path: Path | None = None) -> str:
    from core.sources import BUNDLED_MODEL_ALIASES

    if spec.strip().lower() in BUNDLED_MODEL_ALIASES:
        return "smollm2-135m-instruct"
    # An s3:// cache file carries a hash prefix; its id comes from the URI instead.
    remote = spec.startswith("s3://")
    name = path.name if path is not None and not remote else spec.rstrip("/").rsplit("/", 1)[-1]
    return name.removesuffix(".gguf") or spec


class _ThreadCall(Generic[T]):
    """An EngineTask whose result (or error) lands in an asyncio future of the caller's loop."""

    def __init__(self, fn: Callable[[], T], loop: asyncio.AbstractEventLoop) -> None:
        self.fn = fn
        self.loop = loop
        self.future: asyncio.Future[T] = loop.create_future()

    def run(self) -> None:
        try:
            result = self.fn()
        except NimbusError as exc:
            self.fail(exc)
            return
        except Exception as exc:
            self.fail(EngineError(f"embedding failed: {exc}"))
            return
        self._settle(lambda: self.future.set_result(result))

    def fail(self, error: NimbusError) -> None:
        self._settle(lambda: self.future.set_exception(error))

    def _settle(self, set_it: Callable[[], None]) -> None:
        def settle() -> None:
            if not self.future.done():
                set_it()

        # RuntimeError: the caller's loop is gone, nobody waits for the answer.
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(settle)
