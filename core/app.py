"""create_app(settings, engine): wires routes, middleware and error handling. No logic here."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import cast

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from core import __version__
from core.api.errors import install_error_handlers
from core.api.routes import embeddings, metrics, native, openai, tokenize
from core.api.service import CompletionObserver, GenerationService, model_aliases
from core.engine.base import Engine
from core.engine.types import Completion
from core.http.admission import AdmissionGate, AdmissionMiddleware
from core.http.body import BodyMiddleware
from core.http.observe import ObserveMiddleware
from core.metrics.recorder import Recorder
from core.metrics.requestlog import JsonLines, LogSink, RequestLog
from core.metrics.telemetry import Telemetry
from core.security import Security, install_security
from core.settings import Settings
from core.ui import install_ui


def create_app(
    settings: Settings,
    engine: Engine,
    *,
    observer: CompletionObserver | None = None,
    recorders: Sequence[Recorder] = (),
    log_sink: LogSink | None = None,
) -> FastAPI:
    """``observer`` (optional) is called with every finished Completion. ``recorders`` receive
    the metrics (a platform's own, e.g. Lambda's EMF; Prometheus is added when /metrics is on);
    ``log_sink`` takes the request log lines when the request log is on (default: stdout)."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        engine.close()

    # /docs and /redoc with Swagger UI and ReDoc from the package, not a CDN.
    app = FastAPIOffline(
        title="nimbus-llm",
        version=__version__,
        description="Self-hosted LLM inference: the seed /api contract and OpenAI-compatible /v1.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    sinks = list(recorders)
    if settings.metrics.enabled:
        from core.metrics.prometheus import PrometheusRecorder  # prometheus-client: only if on

        app.state.prometheus = PrometheusRecorder()
        sinks.append(app.state.prometheus)
    telemetry = Telemetry(sinks, stats=engine.stats)
    if settings.metrics.enabled:
        app.state.prometheus.read_on_scrape(telemetry.samples)
    app.state.telemetry = telemetry
    aliases, embedding_aliases = model_aliases(settings)
    app.state.service = GenerationService(
        engine,
        settings.limits,
        observer=_both(telemetry.completion, observer),
        aliases=aliases,
        embedding_aliases=embedding_aliases,
    )
    install_error_handlers(app)
    routers = [native.router, tokenize.router, openai.router]
    if settings.embeddings.enabled:
        routers.append(embeddings.router)
    if settings.metrics.enabled:
        routers.append(metrics.router(settings.metrics))
    for router in routers:
        app.include_router(router)
    install_ui(app, settings, engine)
    app.add_middleware(
        BodyMiddleware,
        max_bytes=settings.limits.max_body_bytes,
        max_json_depth=settings.security.max_json_depth,
        timeout_s=settings.limits.body_timeout_s,
    )
    # Outside the body middleware: a full engine is refused before the body is read.
    limits = settings.limits
    app.state.admission = AdmissionGate(
        settings.engine.slots + limits.max_queue,
        wait_s=limits.admission_wait_ms / 1000,
        retry_after=lambda: engine.stats().retry_after_s,
        overload_capacity=settings.engine.slots + min(limits.overload_queue, limits.max_queue),
        overload_hold_s=limits.overload_hold_ms / 1000,
    )
    app.add_middleware(AdmissionMiddleware, gate=app.state.admission)
    install_security(app, settings)  # its CORS layer must be outside every layer that answers
    output = cast(Security, app.state.security).output
    request_log = None
    if settings.request_log.enabled:
        request_log = RequestLog(
            log_sink or JsonLines(),
            model=lambda: engine.model_id,
            prompts=settings.request_log.prompts,
            text_limit=settings.request_log.text_limit,
            redact=lambda text: output.filter(text)[0],
        )
    # Outermost: it times and counts every answer, CORS preflights and 413s included.
    app.add_middleware(
        ObserveMiddleware,
        telemetry=telemetry,
        routes=[
            path
            for r in [*app.routes, *(r for router in routers for r in router.routes)]
            if isinstance(path := getattr(r, "path", None), str)
        ],
        request_log=request_log,
    )
    return app


def _both(first: CompletionObserver, second: CompletionObserver | None) -> CompletionObserver:
    if second is None:
        return first

    def both(completion: Completion) -> None:
        first(completion)
        second(completion)

    return both
