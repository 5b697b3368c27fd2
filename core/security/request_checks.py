"""Checks before anything parses a request: header values without control characters, and a
JSON body that is valid UTF-8 with bounded nesting (deep nesting would otherwise reach
Python's recursion limit inside the JSON parser)."""

from __future__ import annotations

import re

from core.api.body_limit import ASGIApp, Message, Receive, Scope, Send
from core.api.errors import send_error
from core.errors import InvalidJSONError, InvalidRequestError, NimbusError


def json_depth_exceeds(body: bytes, max_depth: int) -> bool:
    """True when arrays/objects nest deeper than ``max_depth`` (brackets inside strings are
    ignored)."""
    if body.count(b"[") + body.count(b"{") <= max_depth:
        return False  # cannot be deeper than the number of openers: skip the scan
    depth = 0
    in_string = escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            if depth > max_depth:
                return True
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return False


# RFC 9110 field values: no control characters except horizontal tab. The HTTP server already
# refuses NUL, CR and LF; other controls (ESC, BEL, ...) would reach the app and its logs.
_HEADER_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


def bad_header(scope: Scope) -> str | None:
    """The name of the first header whose value holds a control character, else None."""
    for name, value in scope.get("headers", ()):
        if _HEADER_CONTROL.search(value):
            return bytes(name).decode("latin-1", "replace")
    return None


class RequestCheckMiddleware:
    def __init__(self, app: ASGIApp, max_depth: int) -> None:
        self.app = app
        self.max_depth = max_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (name := bad_header(scope)) is not None:
            safe = "".join(ch if ch.isalnum() or ch in "-_" else "?" for ch in name[:64])
            await _reject(send, InvalidRequestError(f"header '{safe}' contains control characters"))
            return
        if scope["type"] != "http" or not _is_json(scope):
            await self.app(scope, receive, send)
            return
        # The body limit middleware (outside this one) has already bounded the body's size.
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        error = self._check(body)
        if error is not None:
            await _reject(send, error)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _check(self, body: bytes) -> NimbusError | None:
        if not body:
            return None
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as exc:
            return InvalidJSONError(f"request body is not valid UTF-8 (byte {exc.start})")
        if json_depth_exceeds(body, self.max_depth):
            return InvalidRequestError(f"JSON nesting is deeper than {self.max_depth} levels")
        return None


def _is_json(scope: Scope) -> bool:
    if scope.get("method") not in ("POST", "PUT", "PATCH"):
        return False
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            return b"json" in value.lower()
    return True  # no content type: FastAPI will try JSON


async def _reject(send: Send, error: NimbusError) -> None:
    await send_error(send, error)
