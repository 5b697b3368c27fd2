"""The one middleware that reads request bodies: bounded, checked, then replayed to the app.

Before anything parses a request: header values without control characters, a body no larger
than ``max_bytes`` (Content-Length or chunked; nothing larger is ever held in memory), and a JSON
body that is valid UTF-8 with bounded nesting (deep nesting would otherwise reach Python's
recursion limit inside the JSON parser)."""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.errors import InvalidJSONError, InvalidRequestError, NimbusError, PayloadTooLargeError
from core.http.errors import send_error
from core.http.observe import note_error

# RFC 9110 field values: no control characters except horizontal tab. The HTTP server already
# refuses NUL, CR and LF; other controls (ESC, BEL, ...) would reach the app and its logs.
_HEADER_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


class BodyMiddleware:
    def __init__(self, app: ASGIApp, *, max_bytes: int, max_json_depth: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_json_depth = max_json_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if (name := bad_header(scope)) is not None:
            safe = "".join(ch if ch.isalnum() or ch in "-_" else "?" for ch in name[:64])
            await self._refuse(
                scope, send, InvalidRequestError(f"header '{safe}' contains control characters")
            )
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._too_large(scope, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._too_large(scope, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if _is_json(scope) and (error := self._check_json(body)) is not None:
            await self._refuse(scope, send, error)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, send: Send) -> None:
        error = PayloadTooLargeError(f"request body is larger than {self.max_bytes} bytes")
        await self._refuse(scope, send, error, close=True)

    @staticmethod
    async def _refuse(scope: Scope, send: Send, error: NimbusError, *, close: bool = False) -> None:
        note_error(scope, error.code)
        await send_error(send, error, close=close)

    def _check_json(self, body: bytes) -> NimbusError | None:
        if not body:
            return None
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as exc:
            return InvalidJSONError(f"request body is not valid UTF-8 (byte {exc.start})")
        if json_depth_exceeds(body, self.max_json_depth):
            return InvalidRequestError(f"JSON nesting is deeper than {self.max_json_depth} levels")
        return None


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


def bad_header(scope: Scope) -> str | None:
    """The name of the first header whose value holds a control character, else None."""
    for name, value in scope.get("headers", ()):
        if _HEADER_CONTROL.search(value):
            return bytes(name).decode("latin-1", "replace")
    return None


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _is_json(scope: Scope) -> bool:
    if scope.get("method") not in ("POST", "PUT", "PATCH"):
        return False
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            return b"json" in value.lower()
    return True  # no content type: FastAPI will try JSON
