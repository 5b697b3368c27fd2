"""Error mapping details: Starlette's own headers survive (Allow on 405)."""

from __future__ import annotations

import httpx

from core.app import create_app
from core.settings import Settings
from tests.support.fakes import FakeEngine


async def test_405_carries_allow() -> None:
    app = create_app(Settings(), FakeEngine())  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        r = await c.get("/api/generate")
        models = await c.post("/v1/models", json={})
    assert r.status_code == 405
    assert r.headers["Allow"] == "POST"
    assert r.json()["error"]["code"] == "method_not_allowed"
    assert models.status_code == 405 and models.headers["Allow"] == "GET"
