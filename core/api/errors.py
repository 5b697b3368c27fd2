"""The one place where exceptions become HTTP responses, always in the OpenAI error shape
(``core.http.errors`` writes the same shape for middleware that answers before FastAPI).

Every error answer gives back the rate-limit quota its request was counted for: refusals and
errors never use a client's quota, only admitted work does."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.api.protocol import UNSUPPORTED
from core.errors import (
    EngineError,
    InvalidJSONError,
    InvalidParameterError,
    InvalidRequestError,
    NimbusError,
    NotFoundError,
)
from core.http.errors import error_body
from core.http.observe import note_error
from core.security.guard import release_quota

log = logging.getLogger("nimbus.api")

_STATUS_ERRORS: dict[int, type[NimbusError]] = {404: NotFoundError}


def error_response(error: NimbusError) -> JSONResponse:
    return JSONResponse(error_body(error), status_code=error.status, headers=error.headers or None)


def validation_to_error(exc: RequestValidationError) -> NimbusError:
    """Unparseable JSON -> 422 invalid_json; a well-formed body with bad fields -> 400 naming
    the field; a field this server does not know -> 400 naming it (and why, for OpenAI's)."""
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return InvalidJSONError("request body is not valid JSON")
    first = _most_specific(errors)
    loc = [str(p) for p in first.get("loc", ()) if p != "body" and not _is_type_tag(p)]
    param = ".".join(loc) or None
    if first.get("type") == "extra_forbidden" and loc:
        reason = UNSUPPORTED.get(loc[-1])
        if reason is not None:
            return InvalidParameterError(f"'{param}' is not supported: {reason}", param=param)
        return InvalidParameterError(f"unrecognized request argument: '{param}'", param=param)
    # The message is pydantic's short text only: no input echo, no stack trace.
    msg = str(first.get("msg", "invalid request")).removeprefix("Value error, ")
    where = f" at '{param}'" if param else ""
    return InvalidRequestError(f"invalid request{where}: {msg}", param=param)


def _most_specific(errors: Sequence[Any]) -> Any:
    """The first error, or, when its field is a union (pydantic reports one error per member),
    the member's error that reaches deepest into the value (e.g. 'input.1' of a list)."""
    if not errors:
        return {}
    field = errors[0].get("loc", ())[:2]
    same = [e for e in errors if tuple(e.get("loc", ()))[:2] == tuple(field)]
    return max(same, key=lambda e: len(e.get("loc", ())))


def _is_type_tag(part: object) -> bool:
    """pydantic names the member of a union in an error's location ('str', 'list[int]',
    'NamedToolChoice', "literal['none','auto']"): not part of the parameter's path."""
    if isinstance(part, int):
        return False
    text = str(part)
    return bool(_TYPE_TAG.search(text)) or text[:1].isupper() or text in _TYPE_NAMES


_TYPE_TAG = re.compile(r"[\[\]()',= -]")
_TYPE_NAMES = frozenset({"str", "int", "float", "bool", "none", "list", "dict"})


def install_error_handlers(app: FastAPI) -> None:
    # Each handler notes the answer's error code for the request's metrics and log line.
    async def on_nimbus(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, NimbusError)
        if exc.status >= 500 and exc.status != 503:
            log.error("request failed: %s", exc.message)
        note_error(request.scope, exc.code)
        await release_quota(request.scope)
        return error_response(exc)

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        error = validation_to_error(exc)
        note_error(request.scope, error.code)
        await release_quota(request.scope)
        return error_response(error)

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        cls = _STATUS_ERRORS.get(exc.status_code)
        error = cls(str(exc.detail)) if cls else NimbusError(str(exc.detail))
        if cls is None:
            error.status = exc.status_code
            error.error_type = "invalid_request_error" if exc.status_code < 500 else "server_error"
            error.code = {405: "method_not_allowed"}.get(exc.status_code, "http_error")
        # Starlette's own headers (Allow on a 405) go out with the answer.
        error.headers = {**(exc.headers or {}), **error.headers}
        note_error(request.scope, error.code)
        await release_quota(request.scope)
        return error_response(error)

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        error = EngineError("internal server error")
        note_error(request.scope, error.code)
        await release_quota(request.scope)
        return error_response(error)

    app.add_exception_handler(NimbusError, on_nimbus)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)
