"""Response headers decided while a request runs (rate limit, prompt warnings, redactions)."""

from __future__ import annotations

from typing import cast

from starlette.types import ASGIApp, Message, Receive, Scope, Send

RESPONSE_HEADERS_KEY = "nimbus.response_headers"


def response_headers(scope: Scope) -> dict[str, str]:
    """This request's dict of extra response headers (created on first use)."""
    headers = scope.get(RESPONSE_HEADERS_KEY)
    if headers is None:
        headers = scope[RESPONSE_HEADERS_KEY] = {}
    return cast(dict[str, str], headers)


class ResponseHeadersMiddleware:
    """Whatever the app puts in ``response_headers(scope)`` before the response starts is added
    to it: streams and error responses included, without overriding a header already set."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = response_headers(scope)

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
