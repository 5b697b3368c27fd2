"""The seam between the API and an inference engine."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from core.engine.stream import GenerationStream
from core.engine.types import (
    ChatMessage,
    EngineState,
    EngineStats,
    GenerationRequest,
    PromptSegment,
)


class Engine(Protocol):
    @property
    def model_id(self) -> str: ...

    @property
    def state(self) -> EngineState: ...

    @property
    def state_detail(self) -> str | None: ...

    @property
    def n_ctx(self) -> int: ...

    def stats(self) -> EngineStats: ...

    def count_tokens(self, prompt: Sequence[PromptSegment]) -> int: ...

    def render_chat(self, messages: Sequence[ChatMessage]) -> tuple[PromptSegment, ...]: ...

    def submit(self, request: GenerationRequest) -> GenerationStream:
        """Queue a request; raises EngineOverloadedError / ModelNotReadyError /
        ContextOverflowError at once instead of waiting."""
        ...

    def close(self) -> None: ...
