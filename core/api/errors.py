"""The one place where exceptions become HTTP responses, always in the OpenAI error shape
(``core.http.errors`` writes the same shape for middleware that answers before FastAPI)."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.errors import (
    EngineError,
    InvalidJSONError,
    InvalidRequestError,
    NimbusError,
    NotFoundError,
)
from core.http.errors import error_body
from core.http.observe import note_error

log = logging.getLogger("nimbus.api")

_STATUS_ERRORS: dict[int, type[NimbusError]] = {404: NotFoundError}


def error_response(error: NimbusError) -> JSONResponse:
    return JSONResponse(error_body(error), status_code=error.status, headers=error.headers or None)


def validation_to_error(exc: RequestValidationError) -> NimbusError:
    """Unparseable JSON -> 422 invalid_json; a well-formed body with bad fields -> 400."""
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return InvalidJSONError("request body is not valid JSON")
    first = errors[0] if errors else {}
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    param = ".".join(loc) or None
    # The message is pydantic's short text only: no input echo, no stack trace.
    msg = first.get("msg", "invalid request")
    where = f" at '{param}'" if param else ""
    return InvalidRequestError(f"invalid request{where}: {msg}", param=param)


def install_error_handlers(app: FastAPI) -> None:
    # Each handler notes the answer's error code for the request's metrics and log line.
    async def on_nimbus(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, NimbusError)
        if exc.status >= 500 and exc.status != 503:
            log.error("request failed: %s", exc.message)
        note_error(request.scope, exc.code)
        return error_response(exc)

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        error = validation_to_error(exc)
        note_error(request.scope, error.code)
        return error_response(error)

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        cls = _STATUS_ERRORS.get(exc.status_code)
        error = cls(str(exc.detail)) if cls else NimbusError(str(exc.detail))
        if cls is None:
            error.status = exc.status_code
            error.error_type = "invalid_request_error" if exc.status_code < 500 else "server_error"
            error.code = {405: "method_not_allowed"}.get(exc.status_code, "http_error")
        note_error(request.scope, error.code)
        return error_response(error)

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        error = EngineError("internal server error")
        note_error(request.scope, error.code)
        return error_response(error)

    app.add_exception_handler(NimbusError, on_nimbus)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)
