"""Rate limiting: one interface, two backends (memory here, DynamoDB in dynamo.py).

A client (an API key id, or the client IP when auth is off) may *start* ``requests_per_window``
requests and *use* ``tokens_per_window`` tokens per window. ``hit`` counts a request when it is
let through; a request that then ends in an error or a refusal (400, 503, ...) is given back
with ``refund``, so only admitted work uses quota. Tokens are charged after a generation ends
with the exact prompt + completion count; a request is admitted while the client's token use in
the window is below the limit. So a client can overshoot the token limit by at most the
requests it has in flight, each bounded by the context size.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from core.settings import RateLimitSettings


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_s: float  # seconds until the window frees capacity again
    token_limit: int = 0  # 0 = no token limit
    tokens_remaining: int = 0
    retry_after_s: float = 0.0
    stamp: float = 0.0  # when the request was counted (the backend's clock), for refund()

    def headers(self) -> dict[str, str]:
        h = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(max(0, self.remaining)),
            "X-RateLimit-Reset": str(max(0, math.ceil(self.reset_s))),
        }
        if self.token_limit:
            h["X-RateLimit-Limit-Tokens"] = str(self.token_limit)
            h["X-RateLimit-Remaining-Tokens"] = str(max(0, self.tokens_remaining))
        if not self.allowed:
            h["Retry-After"] = str(max(1, math.ceil(self.retry_after_s)))
        return h


class RateLimiter(Protocol):
    async def hit(self, client: str) -> Decision:
        """Count one request for ``client`` if it is within its limits."""
        ...

    async def charge(self, client: str, tokens: int) -> None:
        """Add the tokens a finished request used."""
        ...

    async def refund(self, client: str, decision: Decision) -> None:
        """Give back the request counted by ``decision`` (an allowed ``hit``)."""
        ...


class _Usage:
    __slots__ = ("requests", "tokens")

    def __init__(self) -> None:
        self.requests: deque[float] = deque()
        self.tokens: deque[tuple[float, int]] = deque()


class MemoryRateLimiter:
    """Sliding-window log per client, in this process only. Memory is bounded: at most
    ``max_clients`` clients (least recently seen are dropped) and, per client, one entry per
    request in the window (never more than the request limit)."""

    def __init__(
        self, settings: RateLimitSettings, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.window = float(settings.window_s)
        self.limit = settings.requests_per_window
        self.token_limit = settings.tokens_per_window
        self.max_clients = settings.max_clients
        self._clock = clock
        self._clients: OrderedDict[str, _Usage] = OrderedDict()

    def _usage(self, client: str, now: float) -> _Usage:
        usage = self._clients.get(client)
        if usage is None:
            usage = self._clients[client] = _Usage()
            while len(self._clients) > self.max_clients:
                self._clients.popitem(last=False)
        else:
            self._clients.move_to_end(client)
        start = now - self.window
        while usage.requests and usage.requests[0] <= start:
            usage.requests.popleft()
        while usage.tokens and usage.tokens[0][0] <= start:
            usage.tokens.popleft()
        return usage

    def _tokens_retry(self, usage: _Usage, now: float) -> float:
        """Seconds until enough token entries leave the window to get below the limit."""
        used = sum(n for _, n in usage.tokens)
        for t, n in usage.tokens:
            used -= n
            if used < self.token_limit:
                return t + self.window - now
        return self.window

    async def hit(self, client: str) -> Decision:
        now = self._clock()
        usage = self._usage(client, now)
        used_tokens = sum(n for _, n in usage.tokens)
        tokens_left = self.token_limit - used_tokens if self.token_limit else 0
        over_requests = len(usage.requests) >= self.limit
        over_tokens = bool(self.token_limit) and used_tokens >= self.token_limit
        oldest = usage.requests[0] if usage.requests else now
        reset = oldest + self.window - now
        if over_requests or over_tokens:
            retry = max(
                reset if over_requests else 0.0,
                self._tokens_retry(usage, now) if over_tokens else 0.0,
            )
            return Decision(False, self.limit, 0, reset, self.token_limit, tokens_left, retry)
        usage.requests.append(now)
        remaining = self.limit - len(usage.requests)
        return Decision(
            True, self.limit, remaining, reset, self.token_limit, tokens_left, stamp=now
        )

    async def charge(self, client: str, tokens: int) -> None:
        if tokens <= 0 or not self.token_limit:
            return
        now = self._clock()
        self._usage(client, now).tokens.append((now, tokens))

    async def refund(self, client: str, decision: Decision) -> None:
        usage = self._clients.get(client)
        if usage is None or not decision.allowed:
            return
        with contextlib.suppress(ValueError):  # already out of the window
            usage.requests.remove(decision.stamp)

    @property
    def tracked_clients(self) -> int:
        return len(self._clients)


class NoRateLimit:
    """Used when rate limiting is off."""

    async def hit(self, client: str) -> Decision:
        return Decision(True, 0, 0, 0.0)

    async def charge(self, client: str, tokens: int) -> None:
        return None

    async def refund(self, client: str, decision: Decision) -> None:
        return None
