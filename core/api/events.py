"""Streaming events: SSE framing and the chunk builders of the native and OpenAI routes."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

from fastapi.responses import JSONResponse, Response, StreamingResponse

from core.api.protocol import Usage
from core.engine.stream import GenerationStream
from core.engine.types import ChoiceResult, Completion
from core.errors import NimbusError
from core.http.errors import error_body
from core.security import RequestSecurity

SSE_DONE = b"data: [DONE]\n\n"
_encode_string = json.encoder.encode_basestring  # what json.dumps(str, ensure_ascii=False) runs
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
        # json.dumps(text, ensure_ascii=False) without its Python-level dispatch: the C string
        # encoder it ends in (same bytes; property-tested).
        return b"".join((self._head, _encode_string(text).encode(), self._tail))


@dataclass
class EventStream:
    """A use-case's streamed answer: the SSE bytes, and the generation they come from (cancelled
    when the client goes away)."""

    stream: GenerationStream
    events: AsyncIterator[bytes]


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


def to_response(result: dict[str, Any] | EventStream) -> Response:
    """A use-case's answer as HTTP: JSON, or server-sent events."""
    if isinstance(result, EventStream):
        return StreamingResponse(
            guarded(result.stream, result.events),
            media_type="text/event-stream",
            headers=SSE_HEADERS,
        )
    return JSONResponse(result)


# -- OpenAI chunks ------------------------------------------------------------------------------
def response_meta(prefix: str, model: str) -> dict[str, Any]:
    """id, created and model: shared by a response and every chunk of its stream."""
    return {"id": f"{prefix}-{uuid.uuid4().hex}", "created": int(time.time()), "model": model}


def usage_of(completion: Completion) -> Usage:
    return Usage(
        prompt_tokens=completion.prompt_tokens,
        completion_tokens=completion.completion_tokens,
        total_tokens=completion.prompt_tokens + completion.completion_tokens,
    )


def finish_reason(completion: Completion | ChoiceResult) -> Literal["stop", "length"]:
    # A cancelled run only reaches a reader when the deadline cut it: report it as 'length'.
    return "stop" if completion.finish_reason == "stop" else "length"


class ChoiceChunks:
    """The chunks of one streamed OpenAI response (chat or text completion), one choice.

    ``report`` holds the nimbus extras (prompt warnings, redactions) that the final chunk
    carries when there are any."""

    def __init__(self, meta: dict[str, Any], kind: Literal["chat", "text"]) -> None:
        self.kind = kind
        object_ = "chat.completion.chunk" if kind == "chat" else "text_completion"
        self.base = {**meta, "object": object_}
        self.text = TextEvent(self.payload(TextEvent.MARK))

    def payload(self, text: str | None, finish: str | None = None) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": 0}
        if self.kind == "chat":
            choice["delta"] = {} if text is None else {"content": text}
        else:
            choice["text"] = text or ""
        choice["logprobs"] = None
        choice["finish_reason"] = finish
        return {**self.base, "choices": [choice]}

    def role(self, index: int = 0) -> bytes:
        """The opening chat chunk: the assistant role with empty content."""
        payload = self.payload("")
        payload["choices"][0]["delta"] = {"role": "assistant", "content": ""}
        payload["choices"][0]["index"] = index
        return sse_event(payload)

    def choice(
        self,
        index: int,
        text: str | None = None,
        *,
        logprobs: dict[str, Any] | None = None,
        tool_calls: list[dict[str, Any]] | None = None,
        finish: str | None = None,
        report: dict[str, Any] | None = None,
    ) -> bytes:
        """Any chunk of any choice (n > 1, log-probabilities, tool calls): built per event."""
        choice: dict[str, Any] = {"index": index}
        if self.kind == "chat":
            delta: dict[str, Any] = {}
            if text is not None:
                delta["content"] = text
            if tool_calls is not None:
                delta["tool_calls"] = tool_calls
            choice["delta"] = delta
        else:
            choice["text"] = text or ""
        choice["logprobs"] = logprobs
        choice["finish_reason"] = finish
        payload = {**self.base, "choices": [choice]}
        return sse_event({**payload, "nimbus": report} if report else payload)

    def finish(self, completion: Completion, report: dict[str, Any]) -> bytes:
        payload = self.payload(None, finish_reason(completion))
        return sse_event({**payload, "nimbus": report} if report else payload)

    def usage(self, completion: Completion) -> bytes:
        return sse_event({**self.base, "choices": [], "usage": usage_of(completion).model_dump()})


# -- native /api/generate chunks ----------------------------------------------------------------
async def native_events(texts: AsyncIterator[str], sec: RequestSecurity) -> AsyncIterator[bytes]:
    """One ``{"token": ...}`` event per text delta, then ``[DONE]``; redactions made on the way
    go out in a final event."""
    token = TextEvent({"token": TextEvent.MARK})
    async for text in texts:
        yield token(text)
    if sec.redactions:
        # An empty token keeps seed clients (which read `token`) working.
        yield sse_event({"token": "", "redactions": sec.redactions})
    yield SSE_DONE
