"""create_app(settings, engine): wires routes, middleware and error handling. No logic here."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from core import __version__
from core.api.errors import install_error_handlers
from core.api.routes import native, openai
from core.api.service import CompletionObserver, GenerationService
from core.engine.base import Engine
from core.http.admission import AdmissionGate, AdmissionMiddleware
from core.http.body import BodyMiddleware
from core.security import install_security
from core.settings import Settings


def create_app(
    settings: Settings, engine: Engine, *, observer: CompletionObserver | None = None
) -> FastAPI:
    """``observer`` (optional) is called with every finished Completion (adapters' metrics)."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        engine.close()

    app = FastAPI(
        title="nimbus-llm",
        version=__version__,
        description="Self-hosted LLM inference: the seed /api contract and OpenAI-compatible /v1.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.service = GenerationService(engine, settings.limits, observer=observer)
    install_error_handlers(app)
    app.include_router(native.router)
    app.include_router(openai.router)
    app.add_middleware(
        BodyMiddleware,
        max_bytes=settings.limits.max_body_bytes,
        max_json_depth=settings.security.max_json_depth,
        timeout_s=settings.limits.body_timeout_s,
    )
    # Outside the body middleware: a full engine is refused before the body is read.
    app.state.admission = AdmissionGate(
        settings.engine.slots + settings.limits.max_queue,
        wait_s=settings.limits.admission_wait_ms / 1000,
        retry_after=lambda: engine.stats().retry_after_s,
    )
    app.add_middleware(AdmissionMiddleware, gate=app.state.admission)
    install_security(app, settings)  # last: its CORS layer must be outermost
    return app
