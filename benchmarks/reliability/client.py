"""A small HTTP/1.1 load client: asyncio streams plus httptools' C response parser.

A flood of retries is only a fair test of the server if the client spends little CPU per
request (both share the same cores), so requests are pre-encoded bytes on keep-alive
connections and responses are parsed in C. Loopback only."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import httptools


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    seconds: float
    first_byte_s: float = 0.0

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class _Parse:
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: list[bytes] = field(default_factory=list)
    done: bool = False
    keep_alive: bool = False
    parser: Any = None
    _name: bytes = b""

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        # Asked on the headers: once the message is complete the parser has reset and says no.
        self.keep_alive = bool(self.parser.should_keep_alive())

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.done = True


def encode(
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    *,
    host: str = "127.0.0.1",
) -> bytes:
    """A whole request as bytes (JSON body when ``body`` is not bytes)."""
    raw = b"" if body is None else body if isinstance(body, bytes) else json.dumps(body).encode()
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(raw)}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + raw


class Connection:
    """One keep-alive connection; reconnects by itself when the server closed it."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self.connects = 0

    async def _ensure(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._reader is None or self._writer is None or self._writer.is_closing():
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
            self.connects += 1
        return self._reader, self._writer

    async def send(self, request: bytes, *, timeout: float = 600) -> Answer:
        """Send ``request`` and read the whole answer."""
        reader, writer = await self._ensure()
        started = time.perf_counter()
        writer.write(request)
        parse = _Parse()
        parser = parse.parser = httptools.HttpResponseParser(parse)
        first = 0.0
        try:
            async with asyncio.timeout(timeout):
                while not parse.done:
                    data = await reader.read(65536)
                    if not data:
                        raise ConnectionError("the server closed the connection")
                    if not first:
                        first = time.perf_counter() - started
                    parser.feed_data(data)
        except BaseException:
            self.close()
            raise
        parse.status = parser.get_status_code()
        if not parse.keep_alive:
            self.close()
        return Answer(
            parse.status, parse.headers, b"".join(parse.body), time.perf_counter() - started, first
        )

    async def first_event_then_abort(self, request: bytes, *, timeout: float = 120) -> Answer:
        """Send a streaming request, read until the first server-sent event, then drop the
        connection (a client that goes away mid-stream)."""
        reader, writer = await self._ensure()
        started = time.perf_counter()
        writer.write(request)
        parse = _Parse()
        parser = parse.parser = httptools.HttpResponseParser(parse)
        try:
            async with asyncio.timeout(timeout):
                while not parse.done and b"\n\n" not in b"".join(parse.body):
                    data = await reader.read(65536)
                    if not data:
                        break
                    parser.feed_data(data)
        finally:
            self.abort()
        return Answer(
            parser.get_status_code(),
            parse.headers,
            b"".join(parse.body),
            time.perf_counter() - started,
        )

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None

    def abort(self) -> None:
        """Close at once (RST where the platform allows), like a client that vanished."""
        if self._writer is not None:
            self._writer.transport.abort()
        self._reader = self._writer = None
