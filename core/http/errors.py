"""The OpenAI error shape, once: the body every error response carries, and a writer for
middleware that answers at the raw ASGI level (before FastAPI has seen the request)."""

from __future__ import annotations

import json
from typing import Any

from starlette.types import Send

from core.errors import NimbusError


def error_body(error: NimbusError) -> dict[str, Any]:
    return {
        "error": {
            "message": error.message,
            "type": error.error_type,
            "code": error.code,
            "param": error.param,
        }
    }


async def send_error(send: Send, error: NimbusError, *, close: bool = False) -> None:
    """A whole error response, same shape and headers as the app's exception handlers."""
    body = json.dumps(error_body(error)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
