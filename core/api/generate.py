"""The generate use-case (the seed contract): POST /api/generate, the Modal ``generate`` method and
`nimbus generate` all run it, so limits, templating, prompt checks, charging and output redaction
are the same everywhere.

prompt checks -> engine request -> submit -> stream or complete -> charge -> redact -> fields"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from core.api.events import EventStream, native_events
from core.api.protocol import GenerateRequest, GenerateResponse
from core.api.service import Disconnect, GenerationService
from core.engine.stream import GenerationStream
from core.security import RequestSecurity


class GenerateCall:
    """One call of the contract. Construct it (prompt checks, engine admission: errors raise
    here, before any output), then read the answer whole (``response``) or streamed (``text``
    for plain deltas, ``events`` for SSE)."""

    def __init__(
        self,
        service: GenerationService,
        sec: RequestSecurity,
        body: GenerateRequest,
        *,
        deadline: float | None = None,
    ) -> None:
        self.started = time.perf_counter()
        self.sec = sec
        body = body.model_copy(update={"prompt": sec.text(body.prompt, "prompt")})
        sec.finish_prompt()
        self.body = body
        self.service = service
        self.stream: GenerationStream = service.submit(service.from_generate(body, deadline))

    def text(self) -> AsyncIterator[str]:
        """The redacted text deltas; tokens are charged when the stream ends or is abandoned."""
        return self.sec.stream_text(self.stream)

    def events(self) -> EventStream:
        return EventStream(self.stream, native_events(self.text(), self.sec))

    async def response(self, disconnected: Disconnect | None = None) -> dict[str, Any]:
        """The whole answer: the seed contract's three fields, plus ``warnings``/``redactions``
        only when there are any."""
        completion = await self.service.complete(self.stream, disconnected)
        await self.sec.charge(completion.prompt_tokens, completion.completion_tokens)
        payload = GenerateResponse(
            text=self.sec.filter(completion.text),
            tokens=completion.completion_tokens,
            latencyMs=round((time.perf_counter() - self.started) * 1000, 2),
        )
        extra = {
            ("warnings" if k == "prompt_warnings" else k): v
            for k, v in self.sec.body_fields().items()
        }
        return {**payload.model_dump(by_alias=True), **extra}
