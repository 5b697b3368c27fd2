"""The seam between the API and an inference engine."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from core.engine.stream import GenerationStream
from core.engine.types import (
    ChatMessage,
    Embeddings,
    EngineState,
    EngineStats,
    GenerationRequest,
    PromptSegment,
)


class Engine(Protocol):
    @property
    def model_id(self) -> str: ...

    @property
    def embedding_model_id(self) -> str: ...

    @property
    def state(self) -> EngineState: ...

    @property
    def state_detail(self) -> str | None: ...

    @property
    def n_ctx(self) -> int: ...

    @property
    def n_vocab(self) -> int: ...

    @property
    def tool_call_tag(self) -> str | None:
        """The tag opening a tool call in the generic format the model is prompted with (None
        when its chat template teaches another format)."""
        ...

    def stats(self) -> EngineStats: ...

    def count_tokens(self, prompt: Sequence[PromptSegment]) -> int: ...

    def tokenize(self, prompt: Sequence[PromptSegment], *, add_bos: bool = True) -> list[int]: ...

    def token_piece(self, token: int) -> bytes: ...

    def render_chat(
        self, messages: Sequence[ChatMessage], tools: Sequence[dict[str, Any]] | None = None
    ) -> tuple[PromptSegment, ...]: ...

    def submit(self, request: GenerationRequest) -> GenerationStream:
        """Queue a request; raises EngineOverloadedError / ModelNotReadyError /
        ContextOverflowError at once instead of waiting."""
        ...

    async def embed(self, inputs: Sequence[str | Sequence[int]]) -> Embeddings: ...

    def close(self) -> None: ...
