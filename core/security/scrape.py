"""Who may read GET /metrics: the metrics key (NIMBUS_METRICS__KEY) when one is set, any API key
when keys are required, anyone when neither is configured."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import cast

from fastapi import Request

from core.errors import AuthenticationError
from core.security.guard import Security, presented_key
from core.security.keys import digest
from core.settings import MetricsSettings


def metrics_access(settings: MetricsSettings) -> Callable[[Request], Awaitable[None]]:
    """A FastAPI dependency for the /metrics route (401 without an accepted key; no rate limit:
    a scraper calls it every few seconds)."""
    expected = digest(settings.key.get_secret_value().strip()) if settings.key else None

    async def check(request: Request) -> None:
        security = cast(Security, request.app.state.security)
        presented = presented_key(request)
        if (
            expected is not None
            and presented is not None
            and hmac.compare_digest(digest(presented), expected)
        ):
            return
        if security.auth_required:
            await security.identify(request)  # 401 unless it is an API key
            return
        if expected is not None:
            raise AuthenticationError(
                "invalid or missing metrics key", headers={"WWW-Authenticate": "Bearer"}
            )

    return check
