"""The admission gate: a bounded count of engine requests, refused before the body is read."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from core.app import create_app
from core.http.admission import AdmissionGate, is_engine_route
from core.settings import Settings
from tests.support.asgi import http_scope
from tests.support.fakes import FakeEngine


def gate(capacity: int = 2, wait_s: float = 0.0, retry: int = 7) -> AdmissionGate:
    return AdmissionGate(capacity, wait_s=wait_s, retry_after=lambda: retry)


async def test_places_up_to_capacity_then_refusal_with_retry_after() -> None:
    g = gate(capacity=2, retry=7)
    assert await g.enter() and await g.enter()
    assert not await g.enter()  # wait_s 0: refused at once
    error = g.refusal()
    assert error.status == 503 and error.code == "engine_overloaded"
    assert error.headers["Retry-After"] == "7"
    g.leave()
    assert await g.enter()
    assert g.in_flight == 2 and g.refused == 1


async def test_a_waiter_gets_a_freed_place_first_come_first_served() -> None:
    g = gate(capacity=1, wait_s=5)
    assert await g.enter()
    first = asyncio.ensure_future(g.enter())
    second = asyncio.ensure_future(g.enter())
    await asyncio.sleep(0.01)
    assert g.waiting == 2
    g.leave()  # the place passes to the oldest waiter
    assert await first is True
    assert not second.done()
    g.leave()
    assert await second is True
    assert g.in_flight == 1 and g.waiting == 0


async def test_a_waiter_is_refused_after_the_wait() -> None:
    g = gate(capacity=1, wait_s=0.05)
    assert await g.enter()
    started = time.perf_counter()
    assert not await g.enter()
    assert 0.04 <= time.perf_counter() - started < 1.0
    g.leave()
    assert g.in_flight == 0  # the expired waiter did not keep the place


async def test_a_cancelled_waiter_does_not_leak_a_place() -> None:
    g = gate(capacity=1, wait_s=5)
    assert await g.enter()
    waiter = asyncio.ensure_future(g.enter())
    await asyncio.sleep(0.01)
    waiter.cancel()
    await asyncio.sleep(0)
    g.leave()
    assert g.in_flight == 0 and g.waiting == 0


async def test_retry_after_is_asked_at_most_once_per_refresh() -> None:
    calls = []

    def estimate() -> int:
        calls.append(1)
        return 3

    g = AdmissionGate(1, wait_s=0, retry_after=estimate, retry_refresh_s=60)
    for _ in range(100):
        assert g.refusal().headers["Retry-After"] == "3"
    assert len(calls) == 1


def test_only_post_engine_routes_are_gated() -> None:
    def scope(method: str, path: str, root: str = "") -> dict[str, Any]:
        return {"type": "http", "method": method, "path": path, "root_path": root}

    assert is_engine_route(scope("POST", "/api/generate"))
    assert is_engine_route(scope("POST", "/v1/chat/completions"))
    assert is_engine_route(scope("POST", "/prod/v1/completions", root="/prod"))
    assert not is_engine_route(scope("GET", "/v1/models"))
    assert not is_engine_route(scope("GET", "/api/health"))
    assert not is_engine_route(scope("POST", "/api/health"))


def app_with(**limits: Any) -> tuple[Any, FakeEngine]:
    engine = FakeEngine(delay_s=0.05)
    settings = Settings(engine={"slots": 1}, limits={"max_queue": 1, **limits})  # type: ignore[arg-type]
    return create_app(settings, engine), engine  # type: ignore[arg-type]


async def test_full_engine_refuses_before_the_body_is_read() -> None:
    app, _ = app_with(admission_wait_ms=0)
    app.state.admission.in_flight = app.state.admission.capacity  # every place taken
    body_read = asyncio.Event()
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        body_read.set()
        await asyncio.sleep(3600)  # a body that never comes
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = http_scope(
        "/api/generate",
        [(b"content-type", b"application/json"), (b"content-length", b"20")],
    )
    await asyncio.wait_for(app(scope, receive, send), 5)
    assert not body_read.is_set()
    assert sent[0]["status"] == 503
    headers = dict(sent[0]["headers"])
    assert headers[b"retry-after"] == b"1"  # nothing measured yet: the floor
    assert b"engine_overloaded" in sent[1]["body"]


async def test_concurrent_requests_beyond_capacity_get_503_and_the_rest_finish() -> None:
    app, engine = app_with(admission_wait_ms=0)
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 1))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        answers = await asyncio.gather(
            *(c.post("/api/generate", json={"prompt": "hi"}) for _ in range(6))
        )
        health = await c.get("/api/health")  # not gated
    codes = sorted(r.status_code for r in answers)
    assert codes == [200, 200, 503, 503, 503, 503]
    assert len(engine.requests) == 2  # refused requests never reached the engine
    assert health.status_code == 200
    assert app.state.admission.in_flight == 0


async def test_a_short_wait_admits_a_request_when_a_place_frees() -> None:
    app, _ = app_with(admission_wait_ms=2000)
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 1))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        answers = await asyncio.gather(
            *(c.post("/api/generate", json={"prompt": "hi"}) for _ in range(4))
        )
    assert [r.status_code for r in answers] == [200] * 4


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_after_a_refusal_the_queue_is_kept_short_until_the_hold_passes() -> None:
    clock = Clock()
    g = AdmissionGate(
        6, wait_s=0, retry_after=lambda: 1, overload_capacity=3, overload_hold_s=1.0, clock=clock
    )
    for _ in range(6):  # a burst gets the whole capacity
        assert await g.enter()
    assert not await g.enter()
    g.refusal()
    assert g.limit == 3
    for expected in (5, 4, 3):  # finished requests free places down to the short limit
        g.leave()
        assert g.in_flight == expected and not g.try_enter()
    g.leave()
    assert g.try_enter() and not g.try_enter()
    clock.now += 1.01  # no refusal for the hold: the whole capacity again
    assert g.limit == 6
    assert all([g.try_enter(), g.try_enter(), g.try_enter()]) and not g.try_enter()


async def test_a_load_that_fits_the_whole_queue_lets_the_short_queue_lapse() -> None:
    clock = Clock()
    g = AdmissionGate(
        6, wait_s=0, retry_after=lambda: 1, overload_capacity=3, overload_hold_s=1.0, clock=clock
    )
    for _ in range(6):
        assert await g.enter()
    g.refusal()  # 7 wanted in, 6 places: overloaded
    for _ in range(3):
        g.leave()
    clock.now += 0.5
    assert not await g.enter()
    g.refusal()  # refused by the short queue alone (4 want in): no new hold
    clock.now += 0.51
    assert g.limit == 6 and g.try_enter()


async def test_a_burst_beyond_the_short_queue_gets_the_whole_queue_after_its_wait() -> None:
    g = AdmissionGate(6, wait_s=0.05, retry_after=lambda: 1, overload_capacity=3)
    started = time.perf_counter()

    async def timed() -> tuple[bool, float]:
        return await g.enter(), time.perf_counter() - started

    entered = await asyncio.gather(*(timed() for _ in range(6)))
    assert [ok for ok, _ in entered] == [True] * 6 and g.in_flight == 6
    at = [seconds for _, seconds in entered]
    assert max(at[:3]) < min(at[3:])  # the short queue at once, the places above it ...
    assert min(at[3:]) >= 0.045  # ... at the end of their wait
    assert g.limit == 6  # six wanted in, six places: no overload


async def test_an_overload_that_starts_during_the_wait_refuses_the_places_above_the_short_queue() -> (
    None
):
    g = AdmissionGate(6, wait_s=0.05, retry_after=lambda: 1, overload_capacity=3)
    # The first instant of a flood: seven at once. Three enter; the seventh makes more than the
    # whole capacity want in, so the four waiting are refused at the end of their wait instead
    # of filling the queue.
    entered = await asyncio.gather(*(g.enter() for _ in range(7)))
    assert entered == [True] * 3 + [False] * 4
    assert g.in_flight == 3 and g.limit == 3


async def test_when_the_short_queue_lapses_the_waiters_get_the_opened_places_in_turn() -> None:
    clock = Clock()
    g = AdmissionGate(
        4, wait_s=0.2, retry_after=lambda: 1, overload_capacity=2, overload_hold_s=1.0, clock=clock
    )
    assert all(await asyncio.gather(*(g.enter() for _ in range(4))))
    g.refusal()  # five wanted in
    g.leave()
    g.leave()
    waiter = asyncio.ensure_future(g.enter())
    await asyncio.sleep(0.01)
    clock.now += 1.01  # the hold lapses with no place freed
    newcomer = asyncio.ensure_future(g.enter())
    await asyncio.sleep(0.01)
    assert not waiter.done() and not newcomer.done()  # places above the short queue: after a wait
    assert await waiter is True
    assert not newcomer.done()  # the one who came first had its place first
    assert await newcomer is True
    assert g.in_flight == 4 and not g.try_enter()


async def test_while_overloaded_waiters_get_places_only_within_the_short_limit() -> None:
    clock = Clock()
    g = AdmissionGate(
        4, wait_s=0.5, retry_after=lambda: 1, overload_capacity=2, overload_hold_s=1.0, clock=clock
    )
    assert all(await asyncio.gather(*(g.enter() for _ in range(4))))
    g.refusal()
    waiter = asyncio.ensure_future(g.enter())
    await asyncio.sleep(0.01)
    g.leave()
    g.leave()
    await asyncio.sleep(0.01)
    assert not waiter.done() and g.in_flight == 2
    g.leave()  # within the short limit now: the place passes to the waiter
    assert await waiter is True
    assert g.in_flight == 2 and g.waiting == 0


async def test_under_sustained_overload_an_app_admits_only_slots_and_the_short_queue() -> None:
    async def bursts(**limits: Any) -> list[list[int]]:
        engine = FakeEngine(delay_s=0.05)
        settings = Settings(
            engine={"slots": 1},  # type: ignore[arg-type]
            limits={"max_queue": 3, "admission_wait_ms": 0, **limits},  # type: ignore[arg-type]
        )
        app = create_app(settings, engine)  # type: ignore[arg-type]
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 1))
        codes = []
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            for size in (5, 3):
                answers = await asyncio.gather(
                    *(c.post("/api/generate", json={"prompt": "hi"}) for _ in range(size))
                )
                codes.append(sorted(r.status_code for r in answers))
        assert app.state.admission.in_flight == 0
        return codes

    # The first burst fills slot and queue; the one after a refusal finds only the slot.
    assert await bursts(overload_queue=0, overload_hold_ms=60_000) == [
        [200, 200, 200, 200, 503],
        [200, 503, 503],
    ]
    # No hold: every burst gets the whole queue.
    assert await bursts(overload_queue=0, overload_hold_ms=0) == [
        [200, 200, 200, 200, 503],
        [200, 200, 200],
    ]
