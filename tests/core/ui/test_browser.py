"""The chat page in headless Chromium against nimbus on the bundled model over loopback HTTP:
server mode streams, stop cancels, errors read as words, and the in-browser (WebAssembly)
mode answers with every inference route blocked."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer, live_server, model_settings
from tests.core.ui.conftest import Console

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KEY = "chat-page-test-key-0123456789"
MAX_PROMPT_CHARS = 4000
INFERENCE_ROUTES = ("/v1/chat/completions", "/v1/completions", "/api/generate")
ENDED = (
    "() => ['done', 'stopped', 'error'].includes(document.getElementById('stats').dataset.state)"
)
LOADED = (
    "() => ['ready', 'error'].includes(document.getElementById('browser-status').dataset.state)"
)


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    settings = model_settings(
        security={"auth": {"mode": "on", "keys": KEY}},
        ui={"serve_model_file": True},
        limits={"max_prompt_chars": MAX_PROMPT_CHARS},
    )
    with live_server(settings) as srv:
        yield srv


def open_chat(page: Any, server: LiveServer, *, key: str | None = KEY) -> Any:
    response = page.goto(server.base_url + "/")
    page.wait_for_function("() => document.body.dataset.ready === 'true'")
    if key is not None:
        page.fill("#api-key", key)
    return response


def send(page: Any, text: str, *, max_tokens: int = 24, temperature: float = 0.0) -> None:
    page.fill("#temperature", str(temperature))
    page.fill("#max-tokens", str(max_tokens))
    page.fill("#prompt", text)
    page.click("#send")


def stats(page: Any) -> dict[str, str]:
    return dict(page.eval_on_selector("#stats", "el => ({...el.dataset})"))


def count_text_updates(page: Any) -> None:
    """Counts changes to the reply text as they happen (streaming shows tokens one by one)."""
    page.evaluate(
        """() => {
        window.textUpdates = 0;
        new MutationObserver((records) => { window.textUpdates += records.length; })
          .observe(document.getElementById('log'), {characterData: true, subtree: true});
    }"""
    )


def test_page_loads_isolated_with_no_console_errors(
    page: tuple[Any, Console], server: LiveServer
) -> None:
    tab, console = page
    response = open_chat(tab, server, key=None)
    assert tab.url == server.base_url + "/chat"
    headers = response.all_headers()
    assert headers["cross-origin-opener-policy"] == "same-origin"
    assert headers["cross-origin-embedder-policy"] == "require-corp"
    assert "script-src 'self' 'wasm-unsafe-eval'" in headers["content-security-policy"]
    assert tab.evaluate("crossOriginIsolated") is True
    tab.wait_for_function(
        "() => document.getElementById('model-name').textContent.includes('ready')"
    )
    assert tab.text_content("#model-name") == f"{server.engine.model_id} (ready)"
    assert console.errors == []


def test_a_prompt_streams_tokens_from_the_real_model(
    page: tuple[Any, Console], server: LiveServer
) -> None:
    tab, console = page
    open_chat(tab, server)
    count_text_updates(tab)
    send(tab, "Name three colours.", max_tokens=24)
    tab.wait_for_function(ENDED, timeout=120_000)
    figures = stats(tab)
    assert figures["state"] == "done", tab.text_content("#error")
    assert figures["mode"] == f"server ({server.engine.model_id})"
    tokens = int(figures["tokens"])
    assert 1 < tokens <= 24
    assert float(figures["tokPerS"]) > 0 and float(figures["ttftMs"]) > 0
    assert tab.evaluate("window.textUpdates") >= min(tokens, 5)  # text arrived piece by piece
    reply = tab.locator(".msg.assistant .text").last.text_content()
    assert reply.strip()
    assert "tok/s" in tab.locator(".msg.assistant .meta").last.text_content()
    # The conversation is kept in the browser and comes back after a reload.
    tab.reload()
    tab.wait_for_function("() => document.body.dataset.ready === 'true'")
    assert tab.locator(".msg.assistant .text").last.text_content() == reply
    assert tab.input_value("#api-key") == KEY  # kept for this tab's session
    assert console.errors == []


def test_model_output_is_rendered_as_text_not_html(
    page: tuple[Any, Console], server: LiveServer
) -> None:
    tab, _ = page
    open_chat(tab, server)
    send(tab, 'Repeat exactly: <img src=x onerror="window.pwned=1"><b>bold</b>', max_tokens=40)
    tab.wait_for_function(ENDED, timeout=120_000)
    assert tab.locator("#log img, #log b").count() == 0
    assert tab.evaluate("window.pwned") is None
    assert "<img" in tab.locator(".msg.user .text").last.text_content()


def test_stop_ends_the_stream_and_the_server_frees_the_slot(
    page: tuple[Any, Console], server: LiveServer
) -> None:
    tab, _ = page
    open_chat(tab, server)
    send(
        tab, "Write a very long story about a lighthouse keeper, in many chapters.", max_tokens=1500
    )
    tab.wait_for_function(
        "() => Number(document.getElementById('stats').dataset.tokens) >= 5", timeout=120_000
    )
    assert _active(server) == 1
    tab.click("#stop")
    tab.wait_for_function(ENDED, timeout=10_000)
    assert stats(tab)["state"] == "stopped"
    assert int(stats(tab)["tokens"]) < 1500
    deadline = time.monotonic() + 5
    while _active(server) != 0:
        assert time.monotonic() < deadline, "the generation kept its slot after the stop"
        time.sleep(0.05)
    assert tab.is_enabled("#send") and not tab.is_enabled("#stop")


def _active(server: LiveServer) -> int:
    health = httpx.get(server.base_url + "/api/health", timeout=10).json()
    return int(health["queue"]["active"])


def test_a_wrong_key_shows_the_error(page: tuple[Any, Console], server: LiveServer) -> None:
    tab, _ = page
    open_chat(tab, server, key="not-the-key-0123456789")
    send(tab, "Hello")
    tab.wait_for_function(ENDED, timeout=30_000)
    assert stats(tab)["state"] == "error"
    error = tab.text_content("#error")
    assert tab.is_visible("#error")
    assert "needs a valid API key" in error and "invalid or missing API key" in error


def test_a_too_long_message_shows_the_413_in_words(
    page: tuple[Any, Console], server: LiveServer
) -> None:
    tab, _ = page
    open_chat(tab, server)
    send(tab, "x" * (MAX_PROMPT_CHARS + 1))
    tab.wait_for_function(ENDED, timeout=30_000)
    assert "Too long for this server" in tab.text_content("#error")


@pytest.mark.parametrize(
    ("status", "code", "words"),
    [
        (429, "rate_limit_exceeded", "Rate limit reached"),
        (503, "engine_overloaded", "The server is busy or still loading the model"),
    ],
)
def test_429_and_503_show_words_and_retry_after(
    page: tuple[Any, Console], server: LiveServer, status: int, code: str, words: str
) -> None:
    # The server's exact answer shape, replayed: these states are hard to reach on demand.
    tab, _ = page
    body = f'{{"error": {{"message": "slow down", "type": "x", "code": "{code}", "param": null}}}}'
    tab.route(
        "**/v1/chat/completions",
        lambda route: route.fulfill(
            status=status,
            body=body,
            headers={"Retry-After": "7", "Content-Type": "application/json"},
        ),
    )
    open_chat(tab, server)
    send(tab, "Hello")
    tab.wait_for_function(ENDED, timeout=30_000)
    error = tab.text_content("#error")
    assert words in error and "Try again in 7 s." in error and "slow down" in error


def test_browser_mode_answers_with_the_inference_routes_blocked(
    page: tuple[Any, Console], server: LiveServer
) -> None:
    tab, console = page
    attempted: list[str] = []
    model_requests: list[str] = []

    def block(route: Any) -> None:
        attempted.append(route.request.url)
        route.abort()

    for path in INFERENCE_ROUTES:
        tab.route(f"**{path}", block)
    tab.on(
        "request", lambda r: model_requests.append(r.method) if "/api/model/file" in r.url else None
    )
    open_chat(tab, server)
    tab.check("input[value=browser]")
    tab.wait_for_function(LOADED, timeout=240_000)
    assert tab.text_content("#error") == "", tab.text_content("#error")
    assert "downloaded" in tab.text_content("#browser-status")
    # One HEAD, then the file in 4 MiB Range pieces.
    size = server.engine.model_path.stat().st_size
    assert model_requests == ["HEAD"] + ["GET"] * -(-size // (4 << 20))
    count_text_updates(tab)
    send(tab, "Name three colours.", max_tokens=24)
    tab.wait_for_function(ENDED, timeout=240_000)
    figures = stats(tab)
    assert figures["state"] == "done", tab.text_content("#error")
    assert figures["mode"].startswith("in-browser (WebAssembly")
    assert 1 < int(figures["tokens"]) <= 24 and float(figures["tokPerS"]) > 0
    assert tab.evaluate("window.textUpdates") >= 2
    assert tab.locator(".msg.assistant .text").last.text_content().strip()
    assert attempted == []  # nothing even tried the server's inference routes
    assert console.errors == []
    # The next visit uses the kept copy: only a HEAD that answers 304.
    model_requests.clear()
    tab.reload()
    tab.wait_for_function(LOADED, timeout=240_000)
    assert "kept copy" in tab.text_content("#browser-status")
    assert model_requests == ["HEAD"]
