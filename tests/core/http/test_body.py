"""Request bodies: a stalled or trickled upload gets 408 and loses its connection."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

from core.app import create_app
from core.settings import Settings
from tests.conftest import free_port, start_server
from tests.support.asgi import http_scope
from tests.support.fakes import FakeEngine


async def test_a_stalled_body_gets_408_and_connection_close() -> None:
    settings = Settings(limits={"body_timeout_s": 0.2})  # type: ignore[arg-type]
    app = create_app(settings, FakeEngine())  # type: ignore[arg-type]
    sent: list[dict[str, Any]] = []
    parts = [{"type": "http.request", "body": b'{"prompt":', "more_body": True}]

    async def receive() -> dict[str, Any]:
        if parts:
            return parts.pop()
        await asyncio.sleep(3600)  # the rest never comes
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = http_scope(
        "/api/generate",
        [(b"content-type", b"application/json"), (b"content-length", b"40")],
    )
    started = time.perf_counter()
    await asyncio.wait_for(app(scope, receive, send), 5)
    assert time.perf_counter() - started < 2
    assert sent[0]["status"] == 408
    headers = dict(sent[0]["headers"])
    assert headers[b"connection"] == b"close"
    assert b"request_timeout" in sent[1]["body"]


def test_slow_loris_over_real_http_is_cut_at_the_body_timeout() -> None:
    """A body shorter than its Content-Length: uvicorn waits for the rest; the app answers 408
    after body_timeout_s and the server closes the connection."""
    settings = Settings(limits={"body_timeout_s": 0.5})  # type: ignore[arg-type]
    port = free_port()
    server, thread = start_server(create_app(settings, FakeEngine()), port)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(
                b"POST /api/generate HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                b"Content-Length: 100\r\n\r\n" + b'{"prompt": "h'
            )
            started = time.perf_counter()
            data = b""
            while chunk := sock.recv(65536):  # until the server closes the connection
                data += chunk
            elapsed = time.perf_counter() - started
        assert data.startswith(b"HTTP/1.1 408"), data[:100]
        assert b"request_timeout" in data
        assert 0.4 <= elapsed < 5
    finally:
        server.should_exit = True
        thread.join(timeout=15)
