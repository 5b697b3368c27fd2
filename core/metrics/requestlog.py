"""The request log: one JSON object per HTTP request, the same fields on every platform (a JSON
line on stdout locally and on Modal, a Powertools log line on Lambda). Prompt and completion text
appear only when the operator allows it."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, TextIO

if TYPE_CHECKING:
    from core.engine.types import Completion

# Receives each line's fields (a dict of JSON-ready values).
LogSink = Callable[[dict[str, Any]], None]


class RequestFacts(Protocol):
    """What the security layer knows about a request (core.security.RequestSecurity)."""

    @property
    def client(self) -> str: ...

    @property
    def redactions(self) -> int: ...


@dataclass
class RequestRecord:
    """One request as it goes: filled in by the HTTP middleware, the error handlers, the
    security dependency and the generation's completion observer."""

    request_id: str
    method: str
    path: str
    route: str
    status: int | None = None
    error: str | None = None
    """The error code of an error answer (core.errors)."""
    completion: Completion | None = None
    facts: RequestFacts | None = None
    body: bytearray | None = None
    """The request body, kept only while prompt text may be logged."""

    def completed(self, completion: Completion) -> None:
        self.completion = completion


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


class RequestLog:
    """Builds each request's fields and hands them to the sink."""

    def __init__(
        self,
        sink: LogSink,
        *,
        model: Callable[[], str],
        prompts: bool = False,
        text_limit: int = 4096,
        redact: Callable[[str], str] = lambda text: text,
    ) -> None:
        self.sink = sink
        self.model = model
        self.prompts = prompts
        self.text_limit = text_limit
        self.redact = redact

    def fields(self, record: RequestRecord, status: int, seconds: float) -> dict[str, Any]:
        c = record.completion
        facts = record.facts
        fields: dict[str, Any] = {
            "request_id": record.request_id,
            "method": record.method,
            "route": record.route,
            "path": record.path,
            "status": status,
            "duration_ms": _ms(seconds),
            "model": self.model(),
            "client": facts.client if facts is not None else None,
            "prompt_tokens": c.prompt_tokens if c is not None else None,
            "completion_tokens": c.completion_tokens if c is not None else None,
            "cached_tokens": c.cached_tokens if c is not None else None,
            "queue_wait_ms": _ms(c.queue_wait_s) if c is not None else None,
            "ttft_ms": _ms(c.time_to_first_token_s) if c is not None else None,
            "finish_reason": c.finish_reason if c is not None else None,
            "error": record.error,
            "redactions": facts.redactions if facts is not None else 0,
        }
        if self.prompts:
            body = record.body.decode("utf-8", errors="replace") if record.body else ""
            fields["request_body"] = body[: self.text_limit]
            fields["completion_text"] = (
                self.redact(c.text)[: self.text_limit] if c is not None else None
            )
        return fields

    def write(self, record: RequestRecord, status: int, seconds: float) -> None:
        self.sink(self.fields(record, status, seconds))


class JsonLines:
    """The default sink: one JSON object per line on ``stream`` (stdout unless given)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream

    def __call__(self, fields: dict[str, Any]) -> None:
        line = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "message": "request",
            **fields,
        }
        out = self._stream or sys.stdout
        out.write(json.dumps(line, separators=(",", ":")) + "\n")
        out.flush()
