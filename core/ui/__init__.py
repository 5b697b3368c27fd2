"""The browser side of the app: the chat page with its in-browser (WebAssembly) mode, and the
route that hands the page the model file. ``install_ui`` wires both into an app."""

from __future__ import annotations

from fastapi import FastAPI

from core.engine.base import Engine
from core.settings import Settings


def install_ui(app: FastAPI, settings: Settings, engine: Engine) -> None:
    from core.ui import model_file, pages

    app.include_router(model_file.build_router(engine, settings.ui))
    if settings.ui.enabled:
        app.include_router(pages.build_router())
