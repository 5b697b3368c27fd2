"""The OpenAI use-cases: chat completions and text completions, whole or streamed.

prompt checks -> engine request -> submit -> stream or complete -> charge -> redact -> payload"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from core.api.events import (
    SSE_DONE,
    ChoiceChunks,
    EventStream,
    finish_reason,
    response_meta,
    usage_of,
)
from core.api.protocol import (
    ChatChoice,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChatMessageOut,
    CompletionChoice,
    CompletionRequest,
    CompletionResponse,
    TextPart,
)
from core.api.service import Disconnect, GenerationService
from core.engine.stream import GenerationStream
from core.security import RequestSecurity


async def chat_completion(
    service: GenerationService,
    sec: RequestSecurity,
    body: ChatCompletionRequest,
    *,
    deadline: float | None = None,
    disconnected: Disconnect | None = None,
) -> dict[str, Any] | EventStream:
    body = _checked_chat(body, sec)
    stream = service.submit(service.from_chat(body, deadline=deadline))
    meta = response_meta("chatcmpl", service.engine.model_id)
    if body.stream:
        usage = bool(body.stream_options and body.stream_options.include_usage)
        chunks = ChoiceChunks(meta, "chat")
        return EventStream(
            stream, _choice_events(stream, chunks, sec, usage, opening=chunks.role())
        )
    completion = await service.complete(stream, disconnected)
    await sec.charge(completion.prompt_tokens, completion.completion_tokens)
    payload = ChatCompletionResponse(
        **meta,
        choices=[
            ChatChoice(
                message=ChatMessageOut(content=sec.filter(completion.text)),
                finish_reason=finish_reason(completion),
            )
        ],
        usage=usage_of(completion),
    )
    return _with_report(payload.model_dump(), sec)


async def text_completion(
    service: GenerationService,
    sec: RequestSecurity,
    body: CompletionRequest,
    *,
    deadline: float | None = None,
    disconnected: Disconnect | None = None,
) -> dict[str, Any] | EventStream:
    if isinstance(body.prompt, str):
        prompt: str | list[str] = sec.text(body.prompt, "prompt")
    else:
        prompt = [sec.text(p, f"prompt.{i}") for i, p in enumerate(body.prompt)]
    sec.finish_prompt()
    body = body.model_copy(update={"prompt": prompt})
    stream = service.submit(service.from_completion(body, deadline=deadline))
    meta = response_meta("cmpl", service.engine.model_id)
    prefix = body.prompt if body.echo and isinstance(body.prompt, str) else ""
    if body.stream:
        usage = bool(body.stream_options and body.stream_options.include_usage)
        chunks = ChoiceChunks(meta, "text")
        opening = chunks.text(prefix) if prefix else b""
        return EventStream(stream, _choice_events(stream, chunks, sec, usage, opening=opening))
    completion = await service.complete(stream, disconnected)
    await sec.charge(completion.prompt_tokens, completion.completion_tokens)
    payload = CompletionResponse(
        **meta,
        choices=[
            CompletionChoice(
                text=prefix + sec.filter(completion.text),
                finish_reason=finish_reason(completion),
            )
        ],
        usage=usage_of(completion),
    )
    return _with_report(payload.model_dump(), sec)


def _checked_chat(body: ChatCompletionRequest, sec: RequestSecurity) -> ChatCompletionRequest:
    """Every text field of every message through the prompt checks."""
    messages = []
    for i, m in enumerate(body.messages):
        param = f"messages.{i}.content"
        if isinstance(m.content, str):
            content: str | list[TextPart] | None = sec.text(m.content, param)
        elif m.content is not None:
            content = [
                p.model_copy(update={"text": sec.text(p.text, f"{param}.{j}.text")})
                for j, p in enumerate(m.content)
            ]
        else:
            content = None
        messages.append(m.model_copy(update={"content": content}))
    sec.finish_prompt()
    return body.model_copy(update={"messages": messages})


def _with_report(payload: dict[str, Any], sec: RequestSecurity) -> dict[str, Any]:
    """Adds a `nimbus` object (prompt warnings, redaction count) when there is anything."""
    info = sec.body_fields()
    return {**payload, "nimbus": info} if info else payload


async def _choice_events(
    stream: GenerationStream,
    chunks: ChoiceChunks,
    sec: RequestSecurity,
    include_usage: bool,
    *,
    opening: bytes,
) -> AsyncIterator[bytes]:
    if opening:
        yield opening
    async for text in sec.stream_text(stream):
        yield chunks.text(text)
    assert stream.result is not None
    yield chunks.finish(stream.result, sec.body_fields())
    if include_usage:
        yield chunks.usage(stream.result)
    yield SSE_DONE
