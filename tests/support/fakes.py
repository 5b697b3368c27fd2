"""A fake engine for fast unit tests of routing, framing and error mapping (no model)."""

from __future__ import annotations

import asyncio
import struct
import threading
import time
from collections.abc import Sequence
from typing import Any

from core.engine.stream import GenerationStream
from core.engine.types import (
    ChatMessage,
    ChoiceResult,
    Completion,
    Delta,
    Embeddings,
    EngineState,
    EngineStats,
    GenerationRequest,
    PromptSegment,
    TokenLogprob,
)
from core.errors import (
    ContextOverflowError,
    EngineOverloadedError,
    InvalidParameterError,
    ModelNotReadyError,
)


class FakeEngine:
    """Echoes a fixed script word by word; one 'token' per word (each choice the same, with
    log-probability -0.5 and the alternative ' x' at -1.5). Records requests and the tools the
    chat template was given. Token ids are the characters' code points."""

    def __init__(
        self,
        words: Sequence[str] = ("Hello", " from", " the", " fake", " engine", "."),
        *,
        n_ctx: int = 64,
        delay_s: float = 0.0,
        state: EngineState = "ready",
    ) -> None:
        self.words = list(words)
        self._n_ctx = n_ctx
        self.delay_s = delay_s
        self._state: EngineState = state
        self.overloaded = False
        self.requests: list[GenerationRequest] = []
        self.active = 0
        self.closed = False
        self.tools: list[Any] = []
        self.tool_call_tag: str | None = "<tool_call>"

    model_id = "fake-model"
    embedding_model_id = "fake-model"
    n_vocab = 0x110000

    @property
    def state(self) -> EngineState:
        return self._state

    @property
    def state_detail(self) -> str | None:
        return None if self._state == "ready" else f"fake engine is {self._state}"

    @property
    def n_ctx(self) -> int:
        return self._n_ctx

    def stats(self) -> EngineStats:
        return EngineStats(active=self.active, waiting=0, capacity=1)

    def count_tokens(self, prompt: Sequence[PromptSegment]) -> int:
        return sum(len(s.text.split()) for s in prompt)

    def tokenize(self, prompt: Sequence[PromptSegment], *, add_bos: bool = True) -> list[int]:
        return [ord(ch) for s in prompt for ch in s.text]

    def token_piece(self, token: int) -> bytes:
        if not 0 <= token < self.n_vocab:
            raise InvalidParameterError(f"token {token} is not in the vocabulary", param="tokens")
        return chr(token).encode("utf-8", "surrogatepass")

    async def embed(self, inputs: Sequence[str | Sequence[int]]) -> Embeddings:
        """A 4-dimensional vector per input from its characters (not a model: for shapes)."""
        vectors = []
        for item in inputs:
            codes = [ord(c) for c in item] if isinstance(item, str) else list(item)
            v = [float(len(codes)), float(sum(codes) % 97), 1.0, 0.5]
            norm = sum(x * x for x in v) ** 0.5
            vectors.append(struct.pack("<4f", *(x / norm for x in v)))
        tokens = sum(len(i) for i in inputs)
        return Embeddings(vectors, tokens, self.embedding_model_id, 4, "mean")

    def render_chat(
        self, messages: Sequence[ChatMessage], tools: Sequence[Any] | None = None
    ) -> tuple[PromptSegment, ...]:
        self.tools.append(tools)
        out: list[PromptSegment] = []
        for m in messages:
            out += [PromptSegment(f"<{m.role}>", True), PromptSegment(m.content, False)]
        return (*out, PromptSegment("<assistant>", True))

    def submit(self, request: GenerationRequest) -> GenerationStream:
        if self._state != "ready":
            raise ModelNotReadyError("fake engine not ready")
        if self.overloaded:
            raise EngineOverloadedError("busy", headers={"Retry-After": "1"})
        n_prompt = self.count_tokens(request.prompt)
        if n_prompt >= self._n_ctx:
            raise ContextOverflowError(f"prompt is {n_prompt} tokens; context is {self._n_ctx}")
        self.requests.append(request)
        stream = GenerationStream(n_prompt, asyncio.get_running_loop())
        threading.Thread(
            target=self._produce, args=(request, stream, n_prompt), daemon=True
        ).start()
        return stream

    def _produce(self, request: GenerationRequest, stream: GenerationStream, n_prompt: int) -> None:
        self.active += 1
        stream.mark_started()  # the fake has a slot for everyone
        plain = request.n == 1 and request.logprobs is None
        try:
            texts = [""] * request.n
            counts = [0] * request.n
            logs: list[list[TokenLogprob]] = [[] for _ in range(request.n)]
            finish = "stop"
            for word in self.words:
                if stream.cancelled:
                    finish = "cancelled"
                    break
                if counts[0] >= request.max_tokens:
                    finish = "length"
                    break
                if self.delay_s:
                    time.sleep(self.delay_s)
                for i in range(request.n):
                    texts[i] += word
                    counts[i] += 1
                    if plain:
                        stream.emit(word)
                        continue
                    entry = None
                    if request.logprobs is not None:
                        top = ((word.encode(), -0.5), (b" x", -1.5))[: request.logprobs]
                        entry = TokenLogprob(word.encode(), -0.5, top)
                        logs[i].append(entry)
                    stream.emit_delta(Delta(i, word, [entry] if entry else None))
            lp = logs if request.logprobs is not None else [None] * request.n
            choices = [
                ChoiceResult(i, texts[i], finish, counts[i], lp[i])  # type: ignore[arg-type]
                for i in range(request.n)
            ]
            stream.finish(
                Completion(
                    texts[0],
                    finish,  # type: ignore[arg-type]
                    n_prompt,
                    sum(counts),
                    logprobs=lp[0],
                    choices=choices if request.n > 1 else [],
                )
            )
        finally:
            self.active -= 1

    def close(self) -> None:
        self.closed = True
