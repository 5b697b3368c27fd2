"""LlamaEngine: llama.cpp (via llama-cpp-python's low-level bindings) with continuous batching.

A llama.cpp context is not thread-safe, so exactly one thread (core.engine.batched) touches it.
Up to ``engine.slots`` requests decode together; ``limits.max_queue`` more wait. A request that
finds both full is refused at once (503 + Retry-After)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from core.engine.chat import ChatTemplate
from core.engine.stream import GenerationStream
from core.engine.types import (
    ChatMessage,
    EngineState,
    EngineStats,
    GenerationRequest,
    PromptSegment,
)
from core.errors import (
    ContextOverflowError,
    ModelLoadError,
    ModelNotReadyError,
    NimbusError,
)
from core.settings import Settings
from core.sources import resolve_model
from core.sources.resolve import ProgressCallback

if TYPE_CHECKING:
    from core.engine.batched import BatchScheduler, SchedulerStats
    from core.engine.lowlevel import Context, Model

log = logging.getLogger("nimbus.engine")


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
                eng.chat_template or model.metadata().get("tokenizer.chat_template"),
                bos_token=self._token_text(model.bos),
                eos_token=self._token_text(model.eos),
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
            prefix_cache=eng.prefix_cache,
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
            return EngineStats(active=0, waiting=0, capacity=capacity, slots=slots)
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
        )

    def scheduler_stats(self) -> SchedulerStats | None:
        """Counters of the batching scheduler (prompt tokens seen/reused, decode steps)."""
        return self._scheduler.stats() if self._scheduler is not None else None

    # -- prompts ----------------------------------------------------------------------------
    def render_chat(self, messages: Sequence[ChatMessage]) -> tuple[PromptSegment, ...]:
        self._require_ready()
        assert self._template is not None
        return self._template.render(messages)

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

    # -- requests ---------------------------------------------------------------------------
    def submit(self, request: GenerationRequest) -> GenerationStream:
        self._require_ready()
        tokens = self.tokenize(request.prompt, add_bos=request.add_bos)
        room = self.n_ctx - len(tokens)
        if not tokens:
            raise ContextOverflowError("the prompt is empty after tokenization", param="prompt")
        if room <= 0:
            raise ContextOverflowError(
                f"the prompt is {len(tokens)} tokens; this model's context window is {self.n_ctx}",
                param="messages",
            )
        from core.engine.batched import Job

        stream = GenerationStream(prompt_tokens=len(tokens), loop=asyncio.get_running_loop())
        assert self._scheduler is not None
        self._scheduler.submit(Job(request, tokens, min(request.max_tokens, room), stream))
        return stream

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
    # A downloaded model's cache file carries a hash prefix; its id comes from the URI instead.
    remote = "://" in spec
    name = path.name if path is not None and not remote else spec.rstrip("/").rsplit("/", 1)[-1]
    return name.removesuffix(".gguf") or spec
