"""Admission before anything is read: a bounded count of engine requests in flight.

Every request to an engine route (POST /api/generate, POST /v1/...) passes the gate before its
body is read, its key checked or its JSON parsed. The gate is a counter on the event loop: no
lock, no engine call, no I/O, so a refusal costs microseconds of the thread that also streams
every token, and the engine thread (which needs the same GIL between its C calls) keeps its
speed. Capacity is the engine's: its slots plus its queue, so an admitted request always finds a
place in the engine.

A request that finds the gate full waits up to ``wait_s`` for a place (first come, first served)
and is then refused with 503 and a Retry-After estimated by the engine from its queue depth and
measured token rate. The short wait paces clients that retry the moment they are refused: each
connection then costs at most one refusal per ``wait_s`` instead of a busy loop that would take
the CPU from decoding.

Under sustained overload (within ``overload_hold_s`` of the moment more requests wanted in than
the whole capacity holds) the gate admits only up to ``overload_capacity``: the slots plus a
short queue. A full queue that never drains adds waiting time to every accepted request and no
throughput (the slots are busy either way), so the queue is kept short while overloaded and
whole for bursts. A place above the short queue is granted at the end of the request's wait,
not at once: an overload that starts within that wait (the first instant of a flood looks like a
burst) refuses it instead of leaving the whole queue full for every later request to wait behind.
The request loses nothing by the wait: a place above the short queue is behind at least the
short queue, which takes longer than the wait to drain.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from core.errors import EngineOverloadedError
from core.http.errors import send_error
from core.http.observe import note_error

# Engine routes: every POST under /v1/ and the native generate route.
_ENGINE_PREFIXES = ("/v1/",)
_ENGINE_PATHS = frozenset({"/api/generate"})


def is_engine_route(scope: Scope) -> bool:
    if scope.get("method") != "POST":
        return False
    path: str = scope.get("path", "")
    root = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    return path in _ENGINE_PATHS or path.startswith(_ENGINE_PREFIXES)


class AdmissionGate:
    """At most ``capacity`` engine requests in flight in this app (``overload_capacity`` for
    ``overload_hold_s`` after a refusal); waiters queue FIFO for at most ``wait_s``, and at most
    ``max_waiters`` of them (more are refused at once).

    ``retry_after`` gives the seconds to send with a refusal; it is asked at most every
    ``retry_refresh_s`` so a flood of refusals does not become a flood of engine queries."""

    def __init__(
        self,
        capacity: int,
        *,
        wait_s: float,
        retry_after: Callable[[], int],
        overload_capacity: int | None = None,
        overload_hold_s: float = 1.0,
        max_waiters: int = 1024,
        retry_refresh_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.capacity = max(1, capacity)
        self.overload_capacity = min(
            self.capacity, max(1, capacity if overload_capacity is None else overload_capacity)
        )
        self.overload_hold_s = overload_hold_s
        self._overloaded_until = -1e9
        self.wait_s = wait_s
        self.max_waiters = max_waiters
        self.in_flight = 0
        self.refused = 0
        self._retry_after = retry_after
        self._retry_refresh_s = retry_refresh_s
        self._retry_value = 1
        self._retry_at = -1e9
        self._clock = clock
        self._waiters: deque[asyncio.Future[bool]] = deque()
        self._waiting = 0

    @property
    def waiting(self) -> int:
        return self._waiting

    @property
    def limit(self) -> int:
        """Places open now: the whole capacity, or the short one while overloaded."""
        if self._overloaded():
            return self.overload_capacity
        return self.capacity

    @property
    def _at_once(self) -> int:
        """Places granted on arrival; those above (up to ``limit``) only at the end of a wait."""
        if self.wait_s > 0 and self.overload_hold_s > 0:
            return self.overload_capacity
        return self.limit

    def _overloaded(self) -> bool:
        return self._clock() < self._overloaded_until

    def _note_demand(self, wanting: int) -> None:
        # Overloaded only while more want in than the whole capacity holds: a load that fits in
        # the whole queue but found the short one full lets it lapse, so it cannot keep itself
        # short.
        if wanting > self.capacity:
            self._overloaded_until = self._clock() + self.overload_hold_s

    def try_enter(self) -> bool:
        # No queue-jumping past live waiters: places the limit opened by going back up go to
        # them first; otherwise leave() hands a place on directly, so a place is free on arrival
        # only when nobody was waiting for it.
        self._hand_on()
        if self.in_flight < self._at_once:
            self.in_flight += 1
            return True
        return False

    async def enter(self) -> bool:
        """True once the caller holds a place (it must ``leave()`` later); False when refused."""
        if self.try_enter():
            return True
        if self.wait_s <= 0 or self._waiting >= self.max_waiters:
            return False
        self._note_demand(self.in_flight + self._waiting + 1)
        loop = asyncio.get_running_loop()
        place: asyncio.Future[bool] = loop.create_future()
        self._waiters.append(place)
        self._waiting += 1
        timer = loop.call_later(self.wait_s, self._end_wait, place)
        try:
            return await place
        except asyncio.CancelledError:
            if place.done() and not place.cancelled() and place.result():
                self.leave()  # handed a place just as the caller went away: give it on
            place.cancel()
            raise
        finally:
            timer.cancel()
            self._waiting -= 1
            self._prune()

    def leave(self) -> None:
        """Free the place; the oldest live waiter takes it if it is one granted on arrival
        (places above those go only to waits that end without an overload)."""
        self.in_flight -= 1
        self._hand_on()

    def _hand_on(self) -> None:
        """Free places, oldest live waiter first."""
        while self._waiters and self.in_flight < self._at_once:
            place = self._waiters.popleft()
            if not place.done():
                place.set_result(True)
                self.in_flight += 1

    def _end_wait(self, place: asyncio.Future[bool]) -> None:
        """A wait is over: a place above the short queue if no overload began meanwhile and
        one is free, else the refusal."""
        if place.done():
            return
        admitted = not self._overloaded() and self.in_flight < self.capacity
        if admitted:
            self.in_flight += 1
        place.set_result(admitted)

    def refusal(self) -> EngineOverloadedError:
        """The 503 for a refused request (one per reason, so a metrics hook can count it)."""
        self.refused += 1
        # The refused one, the requests in flight and those still waiting.
        self._note_demand(self.in_flight + self._waiting + 1)
        retry = self.retry_after_s()
        return EngineOverloadedError(
            f"the server is at capacity ({self.in_flight} requests in progress); "
            f"retry in {retry} s",
            headers={"Retry-After": str(retry)},
        )

    def retry_after_s(self) -> int:
        now = self._clock()
        if now - self._retry_at >= self._retry_refresh_s:
            self._retry_at = now
            with contextlib.suppress(Exception):  # an estimate only: keep the last one
                self._retry_value = max(1, int(self._retry_after()))
        return self._retry_value

    def _prune(self) -> None:
        # Expired waiters stay in the deque until leave() passes them; drop them when they pile
        # up (a long flood while every request in flight runs for a long time).
        if len(self._waiters) > 2 * self._waiting + 64:
            self._waiters = deque(w for w in self._waiters if not w.done())


class AdmissionMiddleware:
    """Puts every engine request through the gate before anything reads it."""

    def __init__(self, app: ASGIApp, *, gate: AdmissionGate) -> None:
        self.app = app
        self.gate = gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_engine_route(scope):
            await self.app(scope, receive, send)
            return
        if not await self.gate.enter():
            refusal = self.gate.refusal()
            note_error(scope, refusal.code)  # counted by reason in metrics and the request log
            await send_error(send, refusal)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.gate.leave()
