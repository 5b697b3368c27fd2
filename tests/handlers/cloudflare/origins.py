"""Small loopback origins for the edge tests: one that records requests, one answering 500, one
speaking garbage, one that never answers, one that breaks a stream after its first event."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class CaptureOrigin:
    """Records every request and answers with a fixed JSON body and some hop-by-hop headers."""

    seen: list[Seen] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def requests_with(self, header: str, value: str) -> list[Seen]:
        return [s for s in self.seen if s.headers.get(header) == value]


def _serve(handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def capture_origin() -> CaptureOrigin:
    origin = CaptureOrigin()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _handle(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            origin.seen.append(Seen(self.command, self.path, headers, body))
            payload = json.dumps(
                {"status": "ready", "model": "capture", "path": self.path}
            ).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.send_header("keep-alive", "timeout=5")
            self.send_header("proxy-authenticate", "Basic")
            self.send_header("x-origin-header", "kept")
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = _handle

        def log_message(self, *args: Any) -> None:
            pass

    origin.server = _serve(Handler)
    return origin


def status_origin(status: int) -> ThreadingHTTPServer:
    """Answers every request with ``status`` and a core-shaped error body."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _handle(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            if length:
                self.rfile.read(length)
            payload = json.dumps(
                {
                    "error": {
                        "message": "broken origin",
                        "type": "server_error",
                        "code": "broken",
                        "param": None,
                    }
                }
            ).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.send_header("retry-after", "7")
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = _handle

        def log_message(self, *args: Any) -> None:
            pass

    return _serve(Handler)


def breaking_stream_origin() -> ThreadingHTTPServer:
    """Starts a 200 SSE stream, sends one event, then drops the connection."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            if length:
                self.rfile.read(length)
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            event = b'data: {"token": "first"}\n\n'
            self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)

        def log_message(self, *args: Any) -> None:
            pass

    return _serve(Handler)


class RawOrigin:
    """A TCP server that reads a request and then runs ``behave(conn)``: garbage or silence."""

    def __init__(self, behave: Callable[[socket.socket], None]) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.behave = behave
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        try:
            conn.recv(65536)
            self.behave(conn)
        except OSError:
            pass

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


def garbage_origin() -> RawOrigin:
    def behave(conn: socket.socket) -> None:
        conn.sendall(b"this is not HTTP at all\r\n\r\n\x00\xff")
        conn.close()

    return RawOrigin(behave)


def silent_origin() -> RawOrigin:
    """Accepts, reads the request and never answers (until closed)."""
    origin: RawOrigin

    def behave(conn: socket.socket) -> None:
        origin.held.append(conn)

    origin = RawOrigin(behave)
    return origin
