"""The seed contract: POST /api/generate and GET /api/health."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from core.api.deps import deadline_of, service_of
from core.api.schemas import ErrorResponse, GenerateRequest, GenerateResponse, HealthResponse
from core.api.sse import SSE_DONE, TextEvent, sse_event, sse_response
from core.engine.stream import GenerationStream
from core.security import RequestSecurity, request_security

router = APIRouter(prefix="/api", tags=["nimbus"])

_ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 413, 422, 429, 503)
}


@router.post(
    "/generate",
    response_model=GenerateResponse,
    responses={**_ERRORS, 200: {"content": {"text/event-stream": {}}}},
    summary="Generate text for a prompt (set stream=true for server-sent events)",
)
async def generate(
    body: GenerateRequest,
    request: Request,
    sec: RequestSecurity = Depends(request_security),  # noqa: B008 (FastAPI idiom)
) -> Response:
    started = time.perf_counter()
    service = service_of(request)
    body = body.model_copy(update={"prompt": sec.text(body.prompt, "prompt")})
    sec.finish_prompt()
    stream = service.submit(service.from_generate(body, deadline=deadline_of(request)))
    if body.stream:
        return sse_response(stream, _token_events(stream, sec))
    completion = await service.complete(request, stream)
    await sec.charge(completion.prompt_tokens, completion.completion_tokens)
    payload = GenerateResponse(
        text=sec.filter(completion.text),
        tokens=completion.completion_tokens,
        latencyMs=round((time.perf_counter() - started) * 1000, 2),
    )
    # The seed contract's three fields, plus warnings/redactions only when there are any.
    return JSONResponse({**payload.model_dump(by_alias=True), **_seed_fields(sec.body_fields())})


def _seed_fields(info: dict[str, object]) -> dict[str, object]:
    return {("warnings" if k == "prompt_warnings" else k): v for k, v in info.items()}


async def _token_events(stream: GenerationStream, sec: RequestSecurity) -> AsyncIterator[bytes]:
    token = TextEvent({"token": TextEvent.MARK})
    async for text in sec.stream_text(stream):
        yield token(text)
    if sec.redactions:
        # An empty token keeps seed clients (which read `token`) working.
        yield sse_event({"token": "", "redactions": sec.redactions})
    yield SSE_DONE


@router.get(
    "/health",
    response_model=HealthResponse,
    responses={503: {"model": HealthResponse}},
    summary="Model status: 200 when ready, 503 while loading or after a failed load",
)
async def health(request: Request) -> JSONResponse:
    engine = service_of(request).engine
    stats = engine.stats()
    body = HealthResponse(
        status=engine.state,
        model=engine.model_id,
        detail=engine.state_detail,
        queue={"active": stats.active, "waiting": stats.waiting, "capacity": stats.capacity},
    )
    return JSONResponse(body.model_dump(), status_code=200 if engine.state == "ready" else 503)
