"""Turns API requests into engine requests (limits, sampling, prompts) and runs them."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from core.api.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    GenerateRequest,
    ResponseFormat,
    SamplingFields,
)
from core.engine.base import Engine
from core.engine.grammar import grammar_for
from core.engine.stream import DoneCallback, GenerationStream
from core.engine.types import (
    ChatMessage,
    Completion,
    GenerationRequest,
    PromptSegment,
    SamplingParams,
)
from core.errors import InvalidParameterError, PayloadTooLargeError
from core.settings import LimitSettings

# Waits until the client has gone away (an HTTP disconnect).
Disconnect = Callable[[], Awaitable[None]]

# Sees every finished generation (streamed or not), e.g. a platform adapter's metrics.
CompletionObserver = DoneCallback


class GenerationService:
    def __init__(
        self, engine: Engine, limits: LimitSettings, observer: CompletionObserver | None = None
    ) -> None:
        self.engine = engine
        self.limits = limits
        self.observer = observer
        self._extra: CompletionObserver | None = None

    def also_observed_by(self, observer: CompletionObserver) -> GenerationService:
        """A per-request view (same engine, limits and observer) whose generations ``observer``
        sees too: how a request's log record gets its completion."""
        view = GenerationService(self.engine, self.limits, self.observer)
        view._extra = observer
        return view

    # -- building engine requests ----------------------------------------------------------
    def _max_tokens(self, requested: int | None, param: str) -> int:
        if requested is None:
            return self.limits.max_tokens_default
        if requested > self.limits.max_tokens_cap:
            raise InvalidParameterError(
                f"{param} must be at most {self.limits.max_tokens_cap}", param=param
            )
        return requested

    def _check_text(self, text: str, param: str) -> None:
        if len(text) > self.limits.max_prompt_chars:
            raise PayloadTooLargeError(
                f"{param} is {len(text)} characters; the limit is {self.limits.max_prompt_chars}",
                param=param,
            )

    def _stops(self, stop: str | list[str] | None) -> tuple[str, ...]:
        stops = (stop,) if isinstance(stop, str) else tuple(stop or ())
        if len(stops) > self.limits.max_stop_sequences:
            raise InvalidParameterError(
                f"at most {self.limits.max_stop_sequences} stop sequences are allowed", param="stop"
            )
        return tuple(s for s in stops if s)

    @staticmethod
    def _sampling(fields: SamplingFields) -> SamplingParams:
        return SamplingParams(
            temperature=fields.temperature,
            top_p=fields.top_p,
            top_k=fields.top_k,
            min_p=fields.min_p,
            repeat_penalty=fields.repeat_penalty,
            presence_penalty=fields.presence_penalty,
            frequency_penalty=fields.frequency_penalty,
            seed=fields.seed,
        )

    def chat_prompt(self, messages: Sequence[ChatMessage]) -> tuple[PromptSegment, ...]:
        if len(messages) > self.limits.max_messages:
            raise InvalidParameterError(
                f"at most {self.limits.max_messages} messages are allowed", param="messages"
            )
        for i, message in enumerate(messages):
            self._check_text(message.content, f"messages.{i}.content")
        return self.engine.render_chat(messages)

    def from_generate(
        self, body: GenerateRequest, deadline: float | None = None
    ) -> GenerationRequest:
        self._check_text(body.prompt, "prompt")
        if body.raw:
            prompt: tuple[PromptSegment, ...] = (PromptSegment(body.prompt, special=False),)
        else:
            prompt = self.chat_prompt([ChatMessage("user", body.prompt)])
        return GenerationRequest(
            prompt=prompt,
            max_tokens=self._max_tokens(body.max_tokens, "maxTokens"),
            sampling=SamplingParams(temperature=body.temperature, seed=body.seed),
            deadline=deadline,
        )

    def from_chat(
        self, body: ChatCompletionRequest, deadline: float | None = None
    ) -> GenerationRequest:
        messages = [ChatMessage(m.role, m.text()) for m in body.messages]
        requested = body.max_completion_tokens or body.max_tokens
        param = "max_completion_tokens" if body.max_completion_tokens else "max_tokens"
        return GenerationRequest(
            prompt=self.chat_prompt(messages),
            max_tokens=self._max_tokens(requested, param),
            sampling=self._sampling(body),
            stop=self._stops(body.stop),
            grammar=_grammar(body.response_format),
            deadline=deadline,
        )

    def from_completion(
        self, body: CompletionRequest, deadline: float | None = None
    ) -> GenerationRequest:
        if isinstance(body.prompt, list):
            if len(body.prompt) != 1:
                raise InvalidParameterError(
                    "exactly one prompt per request is supported", param="prompt"
                )
            text = body.prompt[0]
        else:
            text = body.prompt
        self._check_text(text, "prompt")
        # A raw completion prompt is the caller's own template: special tokens are honoured.
        return GenerationRequest(
            prompt=(PromptSegment(text, special=True),),
            max_tokens=self._max_tokens(body.max_tokens, "max_tokens"),
            sampling=self._sampling(body),
            stop=self._stops(body.stop),
            grammar=_grammar(body.response_format),
            deadline=deadline,
        )

    # -- running ----------------------------------------------------------------------------
    def submit(self, request: GenerationRequest) -> GenerationStream:
        stream = self.engine.submit(request)
        if self.observer is not None:
            stream.add_done_callback(self.observer)
        if self._extra is not None:
            stream.add_done_callback(self._extra)
        return stream

    async def complete(
        self, stream: GenerationStream, disconnected: Disconnect | None = None
    ) -> Completion:
        """Run to the end; when ``disconnected()`` returns first (the client went away), the
        generation is cancelled."""
        if disconnected is None:
            return await stream.collect()
        watcher = asyncio.ensure_future(disconnected())
        try:
            collect = asyncio.ensure_future(stream.collect())
            done, _ = await asyncio.wait({collect, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if collect not in done:
                stream.cancel()
            return await collect
        finally:
            watcher.cancel()
            stream.cancel()


def _grammar(response_format: ResponseFormat | None) -> str | None:
    if response_format is None:
        return None
    schema = response_format.json_schema.schema_ if response_format.json_schema else None
    return grammar_for(response_format.type, schema)
