"""ASGI pieces: response headers decided during a request (rate limit, prompt warnings,
redaction count) and CORS; ``install_security`` wires them into an app."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.middleware import Middleware

from core.api.body_limit import ASGIApp, Message, Receive, Scope, Send
from core.security.guard import RESPONSE_HEADERS_KEY, Security
from core.security.request_checks import RequestCheckMiddleware
from core.settings import CorsSettings, Settings


class ResponseHeadersMiddleware:
    """Gives each HTTP request a header dict (scope[RESPONSE_HEADERS_KEY]); whatever the app
    puts there before the response starts is added to it (streams and errors included)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra: dict[str, str] = {}
        scope[RESPONSE_HEADERS_KEY] = extra

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start" and extra:
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                for name, value in extra.items():
                    raw = name.lower().encode("latin-1")
                    if raw not in present:
                        headers.append((raw, value.encode("latin-1")))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def cors_options(cors: CorsSettings) -> dict[str, Any] | None:
    """CORSMiddleware arguments, or None when no origin is allowed. Settings validation already
    refuses '*' together with credentials; this keeps the pair impossible here too."""
    if not cors.allow_origins:
        return None
    credentials = cors.allow_credentials and "*" not in cors.allow_origins
    return {
        "allow_origins": list(cors.allow_origins),
        "allow_credentials": credentials,
        "allow_methods": ["GET", "POST", "OPTIONS"],
        "allow_headers": list(cors.allow_headers),
        "expose_headers": [
            "X-RateLimit-Limit",
            "X-RateLimit-Remaining",
            "X-RateLimit-Reset",
            "Retry-After",
            "X-Nimbus-Prompt-Warnings",
            "X-Nimbus-Redactions",
        ],
        "max_age": cors.max_age_s,
    }


def install_security(app: FastAPI, settings: Settings) -> None:
    """Build the app's Security and add its middleware (call last: CORS must be outermost so
    every answer, 401/413/429 included, carries CORS headers)."""
    app.state.security = Security(settings)
    app.add_middleware(ResponseHeadersMiddleware)
    # Innermost (appended, where add_middleware prepends): it runs inside BodyLimitMiddleware,
    # so the body it buffers has already been bounded.
    app.user_middleware.append(
        Middleware(RequestCheckMiddleware, max_depth=settings.security.max_json_depth)
    )
    options = cors_options(settings.security.cors)
    if options is not None:
        app.add_middleware(CORSMiddleware, **options)
