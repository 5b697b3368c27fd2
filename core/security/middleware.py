"""``install_security``: the app's Security object, its response headers and CORS."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from core.http.headers import ResponseHeadersMiddleware
from core.security.guard import Security
from core.settings import CorsSettings, Settings


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
    options = cors_options(settings.security.cors)
    if options is not None:
        app.add_middleware(CORSMiddleware, **options)
