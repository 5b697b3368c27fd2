"""/docs (Swagger UI) and /redoc render in headless Chromium with every request off the
server refused, and show both API-key schemes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from core.app import create_app
from core.settings import Settings
from tests.conftest import free_port, start_server
from tests.core.ui.conftest import Console
from tests.support.fakes import FakeEngine

pytestmark = pytest.mark.slow

REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    app = create_app(Settings(), FakeEngine())  # type: ignore[arg-type]
    port = free_port()
    server, thread = start_server(app, port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def cut_network(tab: Any, base_url: str) -> list[str]:
    """Refuse every request that does not go to the server under test; return the refused."""
    here = urlsplit(base_url).netloc
    refused: list[str] = []

    def guard(route: Any) -> None:
        url = route.request.url
        if urlsplit(url).netloc == here or url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            refused.append(url)
            route.abort()

    tab.route("**/*", guard)
    return refused


def test_swagger_ui_renders_offline_with_both_schemes(
    page: tuple[Any, Console], base_url: str
) -> None:
    tab, console = page
    refused = cut_network(tab, base_url)
    tab.goto(base_url + "/docs")
    tab.wait_for_selector(".swagger-ui .info .title", timeout=30_000)
    assert "nimbus-llm" in tab.text_content(".swagger-ui .info .title")
    assert tab.locator(".opblock-summary-path", has_text="/v1/chat/completions").count() == 1
    tab.click("button.authorize")
    dialog = tab.locator(".auth-container")
    dialog.first.wait_for()
    text = " ".join(dialog.all_text_contents())
    assert "HTTPBearer" in text and "APIKeyHeader" in text and "x-api-key" in text
    assert refused == []
    assert console.errors == []


def test_redoc_renders_offline_with_both_schemes(page: tuple[Any, Console], base_url: str) -> None:
    tab, console = page
    refused = cut_network(tab, base_url)
    tab.goto(base_url + "/redoc")
    tab.wait_for_function(
        "() => document.body.innerText.includes('Chat completion (OpenAI-compatible)')",
        timeout=30_000,
    )
    body = tab.evaluate("document.body.innerText")
    assert "nimbus-llm" in body
    assert "HTTPBearer" in body and "APIKeyHeader" in body
    # ReDoc's own footer logo is the one thing it asks a CDN for; refused, it hides the image.
    assert refused in ([], [REDOC_LOGO])
    assert tab.locator("img[alt='redocly logo']").count() == 0
    assert [e for e in console.errors if "ERR_FAILED" not in e] == []
