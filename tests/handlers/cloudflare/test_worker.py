"""The edge worker in real workerd against our own server on the bundled model."""

from __future__ import annotations

import httpx
import pytest

from tests.handlers.cloudflare.conftest import EDGE_KEYS, Edge

pytestmark = pytest.mark.integration

AUTH = {"authorization": f"Bearer {EDGE_KEYS[0]}"}


def test_generate_is_forwarded_to_the_origin(edge: Edge) -> None:
    r = httpx.post(
        edge.urls["direct"] + "/api/generate",
        json={"prompt": "Say hi.", "maxTokens": 8, "temperature": 0},
        headers=AUTH,
        timeout=120,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"text", "tokens", "latencyMs"} and 1 <= body["tokens"] <= 8
    assert r.headers["x-nimbus-origin"] == "0"
