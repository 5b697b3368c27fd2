"""Headless Chromium (Debian's package; `make test` installs it) driven by Playwright."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.support.browser import CHROMIUM, CHROMIUM_ARGS


# Module scope, not session: Playwright's sync API keeps an event loop running in this thread
# while it is open, and async tests in later modules need the thread to themselves.
@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: `make browser` installs Debian's chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@dataclass
class Console:
    """Everything a page reported: console messages, uncaught errors, failed requests."""

    messages: list[tuple[str, str]] = field(default_factory=list)

    @property
    def errors(self) -> list[str]:
        return [text for kind, text in self.messages if kind in ("error", "pageerror")]


@pytest.fixture()
def page(chromium: Any) -> Iterator[tuple[Any, Console]]:
    context = chromium.new_context(viewport={"width": 1100, "height": 720})
    page = context.new_page()
    console = Console()
    page.on("console", lambda m: console.messages.append((m.type, m.text)))
    page.on("pageerror", lambda e: console.messages.append(("pageerror", str(e))))
    try:
        yield page, console
    finally:
        context.close()
