"""Debian's chromium as the browser tests and the chat-page benchmark launch it."""

from __future__ import annotations

import os

CHROMIUM = os.environ.get("NIMBUS_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
