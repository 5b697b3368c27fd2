"""OpenAI-compatible routes: /v1/chat/completions, /v1/completions, /v1/models."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from core.api.deps import deadline_of, service_of
from core.api.schemas import (
    ChatChoice,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChatMessageOut,
    CompletionChoice,
    CompletionRequest,
    CompletionResponse,
    ErrorResponse,
    ModelCard,
    ModelList,
    TextPart,
    Usage,
)
from core.api.sse import SSE_DONE, TextEvent, sse_event, sse_response
from core.engine.stream import GenerationStream
from core.engine.types import Completion
from core.security import RequestSecurity, request_security

router = APIRouter(prefix="/v1", tags=["openai"], dependencies=[Depends(request_security)])
_SECURITY = Depends(request_security)  # cached per request: the router-level one is reused

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 413, 422, 429, 503)
}
_STREAM: dict[int | str, dict[str, Any]] = {200: {"content": {"text/event-stream": {}}}}


def _meta(prefix: str, model: str) -> dict[str, Any]:
    return {"id": f"{prefix}-{uuid.uuid4().hex}", "created": int(time.time()), "model": model}


def _usage(completion: Completion) -> Usage:
    return Usage(
        prompt_tokens=completion.prompt_tokens,
        completion_tokens=completion.completion_tokens,
        total_tokens=completion.prompt_tokens + completion.completion_tokens,
    )


def _finish(completion: Completion) -> Literal["stop", "length"]:
    # A cancelled run only reaches a reader when the deadline cut it: report it as 'length'.
    return "stop" if completion.finish_reason == "stop" else "length"


@router.post(
    "/chat/completions",
    response_model=ChatCompletionResponse,
    responses={**_ERRORS, **_STREAM},
    summary="Chat completion (OpenAI-compatible)",
)
async def chat_completions(
    body: ChatCompletionRequest, request: Request, sec: RequestSecurity = _SECURITY
) -> Response:
    service = service_of(request)
    body = _checked_chat(body, sec)
    stream = service.submit(service.from_chat(body, deadline=deadline_of(request)))
    meta = _meta("chatcmpl", service.engine.model_id)
    if body.stream:
        usage = bool(body.stream_options and body.stream_options.include_usage)
        return sse_response(stream, _chat_events(stream, meta, usage, sec))
    completion = await service.complete(request, stream)
    await sec.charge(completion.prompt_tokens, completion.completion_tokens)
    payload = ChatCompletionResponse(
        id=meta["id"],
        created=meta["created"],
        model=meta["model"],
        choices=[
            ChatChoice(
                message=ChatMessageOut(content=sec.filter(completion.text)),
                finish_reason=_finish(completion),
            )
        ],
        usage=_usage(completion),
    )
    return JSONResponse(_with_report(payload.model_dump(), sec))


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


async def _chat_events(
    stream: GenerationStream, meta: dict[str, Any], include_usage: bool, sec: RequestSecurity
) -> AsyncIterator[bytes]:
    base = {**meta, "object": "chat.completion.chunk"}

    def event(delta: dict[str, str], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {**base, "choices": [choice]}

    def chunk(delta: dict[str, str], finish: str | None = None) -> bytes:
        return sse_event(_with_report(event(delta, finish), sec) if finish else event(delta))

    yield chunk({"role": "assistant", "content": ""})
    token = TextEvent(event({"content": TextEvent.MARK}))
    async for text in sec.stream_text(stream):
        yield token(text)
    assert stream.result is not None
    yield chunk({}, _finish(stream.result))
    if include_usage:
        yield sse_event({**base, "choices": [], "usage": _usage(stream.result).model_dump()})
    yield SSE_DONE


@router.post(
    "/completions",
    response_model=CompletionResponse,
    responses={**_ERRORS, **_STREAM},
    summary="Text completion (OpenAI-compatible)",
)
async def completions(
    body: CompletionRequest, request: Request, sec: RequestSecurity = _SECURITY
) -> Response:
    service = service_of(request)
    if isinstance(body.prompt, str):
        prompt: str | list[str] = sec.text(body.prompt, "prompt")
    else:
        prompt = [sec.text(p, f"prompt.{i}") for i, p in enumerate(body.prompt)]
    sec.finish_prompt()
    body = body.model_copy(update={"prompt": prompt})
    stream = service.submit(service.from_completion(body, deadline=deadline_of(request)))
    meta = _meta("cmpl", service.engine.model_id)
    prefix = body.prompt if body.echo and isinstance(body.prompt, str) else ""
    if body.stream:
        usage = bool(body.stream_options and body.stream_options.include_usage)
        return sse_response(stream, _completion_events(stream, meta, usage, prefix, sec))
    completion = await service.complete(request, stream)
    await sec.charge(completion.prompt_tokens, completion.completion_tokens)
    payload = CompletionResponse(
        id=meta["id"],
        created=meta["created"],
        model=meta["model"],
        choices=[
            CompletionChoice(
                text=prefix + sec.filter(completion.text), finish_reason=_finish(completion)
            )
        ],
        usage=_usage(completion),
    )
    return JSONResponse(_with_report(payload.model_dump(), sec))


async def _completion_events(
    stream: GenerationStream,
    meta: dict[str, Any],
    include_usage: bool,
    prefix: str,
    sec: RequestSecurity,
) -> AsyncIterator[bytes]:
    base = {**meta, "object": "text_completion"}

    def event(text: str, finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
        return {**base, "choices": [choice]}

    def chunk(text: str, finish: str | None = None) -> bytes:
        return sse_event(_with_report(event(text, finish), sec) if finish else event(text))

    token = TextEvent(event(TextEvent.MARK))
    if prefix:
        yield token(prefix)
    async for text in sec.stream_text(stream):
        yield token(text)
    assert stream.result is not None
    yield chunk("", _finish(stream.result))
    if include_usage:
        yield sse_event({**base, "choices": [], "usage": _usage(stream.result).model_dump()})
    yield SSE_DONE


@router.get("/models", response_model=ModelList, summary="The model this server serves")
async def models(request: Request) -> ModelList:
    engine = service_of(request).engine
    return ModelList(data=[ModelCard(id=engine.model_id, created=int(time.time()))])
