"""LlamaEngine: llama.cpp (via llama-cpp-python) behind one worker thread and a bounded queue.

A llama.cpp context is not thread-safe, so exactly one thread touches it. Requests wait in a queue
of ``limits.max_queue``; a request that finds it full is refused at once (503 + Retry-After)."""

from __future__ import annotations

import asyncio
import codecs
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.engine.chat import ChatTemplate
from core.engine.stops import StopMatcher
from core.engine.stream import GenerationStream
from core.engine.types import (
    ChatMessage,
    Completion,
    EngineState,
    EngineStats,
    FinishReason,
    GenerationRequest,
    PromptSegment,
)
from core.errors import (
    ContextOverflowError,
    EngineOverloadedError,
    ModelLoadError,
    ModelNotReadyError,
    NimbusError,
)
from core.settings import Settings
from core.sources import resolve_model
from core.sources.resolve import ProgressCallback

log = logging.getLogger("nimbus.engine")

_RANDOM_SEED = 0xFFFFFFFF  # llama.cpp's LLAMA_DEFAULT_SEED: a fresh random seed per sampler


@dataclass
class _Job:
    request: GenerationRequest
    tokens: list[int]
    max_new: int
    stream: GenerationStream


class LlamaEngine:
    """Construct cheaply, then ``load()`` (blocking; may run in a background thread)."""

    def __init__(self, settings: Settings, *, progress: ProgressCallback | None = None) -> None:
        self._settings = settings
        self._progress = progress
        self._state: EngineState = "loading"
        self._detail: str | None = "model not loaded yet"
        self._llm: Any = None
        self._template: ChatTemplate | None = None
        self._model_path: Path | None = None
        self._jobs: deque[_Job] = deque()
        self._wakeup = threading.Condition()
        self._active = 0
        self._stopping = False
        self._worker: threading.Thread | None = None
        self._model_id = settings.model_alias or _alias_for(settings.model)

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
        """Resolve, verify and load the model, then start the worker. Raises ModelLoadError."""
        path = self.resolve()
        try:
            self._llm = self._open(path)
            eng = self._settings.engine
            metadata: dict[str, str] = dict(self._llm.metadata or {})
            self._template = ChatTemplate(
                eng.chat_template or metadata.get("tokenizer.chat_template"),
                bos_token=self._token_text(self._llm.token_bos()),
                eos_token=self._token_text(self._llm.token_eos()),
            )
        except NimbusError as exc:
            self._state, self._detail = "failed", exc.message
            raise
        except Exception as exc:
            self._state, self._detail = "failed", f"model {self._settings.model!r}: {exc}"
            raise ModelLoadError(self._detail) from exc
        if self._settings.model_alias is None:
            self._model_id = _alias_for(self._settings.model, path)
        self._worker = threading.Thread(target=self._run, name="nimbus-engine", daemon=True)
        self._worker.start()
        self._state, self._detail = "ready", None
        log.info("model %s ready (%s, n_ctx=%d)", self._model_id, path, self.n_ctx)

    def _open(self, path: Path) -> Any:
        from llama_cpp import Llama  # heavy import: only when a model is really loaded

        eng = self._settings.engine
        try:
            return Llama(
                model_path=str(path),
                n_ctx=eng.n_ctx,
                n_threads=eng.n_threads,
                n_threads_batch=eng.n_threads,
                n_batch=eng.n_batch,
                n_gpu_layers=eng.n_gpu_layers,
                use_mmap=eng.use_mmap,
                verbose=False,
            )
        except Exception as exc:
            raise ModelLoadError(
                f"model {self._settings.model!r}: llama.cpp could not load {path}: {exc}"
            ) from exc

    def close(self) -> None:
        with self._wakeup:
            self._stopping = True
            pending = list(self._jobs)
            self._jobs.clear()
            self._wakeup.notify_all()
        for job in pending:
            job.stream.fail(ModelNotReadyError("server is shutting down"))
        if self._worker is not None and self._worker is not threading.current_thread():
            self._worker.join(timeout=10)
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
        return int(self._llm.n_ctx()) if self._llm is not None else self._settings.engine.n_ctx

    def stats(self) -> EngineStats:
        with self._wakeup:
            return EngineStats(
                active=self._active,
                waiting=len(self._jobs),
                capacity=self._settings.limits.max_queue,
            )

    # -- prompts ----------------------------------------------------------------------------
    def render_chat(self, messages: Sequence[ChatMessage]) -> tuple[PromptSegment, ...]:
        self._require_ready()
        assert self._template is not None
        return self._template.render(messages)

    def tokenize(self, prompt: Sequence[PromptSegment], *, add_bos: bool = True) -> list[int]:
        self._require_ready()
        tokens: list[int] = []
        for i, segment in enumerate(prompt):
            tokens += self._llm.tokenize(
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
        stream = GenerationStream(prompt_tokens=len(tokens), loop=asyncio.get_running_loop())
        job = _Job(request, tokens, min(request.max_tokens, room), stream)
        with self._wakeup:
            if self._stopping:
                raise ModelNotReadyError("server is shutting down")
            # One request runs; at most max_queue more wait. Past that, refuse at once.
            if len(self._jobs) + self._active > self._settings.limits.max_queue:
                retry = str(self._settings.limits.retry_after_s)
                raise EngineOverloadedError(
                    f"the engine is busy ({len(self._jobs)} requests waiting); retry shortly",
                    headers={"Retry-After": retry},
                )
            self._jobs.append(job)
            self._wakeup.notify()
        return stream

    def _require_ready(self) -> None:
        if self._state != "ready":
            raise ModelNotReadyError(
                f"model is {self._state}: {self._detail or ''}".rstrip(": "),
                headers={"Retry-After": str(self._settings.limits.retry_after_s)},
            )

    # -- worker -----------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._wakeup:
                while not self._jobs and not self._stopping:
                    self._wakeup.wait()
                if self._stopping:
                    return
                job = self._jobs.popleft()
                self._active = 1
            try:
                if job.stream.cancelled:
                    job.stream.finish(Completion("", "cancelled", len(job.tokens), 0))
                else:
                    job.stream.finish(self._generate(job))
            except NimbusError as exc:
                job.stream.fail(exc)
            except Exception as exc:
                log.exception("generation failed")
                job.stream.fail(exc)
            finally:
                with self._wakeup:
                    self._active = 0

    def _generate(self, job: _Job) -> Completion:
        req, llm, stream = job.request, self._llm, job.stream
        params = req.sampling
        llm.set_seed(params.seed if params.seed is not None else _RANDOM_SEED)
        grammar = None
        if req.grammar is not None:
            from llama_cpp.llama_grammar import LlamaGrammar

            grammar = LlamaGrammar.from_string(req.grammar, verbose=False)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        stops = StopMatcher(req.stop)
        vocab = llm._model.vocab
        from llama_cpp import llama_vocab_is_eog

        pieces: list[str] = []
        count = 0
        finish: FinishReason = "length"
        stop_hit = False
        tokens = llm.generate(
            job.tokens,
            top_k=params.top_k,
            top_p=params.top_p,
            min_p=params.min_p,
            temp=params.temperature,
            repeat_penalty=params.repeat_penalty,
            frequency_penalty=params.frequency_penalty,
            presence_penalty=params.presence_penalty,
            grammar=grammar,
            reset=True,
        )
        for token in tokens:
            if stream.cancelled:
                finish = "cancelled"
                break
            if llama_vocab_is_eog(vocab, token):
                finish = "stop"
                break
            count += 1
            text, hit = stops.push(decoder.decode(llm.detokenize([token])))
            pieces.append(text)
            stream.emit(text)
            if hit:
                finish, stop_hit = "stop", True
                break
            if count >= job.max_new:
                break
            if req.deadline is not None and time.monotonic() >= req.deadline:
                break
        tokens.close()
        if not stop_hit:
            tail = stops.push(decoder.decode(b"", final=True))[0] + stops.flush()
            pieces.append(tail)
            stream.emit(tail)
        return Completion("".join(pieces), finish, len(job.tokens), count)

    def _token_text(self, token: int) -> str:
        if token < 0:
            return ""
        return bytes(self._llm.detokenize([token], special=True)).decode("utf-8", errors="replace")


def _alias_for(spec: str, path: Path | None = None) -> str:
    from core.sources import BUNDLED_MODEL_ALIASES

    if spec.strip().lower() in BUNDLED_MODEL_ALIASES:
        return "smollm2-135m-instruct"
    # A downloaded model's cache file carries a hash prefix; its id comes from the URI instead.
    remote = "://" in spec
    name = path.name if path is not None and not remote else spec.rstrip("/").rsplit("/", 1)[-1]
    return name.removesuffix(".gguf") or spec
