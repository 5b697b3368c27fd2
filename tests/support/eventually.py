"""Reading what a live server records after a response has gone out.

The request log line, the request's counters and a Lambda invocation's EMF document are written
once the last byte of the response is sent, so a client can hold the answer a moment before they
exist. Tests read them with ``eventually`` instead of at once."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def eventually(read: Callable[[], T], until: Callable[[T], bool], timeout: float = 30) -> T:
    """``read()`` again until ``until`` holds for its result or ``timeout`` seconds pass; the
    last result either way, so the caller's assertion reports what was there."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if until(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.05)
