"""The page's own modules run in Chromium on edge cases the real server rarely produces: an SSE
stream cut at every possible byte, CRLF framing, and each API error in words."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from core.app import create_app
from core.settings import Settings
from tests.conftest import free_port, start_server
from tests.core.ui.conftest import Console
from tests.support.fakes import FakeEngine

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    port = free_port()
    server, thread = start_server(create_app(Settings(), FakeEngine()), port)  # type: ignore[arg-type]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def test_sse_parser_survives_any_chunking(page: tuple[Any, Console], base_url: str) -> None:
    tab, console = page
    tab.goto(base_url + "/chat")
    result = tab.evaluate(
        """async () => {
        const { sseData } = await import('./ui/sse.js');
        const text = 'data: {"a":1}\\r\\n\\r\\n: a comment\\n\\ndata: two\\ndata: lines\\n\\n'
          + 'data: ünïcode ✓\\n\\ndata: [DONE]\\n\\n';
        const bytes = new TextEncoder().encode(text);
        const seen = new Set();
        for (let cut = 1; cut < bytes.length; cut++) {
          const body = new ReadableStream({ start(c) {
            c.enqueue(bytes.slice(0, cut)); c.enqueue(bytes.slice(cut)); c.close();
          }});
          const out = [];
          for await (const data of sseData(body)) out.push(data);
          seen.add(JSON.stringify(out));
        }
        return [...seen];
    }"""
    )
    assert result == ['["{\\"a\\":1}","two\\nlines","ünïcode ✓","[DONE]"]']
    assert console.errors == []


@pytest.mark.parametrize(
    ("status", "retry_after", "expected"),
    [
        (401, None, "The server needs a valid API key: enter it under Settings (boom)."),
        (
            413,
            None,
            "Too long for this server: shorten the message or clear the conversation (boom).",
        ),
        (429, "3", "Rate limit reached (boom). Try again in 3 s."),
        (503, None, "The server is busy or still loading the model (boom). Try again shortly."),
        (400, None, "The server refused the request (boom)."),
        (500, None, "The server failed (boom)."),
    ],
)
def test_errors_in_words(
    page: tuple[Any, Console], base_url: str, status: int, retry_after: str | None, expected: str
) -> None:
    tab, _ = page
    tab.goto(base_url + "/chat")
    text = tab.evaluate(
        """async ([status, retryAfter]) => {
        const { apiError, describeError } = await import('./ui/errors.js');
        const headers = { 'Content-Type': 'application/json' };
        if (retryAfter) headers['Retry-After'] = retryAfter;
        const body = JSON.stringify({ error: { message: 'boom', type: 't', code: 'c', param: null } });
        return describeError(await apiError(new Response(body, { status, headers })));
    }""",
        [status, retry_after],
    )
    assert text == expected
