"""Who a request is and what it costs: the key from either header (SigV4 beside it), rate-limit
identity and the loopback exemption, and quota used only by admitted requests."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from core.app import create_app
from core.security import adapter_defaults
from core.security.guard import presented_key
from core.security.ratelimit import MemoryRateLimiter
from core.settings import RateLimitSettings, Settings
from tests.support.fakes import FakeEngine

KEY = "nimbus-test-key-0123456789"
PUBLIC = ("203.0.113.7", 1234)
LOOPBACK = ("127.0.0.1", 1234)


def app_client(
    settings: Settings, client: tuple[str, int] = PUBLIC, engine: FakeEngine | None = None
) -> tuple[httpx.AsyncClient, FakeEngine, Any]:
    engine = engine or FakeEngine()
    app = create_app(settings, engine)  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=app, client=client)
    return httpx.AsyncClient(transport=transport, base_url="http://t"), engine, app


def keyed(**security: Any) -> Settings:
    return Settings(security={"auth": {"mode": "on", "keys": KEY}, **security})  # type: ignore[arg-type]


# --- the key from either header -------------------------------------------------------------
@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"authorization": f"Bearer {KEY}"}, KEY),
        ({"authorization": f"  bearer \t {KEY} \t"}, KEY),
        ({"x-api-key": f" \t{KEY}  "}, KEY),
        (
            {"authorization": "AWS4-HMAC-SHA256 Credential=A/1/r/s/aws4_request", "x-api-key": KEY},
            KEY,
        ),
        ({"authorization": "Basic dXNlcjpwYXNz", "x-api-key": KEY}, KEY),
        ({"authorization": "Bearer   ", "x-api-key": KEY}, KEY),
        (
            {"authorization": "Bearer wrong-key-but-bearer", "x-api-key": KEY},
            "wrong-key-but-bearer",
        ),
        ({"authorization": "Basic dXNlcjpwYXNz"}, None),
        ({"x-api-key": "   "}, None),
        ({}, None),
    ],
)
def test_presented_key(headers: dict[str, str], expected: str | None) -> None:
    assert presented_key(headers) == expected


def sigv4_headers(url: str, body: bytes) -> dict[str, str]:
    """What the edge worker sends to an IAM function URL: a SigV4 signature (checked to match
    botocore's in the edge tests) in Authorization, the origin's key in x-api-key."""
    request = AWSRequest(
        method="POST", url=url, data=body, headers={"content-type": "application/json"}
    )
    SigV4Auth(Credentials("AKIDEXAMPLE", "secret", "token"), "lambda", "eu-west-1").add_auth(
        request
    )
    return {**dict(request.headers.items()), "x-api-key": KEY}


async def test_edge_to_origin_sigv4_plus_x_api_key_is_accepted() -> None:
    c, engine, _ = app_client(keyed())
    body = b'{"prompt": "hi"}'
    headers = sigv4_headers("https://abc.lambda-url.eu-west-1.on.aws/api/generate", body)
    assert headers["Authorization"].startswith("AWS4-HMAC-SHA256 ")
    async with c:
        ok = await c.post("/api/generate", content=body, headers=headers)
        without_key = await c.post(
            "/api/generate",
            content=body,
            headers={k: v for k, v in headers.items() if k != "x-api-key"},
        )
    assert ok.status_code == 200, ok.text
    assert without_key.status_code == 401
    assert len(engine.requests) == 1


async def test_both_headers_are_trimmed_the_same_way() -> None:
    c, _, _ = app_client(keyed())
    async with c:
        for headers in ({"authorization": f"Bearer  {KEY} "}, {"x-api-key": f" {KEY}\t"}):
            r = await c.post("/api/generate", json={"prompt": "hi"}, headers=headers)
            assert r.status_code == 200, headers


# --- rate-limit identity and the loopback exemption -----------------------------------------
def limited(limit: int = 3, **rate_limit: Any) -> dict[str, Any]:
    return {"rate_limit": {"requests_per_window": limit, **rate_limit}}


async def test_loopback_clients_are_exempt_on_a_local_server() -> None:
    c, _, _ = app_client(Settings(security=limited()), client=LOOPBACK)  # type: ignore[arg-type]
    async with c:
        codes = [
            (await c.post("/api/generate", json={"prompt": "hi"})).status_code for _ in range(6)
        ]
    assert codes == [200] * 6


async def test_loopback_is_limited_when_the_exemption_is_off_or_the_server_is_public() -> None:
    for settings in (
        Settings(security=limited(exempt_loopback="off")),  # type: ignore[arg-type]
        Settings(server={"host": "0.0.0.0"}, security={**limited(), "auth": {"mode": "off"}}),  # type: ignore[arg-type]
        adapter_defaults(Settings(security={**limited(), "auth": {"mode": "off"}})),  # type: ignore[arg-type]
    ):
        c, _, _ = app_client(settings, client=LOOPBACK)
        async with c:
            codes = [
                (await c.post("/api/generate", json={"prompt": "hi"})).status_code for _ in range(4)
            ]
        assert codes == [200, 200, 200, 429], settings.security.rate_limit


async def test_with_keys_on_a_loopback_client_is_limited_by_its_key() -> None:
    c, _, _ = app_client(keyed(**limited()), client=LOOPBACK)
    async with c:
        codes = [
            (
                await c.post("/api/generate", json={"prompt": "hi"}, headers={"x-api-key": KEY})
            ).status_code
            for _ in range(4)
        ]
    assert codes == [200, 200, 200, 429]


def test_adapter_defaults_turn_the_exemption_off_only_when_auto() -> None:
    assert adapter_defaults(Settings()).security.rate_limit.exempt_loopback == "off"
    on = Settings(security={"rate_limit": {"exempt_loopback": "on"}})  # type: ignore[arg-type]
    assert adapter_defaults(on).security.rate_limit.exempt_loopback == "on"


# --- quota: only admitted requests use it ----------------------------------------------------
async def test_503_and_400_never_use_quota() -> None:
    c, engine, _ = app_client(Settings(security=limited(3)))  # type: ignore[arg-type]
    async with c:
        engine.overloaded = True  # the engine refuses inside the route: 503
        busy = [await c.post("/api/generate", json={"prompt": "hi"}) for _ in range(5)]
        assert {r.status_code for r in busy} == {503}
        assert busy[-1].headers["X-RateLimit-Remaining"] == "3"  # given back
        engine.overloaded = False
        bad = [
            await c.post("/api/generate", json={"prompt": "hi", "maxTokens": 10**6}),
            await c.post("/v1/chat/completions", json={"messages": "nope"}),
            await c.post(
                "/api/generate", content=b"{not json", headers={"content-type": "application/json"}
            ),
        ]
        assert [r.status_code for r in bad] == [400, 400, 422]
        codes = [
            (await c.post("/api/generate", json={"prompt": "hi"})).status_code for _ in range(4)
        ]
    assert codes == [200, 200, 200, 429]


async def test_gate_refusals_never_reach_the_limiter() -> None:
    settings = Settings(
        engine={"slots": 1},  # type: ignore[arg-type]
        limits={"max_queue": 0, "admission_wait_ms": 0},  # type: ignore[arg-type]
        security=limited(2),  # type: ignore[arg-type]
    )
    c, _, app = app_client(settings, engine=FakeEngine(delay_s=0.05))
    async with c:
        answers = await asyncio.gather(
            *(c.post("/api/generate", json={"prompt": "hi"}) for _ in range(5))
        )
        assert sorted(r.status_code for r in answers) == [200, 503, 503, 503, 503]
        later = [
            (await c.post("/api/generate", json={"prompt": "hi"})).status_code for _ in range(2)
        ]
    assert later == [200, 429]  # one of two used by the admitted request, the 503s used none
    assert app.state.admission.refused == 4


async def test_memory_limiter_refund_gives_back_exactly_one_request() -> None:
    now = [100.0]
    rl = MemoryRateLimiter(
        RateLimitSettings(requests_per_window=2, window_s=60), clock=lambda: now[0]
    )
    first = await rl.hit("a")
    now[0] += 1
    second = await rl.hit("a")
    assert not (await rl.hit("a")).allowed
    await rl.refund("a", second)
    await rl.refund("a", second)  # twice: the second finds nothing more to give back
    assert (await rl.hit("a")).allowed
    assert not (await rl.hit("a")).allowed
    await rl.refund("b", first)  # an unknown client: nothing happens
