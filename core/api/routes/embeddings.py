"""POST /v1/embeddings (OpenAI-compatible)."""

from __future__ import annotations

from typing import Any, cast

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from core.api.deps import service_of
from core.api.embeddings import create_embeddings
from core.api.protocol import EmbeddingRequest, EmbeddingResponse, ErrorResponse
from core.security import RequestSecurity, request_security
from core.settings import Settings

router = APIRouter(prefix="/v1", tags=["openai"])
_SECURITY = Depends(request_security)

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 404, 413, 422, 429, 503)
}


@router.post(
    "/embeddings",
    response_model=EmbeddingResponse,
    responses=_ERRORS,
    summary="Embeddings (OpenAI-compatible; pooled, unit length)",
)
async def embeddings(
    body: EmbeddingRequest, request: Request, sec: RequestSecurity = _SECURITY
) -> JSONResponse:
    settings = cast(Settings, request.app.state.settings)
    payload = await create_embeddings(service_of(request), sec, body, settings.embeddings)
    return JSONResponse(payload)
