"""A raw ASGI HTTP scope, for tests that drive middleware below the HTTP client."""

from __future__ import annotations

from typing import Any


def http_scope(
    path: str, headers: list[tuple[bytes, bytes]], *, method: str = "POST"
) -> dict[str, Any]:
    return {
        "type": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("203.0.113.7", 1),
        "server": ("test", 80),
        "scheme": "http",
        "http_version": "1.1",
    }
