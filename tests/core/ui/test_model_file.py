"""GET/HEAD /api/model/file on a fake engine with a small file standing in for the GGUF."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.app import create_app
from core.settings import Settings
from tests.support.fakes import FakeEngine

KEY = "k" * 24
DATA = bytes(range(256)) * 40 + b"tail"  # 10244 bytes


class FileEngine(FakeEngine):
    def __init__(self, path: Path | None) -> None:
        super().__init__()
        self.model_path = path


def client_for(path: Path | None, **ui: Any) -> httpx.AsyncClient:
    settings = Settings(
        ui={"serve_model_file": True, **ui},
        security={"auth": {"mode": "on", "keys": KEY}},
    )
    app = create_app(settings, FileEngine(path))  # type: ignore[arg-type]
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://test",
        headers={"Authorization": f"Bearer {KEY}"},
    )


@pytest.fixture()
def gguf(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.gguf"
    path.write_bytes(DATA)
    return path


@pytest.fixture()
async def client(gguf: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(gguf) as c:
        yield c


async def test_whole_file_with_validators_and_cache_headers(client: httpx.AsyncClient) -> None:
    resp = await client.get("/api/model/file")
    assert resp.status_code == 200
    assert resp.content == DATA
    assert resp.headers["content-length"] == str(len(DATA))
    assert resp.headers["content-type"] == "application/octet-stream"
    assert resp.headers["accept-ranges"] == "bytes"
    assert resp.headers["etag"].startswith('"') and resp.headers["etag"].endswith('"')
    assert resp.headers["last-modified"].endswith("GMT")
    assert resp.headers["cache-control"] == "private, max-age=3600"
    assert resp.headers["content-disposition"] == 'attachment; filename="tiny.gguf"'


async def test_head_has_the_headers_and_no_body(client: httpx.AsyncClient) -> None:
    resp = await client.head("/api/model/file")
    assert resp.status_code == 200
    assert resp.content == b""
    assert resp.headers["content-length"] == str(len(DATA))
    assert "etag" in resp.headers


@pytest.mark.parametrize(
    ("header", "first", "last"),
    [
        ("bytes=0-99", 0, 99),
        ("bytes=10000-", 10000, len(DATA) - 1),
        ("bytes=-4", len(DATA) - 4, len(DATA) - 1),
    ],
)
async def test_range_answers_206_with_exactly_those_bytes(
    client: httpx.AsyncClient, header: str, first: int, last: int
) -> None:
    resp = await client.get("/api/model/file", headers={"Range": header})
    assert resp.status_code == 206
    assert resp.content == DATA[first : last + 1]
    assert resp.headers["content-range"] == f"bytes {first}-{last}/{len(DATA)}"
    assert resp.headers["content-length"] == str(last - first + 1)


async def test_pieces_reassemble_the_file(client: httpx.AsyncClient) -> None:
    piece = 4096
    parts = []
    for first in range(0, len(DATA), piece):
        last = min(len(DATA), first + piece) - 1
        resp = await client.get("/api/model/file", headers={"Range": f"bytes={first}-{last}"})
        assert resp.status_code == 206
        parts.append(resp.content)
    assert b"".join(parts) == DATA


async def test_range_past_the_end_is_416_in_the_error_shape(client: httpx.AsyncClient) -> None:
    resp = await client.get("/api/model/file", headers={"Range": f"bytes={len(DATA)}-"})
    assert resp.status_code == 416
    assert resp.headers["content-range"] == f"bytes */{len(DATA)}"
    assert resp.json()["error"]["code"] == "range_not_satisfiable"


async def test_if_none_match_gives_304_and_a_change_gives_200(
    client: httpx.AsyncClient, gguf: Path
) -> None:
    etag = (await client.head("/api/model/file")).headers["etag"]
    resp = await client.get("/api/model/file", headers={"If-None-Match": etag})
    assert resp.status_code == 304
    assert resp.content == b""
    assert resp.headers["etag"] == etag
    assert (
        await client.get("/api/model/file", headers={"If-None-Match": f"W/{etag}"})
    ).status_code == 304
    # The file changes: the old tag no longer matches.
    gguf.write_bytes(DATA + b"more")
    os.utime(gguf, ns=(1, 1))
    resp = await client.get("/api/model/file", headers={"If-None-Match": etag})
    assert resp.status_code == 200
    assert resp.content == DATA + b"more"
    assert resp.headers["etag"] != etag


async def test_if_range_with_an_old_tag_sends_the_whole_file(
    client: httpx.AsyncClient, gguf: Path
) -> None:
    etag = (await client.head("/api/model/file")).headers["etag"]
    ok = await client.get("/api/model/file", headers={"Range": "bytes=0-9", "If-Range": etag})
    assert ok.status_code == 206
    os.utime(gguf, ns=(2, 2))
    resp = await client.get("/api/model/file", headers={"Range": "bytes=0-9", "If-Range": etag})
    assert resp.status_code == 200
    assert resp.content == DATA


async def test_the_api_key_applies(client: httpx.AsyncClient) -> None:
    for headers in ({"Authorization": ""}, {"Authorization": "Bearer wrong-key-wrong-key"}):
        resp = await client.get("/api/model/file", headers=headers)
        assert resp.status_code == 401
        assert resp.json()["error"]["code"] == "invalid_api_key"
    resp = await client.get("/api/model/file", headers={"Authorization": "", "x-api-key": KEY})
    assert resp.status_code == 200


async def test_off_by_default_with_a_404_that_says_how_to_turn_it_on(gguf: Path) -> None:
    assert Settings().ui.serve_model_file is False
    async with client_for(gguf, serve_model_file=False) as c:
        resp = await c.get("/api/model/file")
    assert resp.status_code == 404
    assert "NIMBUS_UI__SERVE_MODEL_FILE=true" in resp.json()["error"]["message"]


async def test_an_engine_without_a_file_answers_404() -> None:
    async with client_for(None) as c:
        resp = await c.get("/api/model/file")
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "not_found"


async def test_max_age_is_a_setting(gguf: Path) -> None:
    async with client_for(gguf, model_file_max_age_s=0) as c:
        resp = await c.head("/api/model/file")
    assert resp.headers["cache-control"] == "private, max-age=0"
