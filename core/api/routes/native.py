"""The seed contract: POST /api/generate and GET /api/health."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from core.api.deps import deadline_of, disconnect_of, service_of
from core.api.events import to_response
from core.api.generate import GenerateCall
from core.api.protocol import ErrorResponse, GenerateRequest, GenerateResponse, HealthResponse
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
    call = GenerateCall(service_of(request), sec, body, deadline=deadline_of(request))
    if body.stream:
        return to_response(call.events())
    return to_response(await call.response(disconnect_of(request)))


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
        queue={
            "active": stats.active,
            "waiting": stats.waiting,
            "capacity": stats.capacity,
            # Places the admission gate opens now: capacity, or the short overload queue.
            "admitting": request.app.state.admission.limit,
        },
    )
    return JSONResponse(body.model_dump(), status_code=200 if engine.state == "ready" else 503)
