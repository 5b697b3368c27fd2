"""POST /tokenize and /detokenize, as llama-server has them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from core.api import tokenize as use_case
from core.api.deps import service_of
from core.api.protocol import (
    DetokenizeRequest,
    DetokenizeResponse,
    ErrorResponse,
    TokenizeRequest,
    TokenizeResponse,
)
from core.security import request_security

router = APIRouter(tags=["llama-server"], dependencies=[Depends(request_security)])

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 413, 422, 429, 503)
}


@router.post(
    "/tokenize",
    response_model=TokenizeResponse,
    responses=_ERRORS,
    summary="Token ids (optionally with their text) of a text, in the served model's vocabulary",
)
async def tokenize(body: TokenizeRequest, request: Request) -> dict[str, Any]:
    return use_case.tokenize(service_of(request), body)


@router.post(
    "/detokenize",
    response_model=DetokenizeResponse,
    responses=_ERRORS,
    summary="The text of token ids",
)
async def detokenize(body: DetokenizeRequest, request: Request) -> dict[str, Any]:
    return use_case.detokenize(service_of(request), body)
