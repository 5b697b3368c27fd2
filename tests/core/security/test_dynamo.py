"""DynamoDB limiter (moto): shared limits across independent app instances."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import boto3
import httpx
import pytest
from moto.dynamodb.responses import DynamoHandler

from core.app import create_app
from core.security.dynamo import TTL_ATTRIBUTE, DynamoRateLimiter, create_table
from core.settings import RateLimitSettings, Settings
from tests.support.fakes import FakeEngine

TABLE = "nimbus-rate-limits"
NOW = 1_700_000_100.0  # fixed clock: the test never straddles a window boundary


@pytest.fixture()
def dynamodb(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[object]:
    # DynamoDB applies each single-item write atomically, returned values included; moto's
    # in-process backend does not (concurrent UpdateItem calls can interleave between its
    # condition check and its write, and its response reads the item after the write, when
    # another thread may have changed it). One lock around moto's UpdateItem handler restores the
    # service's guarantee; everything above it (our conditional expression, boto3, the threads,
    # both apps) runs for real.
    lock = threading.Lock()
    original = DynamoHandler.update_item

    def atomic_update_item(self: Any, *args: Any, **kwargs: Any) -> Any:
        with lock:
            return original(self, *args, **kwargs)

    monkeypatch.setattr(DynamoHandler, "update_item", atomic_update_item)
    request.getfixturevalue("aws")  # moto starts after the patch, so its backend is the patched one
    client = boto3.client("dynamodb", region_name="us-east-1")
    create_table(client, TABLE)
    yield client


def app_instance(limit: int, tokens: int = 0) -> httpx.AsyncClient:
    """An independent app (own engine, own Security, own boto3 client): one container."""
    settings = Settings(
        security={  # type: ignore[arg-type]
            "rate_limit": {
                "backend": "dynamodb",
                "dynamodb_table": TABLE,
                "window_s": 3600,
                "requests_per_window": limit,
                "tokens_per_window": tokens,
            }
        }
    )
    app = create_app(settings, FakeEngine())  # type: ignore[arg-type]
    app.state.security.limiter = DynamoRateLimiter(
        settings.security.rate_limit, client=boto3.client("dynamodb"), clock=lambda: NOW
    )
    # A client address that is not loopback: loopback clients are exempt on a local server.
    transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 4321))
    return httpx.AsyncClient(transport=transport, base_url="http://test")


async def test_two_instances_admit_exactly_the_limit_between_them(dynamodb: object) -> None:
    a, b = app_instance(limit=10), app_instance(limit=10)
    async with a, b:

        async def call(client: httpx.AsyncClient) -> httpx.Response:
            return await client.post("/api/generate", json={"prompt": "hi", "maxTokens": 1})

        responses = await asyncio.gather(*(call(a if i % 2 else b) for i in range(30)))
    codes = [r.status_code for r in responses]
    assert codes.count(200) == 10 and codes.count(429) == 20
    for r in responses:
        if r.status_code == 429:
            assert r.json()["error"]["code"] == "rate_limit_exceeded"
            assert int(r.headers["Retry-After"]) >= 1
            assert r.headers["X-RateLimit-Remaining"] == "0"
    remaining = sorted(int(r.headers["X-RateLimit-Remaining"]) for r in responses if r.is_success)
    assert remaining == list(range(10))  # each admission saw a distinct count


async def test_memory_backend_would_admit_the_limit_per_instance() -> None:
    # Why the DynamoDB backend exists: in-process limits multiply with the container count.
    def memory_instance() -> httpx.AsyncClient:
        s = Settings(security={"rate_limit": {"requests_per_window": 5}})  # type: ignore[arg-type]
        app = create_app(s, FakeEngine())  # type: ignore[arg-type]
        transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 4321))
        return httpx.AsyncClient(transport=transport, base_url="http://t")

    a, b = memory_instance(), memory_instance()
    async with a, b:
        codes = [
            (await c.post("/api/generate", json={"prompt": "hi"})).status_code
            for c in (a, b)
            for _ in range(6)
        ]
    assert codes.count(200) == 10


async def test_tokens_are_charged_and_items_expire(dynamodb: object) -> None:
    rl = DynamoRateLimiter(
        RateLimitSettings(
            backend="dynamodb",
            dynamodb_table=TABLE,
            window_s=60,
            requests_per_window=100,
            tokens_per_window=50,
        ),
        client=dynamodb,
        clock=lambda: NOW,
    )
    assert (await rl.hit("key:abc")).allowed
    await rl.charge("key:abc", 60)
    denied = await rl.hit("key:abc")
    assert not denied.allowed and denied.retry_after_s > 0
    items = boto3.client("dynamodb").scan(TableName=TABLE)["Items"]
    assert len(items) == 1
    item = items[0]
    window_end = int(NOW // 60) * 60 + 60
    assert int(item[TTL_ATTRIBUTE]["N"]) == window_end + 60
    assert item["requests"]["N"] == "1" and item["tokens"]["N"] == "60"
    ttl = boto3.client("dynamodb").describe_time_to_live(TableName=TABLE)
    assert ttl["TimeToLiveDescription"]["AttributeName"] == TTL_ATTRIBUTE


async def test_backend_errors_follow_the_policy(dynamodb: object) -> None:
    def limiter(policy: str) -> DynamoRateLimiter:
        return DynamoRateLimiter(
            RateLimitSettings(
                backend="dynamodb",
                dynamodb_table="no-such-table",
                on_backend_error=policy,  # type: ignore[arg-type]
            ),
            client=dynamodb,
        )

    assert (await limiter("allow").hit("k")).allowed
    assert not (await limiter("deny").hit("k")).allowed


async def test_refund_gives_a_request_back_to_the_window(dynamodb: object) -> None:
    rl = DynamoRateLimiter(
        RateLimitSettings(
            backend="dynamodb", dynamodb_table=TABLE, window_s=60, requests_per_window=2
        ),
        client=dynamodb,
        clock=lambda: NOW,
    )
    first = await rl.hit("key:r")
    assert first.allowed and first.stamp == NOW
    assert (await rl.hit("key:r")).allowed
    assert not (await rl.hit("key:r")).allowed
    await rl.refund("key:r", first)
    assert (await rl.hit("key:r")).allowed
    assert not (await rl.hit("key:r")).allowed


async def test_a_503_from_the_engine_gives_its_request_back(dynamodb: object) -> None:
    client = app_instance(limit=2)
    engine = client._transport.app.state.service.engine  # type: ignore[attr-defined]
    async with client:
        engine.overloaded = True
        for _ in range(3):
            assert (await client.post("/api/generate", json={"prompt": "hi"})).status_code == 503
        engine.overloaded = False
        codes = [
            (await client.post("/api/generate", json={"prompt": "hi"})).status_code
            for _ in range(3)
        ]
    assert codes == [200, 200, 429]
