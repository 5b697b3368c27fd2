"""A fake engine for fast unit tests of routing, framing and error mapping (no model)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence

from core.engine.stream import GenerationStream
from core.engine.types import (
    ChatMessage,
    Completion,
    EngineState,
    EngineStats,
    GenerationRequest,
    PromptSegment,
)
from core.errors import ContextOverflowError, EngineOverloadedError, ModelNotReadyError


class FakeEngine:
    """Echoes a fixed script word by word; one 'token' per word. Records requests."""

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

    model_id = "fake-model"

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

    def render_chat(self, messages: Sequence[ChatMessage]) -> tuple[PromptSegment, ...]:
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
        try:
            text, count, finish = "", 0, "stop"
            for word in self.words:
                if stream.cancelled:
                    finish = "cancelled"
                    break
                if count >= request.max_tokens:
                    finish = "length"
                    break
                if self.delay_s:
                    time.sleep(self.delay_s)
                stream.emit(word)
                text += word
                count += 1
            stream.finish(Completion(text, finish, n_prompt, count))  # type: ignore[arg-type]
        finally:
            self.active -= 1

    def close(self) -> None:
        self.closed = True
