"""The chat page, its assets and the offline API docs over ASGI on a fake engine (no browser:
tests/core/ui/test_browser.py runs the page in Chromium)."""

from __future__ import annotations

import gzip
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from core.app import create_app
from core.settings import Settings
from core.ui.pages import STATIC_DIR
from tests.support.fakes import FakeEngine

ISOLATED = {
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-embedder-policy": "require-corp",
    "cross-origin-resource-policy": "same-origin",
    "x-content-type-options": "nosniff",
}


def client_for(root_path: str = "", **settings: Any) -> httpx.AsyncClient:
    app = create_app(Settings(**settings), FakeEngine())  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=app, root_path=root_path)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


@pytest.fixture()
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with client_for() as c:
        yield c


async def test_root_redirects_to_the_page_relatively(client: httpx.AsyncClient) -> None:
    resp = await client.get("/")
    assert resp.status_code == 307
    assert resp.headers["location"] == "chat"


async def test_under_a_known_prefix_the_redirect_and_page_use_it() -> None:
    async with client_for(root_path="/nimbus") as c:
        resp = await c.get("/nimbus/")
        assert resp.headers["location"] == "/nimbus/chat"
        page = await c.get("/nimbus/chat")
        assert page.status_code == 200
        assert (await c.get("/nimbus/ui/chat.js")).status_code == 200
        docs = await c.get("/nimbus/docs")
        assert "/nimbus/openapi.json" in docs.text


async def test_page_is_isolated_with_a_strict_csp(client: httpx.AsyncClient) -> None:
    resp = await client.get("/chat")
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "text/html; charset=utf-8"
    for name, value in ISOLATED.items():
        assert resp.headers[name] == value
    directives = [d.partition(" ") for d in resp.headers["content-security-policy"].split("; ")]
    csp = {name: value for name, _, value in directives}
    assert csp["default-src"] == "'none'"
    assert csp["script-src"] == "'self' 'wasm-unsafe-eval'"  # no 'unsafe-inline' / 'unsafe-eval'
    assert csp["style-src"] == "'self'"
    assert csp["connect-src"] == "'self'"
    assert csp["frame-ancestors"] == "'none'"


async def test_page_has_no_inline_code_and_only_relative_urls(client: httpx.AsyncClient) -> None:
    html = (await client.get("/chat")).text
    scripts = re.findall(r"<script\b[^>]*>", html)
    assert scripts and all("src=" in s for s in scripts)
    assert "<style" not in html and " style=" not in html
    assert not re.search(r"\son[a-z]+=", html)  # no inline event handlers
    # Relative references keep the page working under any path prefix.
    for url in re.findall(r'(?:src|href)="([^"]+)"', html):
        assert not url.startswith(("/", "http:", "https:", "//")), url


async def test_every_static_file_is_served_with_isolation_headers(
    client: httpx.AsyncClient,
) -> None:
    files = [p for p in STATIC_DIR.rglob("*") if p.is_file()]
    assert len(files) >= 8
    for path in files:
        name = path.relative_to(STATIC_DIR).as_posix().removesuffix(".gz")
        resp = await client.get(f"/ui/{name}")
        assert resp.status_code == (404 if name == "chat.html" else 200), name
        if resp.status_code == 200:
            for header, value in ISOLATED.items():
                assert resp.headers[header] == value, (name, header)


async def test_js_modules_import_only_files_that_exist(client: httpx.AsyncClient) -> None:
    for path in STATIC_DIR.glob("*.js"):
        for target in re.findall(r"""(?:from|import\()\s*['"](\./[^'"]+)['"]""", path.read_text()):
            resp = await client.get(f"/ui/{target.removeprefix('./')}")
            assert resp.status_code == 200, (path.name, target)
            assert resp.headers["content-type"].startswith("text/javascript")


async def test_wasm_is_sent_gzipped_and_as_is_to_clients_without_gzip(
    client: httpx.AsyncClient,
) -> None:
    shipped = (STATIC_DIR / "vendor/wllama/wllama.wasm.gz").read_bytes()
    raw = gzip.decompress(shipped)
    resp = await client.get("/ui/vendor/wllama/wllama.wasm", headers={"Accept-Encoding": "gzip"})
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/wasm"
    assert resp.headers["content-encoding"] == "gzip"
    assert resp.headers["content-length"] == str(len(shipped))
    assert resp.content == raw  # httpx decodes Content-Encoding
    plain = await client.get(
        "/ui/vendor/wllama/wllama.wasm", headers={"Accept-Encoding": "identity"}
    )
    assert "content-encoding" not in plain.headers
    assert plain.content == raw
    assert raw[:4] == b"\0asm"


async def test_assets_revalidate_with_etag(client: httpx.AsyncClient) -> None:
    first = await client.get("/ui/chat.js")
    assert first.headers["cache-control"] == "no-cache"
    again = await client.get("/ui/chat.js", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304


@pytest.mark.parametrize(
    "name", ["nope.js", "../files.py", "..%2Ffiles.py", "vendor/wllama/wllama.wasm.gz"]
)
async def test_unknown_assets_are_404_in_the_error_shape(
    client: httpx.AsyncClient, name: str
) -> None:
    resp = await client.get(f"/ui/{name}")
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "not_found"


async def test_the_page_can_be_turned_off() -> None:
    async with client_for(ui={"enabled": False}) as c:
        assert (await c.get("/chat")).status_code == 404
        assert (await c.get("/")).status_code == 404
        assert (await c.get("/ui/chat.js")).status_code == 404


async def test_the_page_needs_no_key_but_the_api_does() -> None:
    key = "k" * 24
    async with client_for(security={"auth": {"mode": "on", "keys": key}}) as c:
        assert (await c.get("/chat")).status_code == 200
        assert (await c.get("/ui/chat.js")).status_code == 200
        assert (await c.get("/api/health")).status_code == 200
        assert (await c.get("/v1/models")).status_code == 401


async def test_docs_load_their_assets_from_the_package(client: httpx.AsyncClient) -> None:
    for page in ("/docs", "/redoc"):
        html = (await client.get(page)).text
        urls = re.findall(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""", html)
        assert urls, page
        for url in urls:
            assert not url.startswith(("http:", "https:", "//")), (page, url)
            if url.endswith((".js", ".css", ".png")):
                assert (await client.get(url)).status_code == 200, url


async def test_openapi_declares_both_api_key_schemes(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    schemes = spec["components"]["securitySchemes"]
    assert schemes["HTTPBearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "API key as a bearer token",
    }
    assert schemes["APIKeyHeader"]["in"] == "header"
    assert schemes["APIKeyHeader"]["name"] == "x-api-key"
    model_file = spec["paths"]["/api/model/file"]["get"]
    assert {next(iter(s)) for s in model_file["security"]} == {"HTTPBearer", "APIKeyHeader"}
