"""Per-app objects reached from a request (no module globals: each app has its own)."""

from __future__ import annotations

from typing import cast

from fastapi import Request

from core.api.service import Disconnect, GenerationService
from core.http.observe import record_of


def service_of(request: Request) -> GenerationService:
    """The app's service; its generations also reach this request's log record."""
    service = cast(GenerationService, request.app.state.service)
    record = record_of(request.scope)
    return service if record is None else service.also_observed_by(record.completed)


DEADLINE_SCOPE_KEY = "nimbus.deadline"


def deadline_of(request: Request) -> float | None:
    """time.monotonic() by which generation must end, set by a platform adapter (Lambda)."""
    value = request.scope.get(DEADLINE_SCOPE_KEY)
    return float(value) if value is not None else None


def disconnect_of(request: Request) -> Disconnect:
    """Waits until the client goes away. Only for routes that have read the whole body: the next
    ASGI message is then the disconnect."""

    async def wait() -> None:
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                return

    return wait
