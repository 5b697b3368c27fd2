"""OpenAI-compatible routes: /v1/chat/completions, /v1/completions, /v1/models."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from core.api.completions import chat_completion, text_completion
from core.api.deps import deadline_of, disconnect_of, service_of
from core.api.events import to_response
from core.api.protocol import (
    ChatCompletionRequest,
    ChatCompletionResponse,
    CompletionRequest,
    CompletionResponse,
    ErrorResponse,
    ModelCard,
    ModelList,
)
from core.security import RequestSecurity, request_security

router = APIRouter(prefix="/v1", tags=["openai"], dependencies=[Depends(request_security)])
_SECURITY = Depends(request_security)  # cached per request: the router-level one is reused

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 404, 413, 422, 429, 503)
}
_STREAM: dict[int | str, dict[str, Any]] = {200: {"content": {"text/event-stream": {}}}}


@router.post(
    "/chat/completions",
    response_model=ChatCompletionResponse,
    responses={**_ERRORS, **_STREAM},
    summary="Chat completion (OpenAI-compatible)",
)
async def chat_completions(
    body: ChatCompletionRequest, request: Request, sec: RequestSecurity = _SECURITY
) -> Response:
    result = await chat_completion(
        service_of(request),
        sec,
        body,
        deadline=deadline_of(request),
        disconnected=disconnect_of(request),
    )
    return to_response(result)


@router.post(
    "/completions",
    response_model=CompletionResponse,
    responses={**_ERRORS, **_STREAM},
    summary="Text completion (OpenAI-compatible)",
)
async def completions(
    body: CompletionRequest, request: Request, sec: RequestSecurity = _SECURITY
) -> Response:
    result = await text_completion(
        service_of(request),
        sec,
        body,
        deadline=deadline_of(request),
        disconnected=disconnect_of(request),
    )
    return to_response(result)


@router.get("/models", response_model=ModelList, summary="The models this server serves")
async def models(request: Request) -> ModelList:
    return ModelList(data=service_of(request).model_cards(int(time.time())))


@router.get(
    "/models/{model}",
    response_model=ModelCard,
    responses={404: {"model": ErrorResponse}},
    summary="One served model (404 model_not_found for any other name)",
)
async def model(model: str, request: Request) -> ModelCard:
    return service_of(request).model_card(model, int(time.time()))
