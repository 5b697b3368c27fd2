"""The chat page and the API docs through the edge worker (real workerd, our own origin): public
like on the origin, with the origin's isolation and CSP headers intact."""

from __future__ import annotations

import httpx
import pytest

from tests.handlers.cloudflare.conftest import Edge

pytestmark = pytest.mark.integration


def test_the_chat_page_and_its_assets_need_no_edge_key(edge: Edge) -> None:
    base = edge.urls["direct"]
    root = httpx.get(base + "/", timeout=30)
    assert root.status_code == 307 and root.headers["location"] == "chat"
    page = httpx.get(base + "/chat", timeout=30)
    assert page.status_code == 200, page.text
    assert page.headers["x-nimbus-origin"] == "0"
    assert page.headers["cross-origin-opener-policy"] == "same-origin"
    assert page.headers["cross-origin-embedder-policy"] == "require-corp"
    assert "script-src 'self' 'wasm-unsafe-eval'" in page.headers["content-security-policy"]
    script = httpx.get(base + "/ui/chat.js", timeout=30)
    assert script.status_code == 200 and "streamChat" in script.text
    wasm = httpx.head(base + "/ui/vendor/wllama/wllama.wasm", headers={"accept-encoding": "gzip"})
    assert wasm.status_code == 200 and wasm.headers["content-type"] == "application/wasm"


def test_the_api_docs_pass_through(edge: Edge) -> None:
    base = edge.urls["direct"]
    docs = httpx.get(base + "/docs", timeout=30)
    assert docs.status_code == 200 and "swagger-ui-bundle.js" in docs.text
    spec = httpx.get(base + "/openapi.json", timeout=30).json()
    assert "/v1/chat/completions" in spec["paths"]
    asset = httpx.get(base + "/static-offline-docs/swagger-ui.css", timeout=30)
    assert asset.status_code == 200


def test_only_reads_of_page_paths_skip_the_key(edge: Edge) -> None:
    base = edge.urls["direct"]
    assert httpx.post(base + "/chat", timeout=30).status_code == 404  # answered at the edge
    model_file = httpx.get(base + "/api/model/file", timeout=30)
    assert model_file.status_code == 401  # an API route: the edge key applies
    assert httpx.get(base + "/admin", timeout=30).status_code == 404
