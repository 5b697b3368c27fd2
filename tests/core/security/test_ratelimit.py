"""In-memory sliding-window limiter: requests, tokens, headers, bounded memory."""

from __future__ import annotations

from core.security.ratelimit import MemoryRateLimiter
from core.settings import RateLimitSettings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limiter(clock: Clock, **kw: int) -> MemoryRateLimiter:
    base = {"window_s": 60, "requests_per_window": 3, "tokens_per_window": 0}
    return MemoryRateLimiter(RateLimitSettings(**{**base, **kw}), clock=clock)  # type: ignore[arg-type]


async def test_requests_per_window_slide() -> None:
    clock = Clock()
    rl = limiter(clock)
    decisions = []
    for _ in range(3):
        decisions.append(await rl.hit("a"))
        clock.now += 10
    assert [d.remaining for d in decisions] == [2, 1, 0] and all(d.allowed for d in decisions)
    denied = await rl.hit("a")
    assert not denied.allowed and denied.remaining == 0
    # The first request (t=1000) leaves the window at t=1060; now is t=1030.
    assert denied.headers()["Retry-After"] == "30"
    assert denied.headers()["X-RateLimit-Reset"] == "30"
    assert (await rl.hit("b")).allowed  # other clients are independent
    clock.now = 1060.5  # sliding: one slot is free again, not all three
    assert (await rl.hit("a")).allowed
    assert not (await rl.hit("a")).allowed


async def test_tokens_per_window_charged_after_completion() -> None:
    clock = Clock()
    rl = limiter(clock, requests_per_window=100, tokens_per_window=100)
    first = await rl.hit("a")
    assert first.headers()["X-RateLimit-Remaining-Tokens"] == "100"
    await rl.charge("a", 60)
    clock.now += 20
    assert (await rl.hit("a")).tokens_remaining == 40
    await rl.charge("a", 50)  # now over: 110 of 100
    denied = await rl.hit("a")
    assert not denied.allowed
    # Usage falls below the limit once the first charge (t=1000) leaves the window.
    assert denied.headers()["Retry-After"] == "40"
    clock.now = 1061
    assert (await rl.hit("a")).allowed


async def test_memory_is_bounded_lru() -> None:
    clock = Clock()
    rl = limiter(clock, max_clients=50, requests_per_window=1)
    for i in range(1000):
        await rl.hit(f"client-{i}")
    assert rl.tracked_clients == 50
    # The most recent clients are still limited; the oldest were forgotten.
    assert not (await rl.hit("client-999")).allowed
    assert (await rl.hit("client-0")).allowed


async def test_headers_when_allowed() -> None:
    d = await limiter(Clock()).hit("x")
    h = d.headers()
    assert h["X-RateLimit-Limit"] == "3" and h["X-RateLimit-Remaining"] == "2"
    assert "Retry-After" not in h and "X-RateLimit-Limit-Tokens" not in h
