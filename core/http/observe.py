"""The outermost middleware: every HTTP request is counted and timed by route and status, its
refusal reason and redactions recorded, and its request log line written, after the response.

Other layers add what they know to the request's record through the scope (``record_of``): the
error handlers the error code, the security dependency the client and redaction count, the
generation's observer the completion."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Collection

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.metrics.requestlog import RequestFacts, RequestLog, RequestRecord
from core.metrics.telemetry import Telemetry

log = logging.getLogger("nimbus.http")

RECORD_KEY = "nimbus.request"
REQUEST_ID_KEY = "nimbus.request_id"
"""An adapter that already has an id for the request (Lambda's) puts it here."""

# A caller's own x-request-id is kept when it looks like an id (it is echoed and logged).
_CALLER_ID = re.compile(r"[A-Za-z0-9._:/+=@-]{1,128}")
# Answered nothing because the client went away first (nginx's "client closed request").
CLIENT_CLOSED = 499


def record_of(scope: Scope) -> RequestRecord | None:
    record = scope.get(RECORD_KEY)
    return record if isinstance(record, RequestRecord) else None


def note_error(scope: Scope, code: str) -> None:
    """Record the error code of the answer being sent (refusals are counted by reason)."""
    if (record := record_of(scope)) is not None:
        record.error = code


def note_facts(scope: Scope, facts: RequestFacts) -> None:
    if (record := record_of(scope)) is not None:
        record.facts = facts


def _request_id(scope: Scope) -> str:
    given = scope.get(REQUEST_ID_KEY)
    if given:
        return str(given)
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            text = bytes(value).decode("latin-1")
            if _CALLER_ID.fullmatch(text):
                return text
            break
    return uuid.uuid4().hex


class ObserveMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        telemetry: Telemetry,
        routes: Collection[str],
        request_log: RequestLog | None = None,
    ) -> None:
        self.app = app
        self.telemetry = telemetry
        self.routes = frozenset(routes)
        self.request_log = request_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        path = str(scope.get("path", ""))
        # Every route is a fixed path, so the path is the route label when it is one of them;
        # anything else is 'other' (unknown paths must not become new series).
        record = RequestRecord(
            request_id=_request_id(scope),
            method=str(scope.get("method", "")),
            path=path,
            route=path if path in self.routes else "other",
        )
        scope[RECORD_KEY] = record
        header = (b"x-request-id", record.request_id.encode("latin-1"))
        keep_body = self.request_log is not None and self.request_log.prompts
        # Bytes kept of the body: enough for text_limit characters of UTF-8 (at most 4 bytes each).
        limit = 4 * self.request_log.text_limit if self.request_log is not None else 0
        if keep_body:
            record.body = bytearray()

        async def receive_kept() -> Message:
            message = await receive()
            if record.body is not None and message["type"] == "http.request":
                record.body.extend(message.get("body", b"")[: limit - len(record.body)])
            return message

        async def send_observed(message: Message) -> None:
            if message["type"] == "http.response.start":
                record.status = int(message["status"])
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        failed = False
        try:
            await self.app(scope, receive_kept if keep_body else receive, send_observed)
        except BaseException:
            failed = True
            raise
        finally:
            status = record.status or (500 if failed else CLIENT_CLOSED)
            self._finish(record, status, time.perf_counter() - started)

    def _finish(self, record: RequestRecord, status: int, seconds: float) -> None:
        try:
            self.telemetry.request(record.route, record.method, status, seconds)
            if record.error is not None:
                self.telemetry.refused(record.error)
            if record.facts is not None:
                self.telemetry.redacted(record.facts.redactions)
            if self.request_log is not None:
                self.request_log.write(record, status, seconds)
        except Exception:  # observing never breaks serving
            log.exception("request metrics/log failed")
