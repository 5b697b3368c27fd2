"""Per-app objects reached from a request (no module globals: each app has its own)."""

from __future__ import annotations

from typing import cast

from fastapi import Request

from core.api.service import GenerationService


def service_of(request: Request) -> GenerationService:
    return cast(GenerationService, request.app.state.service)


DEADLINE_SCOPE_KEY = "nimbus.deadline"


def deadline_of(request: Request) -> float | None:
    """time.monotonic() by which generation must end, set by a platform adapter (Lambda)."""
    value = request.scope.get(DEADLINE_SCOPE_KEY)
    return float(value) if value is not None else None
