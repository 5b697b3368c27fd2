"""Server-sent events framing shared by every streaming route."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi.responses import StreamingResponse

from core.api.errors import error_body
from core.engine.stream import GenerationStream
from core.errors import NimbusError

SSE_DONE = b"data: [DONE]\n\n"
SSE_HEADERS = {
    "Cache-Control": "no-cache",
    # Tell reverse proxies (nginx, some CDNs) not to buffer the stream.
    "X-Accel-Buffering": "no",
}


def sse_event(payload: dict[str, Any]) -> bytes:
    return (
        b"data: "
        + json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        + b"\n\n"
    )


class TextEvent:
    """An SSE event sent once per token whose payload differs only in one string.

    The payload is encoded once with a marker in that string's place; each token then costs
    one string encode and two concatenations instead of a full ``json.dumps`` of the dict, CPU
    that the serving thread would otherwise take from decoding on every token."""

    # Stands in the payload where the per-token string goes (control characters: no text has it).
    MARK = "\u0000nimbus-text\u0000"

    def __init__(self, payload: dict[str, Any]) -> None:
        encoded = sse_event(payload)
        mark = json.dumps(self.MARK).encode()
        head, found, tail = encoded.partition(mark)
        if not found or mark in tail:
            raise ValueError("the payload must hold TextEvent.MARK exactly once")
        self._head, self._tail = head, tail

    def __call__(self, text: str) -> bytes:
        return self._head + json.dumps(text, ensure_ascii=False).encode() + self._tail


async def guarded(stream: GenerationStream, events: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Wrap an event iterator: errors become an OpenAI error event, and a client that goes away
    (the response task is cancelled) cancels the generation so the engine is freed at once."""
    try:
        async for chunk in events:
            yield chunk
    except NimbusError as exc:
        yield sse_event(error_body(exc))
    finally:
        stream.cancel()


def sse_response(stream: GenerationStream, events: AsyncIterator[bytes]) -> StreamingResponse:
    return StreamingResponse(
        guarded(stream, events), media_type="text/event-stream", headers=SSE_HEADERS
    )
