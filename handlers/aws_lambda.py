"""AWS Lambda adapter: the shared app behind Mangum (buffered) or uvicorn (Lambda Web Adapter).

Everything heavy happens once per execution environment, at import (Lambda's init phase): the
settings are read, the model is resolved (baked into the image, or fetched from S3 into /tmp) and
loaded, and the app is built. Warm invocations reuse all of it.

- Buffered (function URL BUFFERED, API Gateway HTTP API v2 and REST v1): ``handler`` is the Lambda
  handler (``CMD ["handlers.aws_lambda.handler"]``); Mangum turns the event into one ASGI request.
- Streaming (function URL RESPONSE_STREAM): the Lambda Web Adapter extension forwards the request
  to ``uvicorn handlers.aws_lambda:web_app``, which serves the same app.

Both honour the invocation deadline: generation ends ``deadline_margin_ms`` before Lambda's
timeout, with finish_reason "length", instead of the function being killed mid-response.
API keys are required by default (core.security.adapter_defaults), read from
NIMBUS_SECURITY__AUTH__KEYS or a Secrets Manager secret; rate limits can live in DynamoDB.
Logs are JSON (Powertools Logger, the API request id as correlation id): the app's request log
line (core.metrics.requestlog, always on here; no prompt text unless NIMBUS_REQUEST_LOG__PROMPTS
or NIMBUS_AWS_LAMBDA__LOG_PROMPTS). Metrics are the app's own (core.metrics.catalog: the same
names and units as /metrics) written as CloudWatch EMF lines on stdout by Powertools.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from mangum import Mangum
from starlette.types import ASGIApp, Receive, Scope, Send

from core.api.deps import DEADLINE_SCOPE_KEY
from core.app import create_app
from core.engine.llama import LlamaEngine
from core.http.observe import REQUEST_ID_KEY
from core.metrics import catalog
from core.metrics.emf import EmfRecorder
from core.security import adapter_defaults
from core.settings import Settings, load_settings

_INIT_STARTED = time.perf_counter()
SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "nimbus")
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "nimbus")

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
emf = EmfRecorder(metrics, namespace=NAMESPACE, service=SERVICE)


def lambda_defaults(settings: Settings) -> Settings:
    """Settings as this adapter runs them: API keys on unless switched off explicitly, and the
    request log always on (its lines are the function's request log in CloudWatch Logs)."""
    settings = adapter_defaults(settings)
    log = settings.request_log.model_copy(
        update={
            "enabled": True,
            "prompts": settings.request_log.prompts or settings.aws_lambda.log_prompts,
        }
    )
    return settings.model_copy(update={"request_log": log})


def log_request(fields: dict[str, Any]) -> None:
    """The request log's sink: a Powertools line, with the invocation's correlation id."""
    logger.info("request", extra=fields)


def remaining_seconds(scope: Scope) -> float | None:
    """Time left in this invocation: from the Lambda context (Mangum puts it in the scope) or
    from the Lambda Web Adapter's ``x-amzn-lambda-context`` header (epoch-ms ``deadline``)."""
    context = scope.get("aws.context")
    if context is not None and hasattr(context, "get_remaining_time_in_millis"):
        return float(context.get_remaining_time_in_millis()) / 1000
    raw = _header(scope, b"x-amzn-lambda-context")
    if raw is None:
        return None
    try:
        data = json.loads(raw)
        deadline_ms = float(data.get("deadline") or data.get("deadline_ms"))
    except (ValueError, TypeError, AttributeError):
        return None
    return deadline_ms / 1000 - time.time()


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


class LambdaDeadline:
    """Sets the ASGI scope's "nimbus.deadline" (time.monotonic()) to the invocation's end minus
    a safety margin, so the engine stops in time and the response still gets out."""

    def __init__(self, app: ASGIApp, margin_s: float) -> None:
        self.app = app
        self.margin_s = margin_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            remaining = remaining_seconds(scope)
            if remaining is not None:
                scope[DEADLINE_SCOPE_KEY] = time.monotonic() + max(0.0, remaining - self.margin_s)
        await self.app(scope, receive, send)


def build_engine(settings: Settings) -> LlamaEngine:
    started = time.perf_counter()
    engine = LlamaEngine(settings)
    path = engine.resolve()  # S3: downloaded into the cache dir (/tmp) here, once per environment
    resolved = time.perf_counter()
    engine.load()
    logger.info(
        "model loaded",
        extra={
            "model": engine.model_id,
            "model_source": settings.model,
            "model_path": str(path),
            "resolve_ms": round((resolved - started) * 1000, 1),
            "load_ms": round((time.perf_counter() - resolved) * 1000, 1),
            "n_threads": settings.engine.n_threads,
        },
    )
    return engine


class Invocation:
    """Per invocation, in both modes (Mangum and the Web Adapter): the correlation id (the
    function URL / API Gateway request id) becomes the request's id, so the app's request log
    line carries it and the caller gets it back as ``x-request-id``. The app itself counts,
    times and logs the request (core.http.observe)."""

    def __init__(self, inner: ASGIApp, *, web_adapter: bool) -> None:
        self.inner = inner
        # Behind the Web Adapter no Powertools decorator wraps an invocation: this middleware
        # sets the correlation id, counts the cold start and flushes the EMF metrics itself.
        self.web_adapter = web_adapter
        self._cold = True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.inner(scope, receive, send)
            return
        if self.web_adapter:
            logger.set_correlation_id(_web_adapter_request_id(scope))
        request_id = logger.get_correlation_id()
        if request_id:
            scope[REQUEST_ID_KEY] = str(request_id)
        try:
            await self.inner(scope, receive, send)
        finally:
            if self.web_adapter:
                if self._cold:
                    self._cold = False
                    metrics.add_metric("ColdStart", MetricUnit.Count, 1)
                metrics.flush_metrics()


def _web_adapter_request_id(scope: Scope) -> str | None:
    raw = _header(scope, b"x-amzn-request-context")
    if raw:
        try:
            value = json.loads(raw).get("requestId")
            return str(value) if value else None
        except (ValueError, AttributeError):
            return None
    return None


# -- once per execution environment (Lambda init) --------------------------------------------
# API keys are on unless the operator sets NIMBUS_SECURITY__AUTH__MODE=off: a function URL is
# reachable from the internet (AuthType NONE) or from anyone the account lets invoke it.
settings = lambda_defaults(load_settings())
engine = build_engine(settings)
load_seconds = engine.stats().load_seconds
if load_seconds is not None:  # goes out with the first invocation's metrics (the cold start)
    emf.record(catalog.MODEL_LOAD, load_seconds, {})
app = LambdaDeadline(
    create_app(settings, engine, recorders=[emf], log_sink=log_request),
    margin_s=settings.aws_lambda.deadline_margin_ms / 1000,
)
# lifespan off: it would run (and close the engine) on every invocation.
asgi_handler = Mangum(Invocation(app, web_adapter=False), lifespan="off")
logger.info("init done", extra={"init_ms": round((time.perf_counter() - _INIT_STARTED) * 1000, 1)})


def _wrap(fn: Callable[[dict[str, Any], Any], dict[str, Any]]) -> Callable[..., Any]:
    wrapped: Callable[..., Any] = metrics.log_metrics(fn, capture_cold_start_metric=True)
    if settings.aws_lambda.tracing:
        from aws_lambda_powertools import Tracer

        wrapped = Tracer(service=SERVICE).capture_lambda_handler(wrapped)
    # The correlation id is the function URL / API Gateway request id (requestContext.requestId).
    return logger.inject_lambda_context(
        wrapped, correlation_id_path=correlation_paths.LAMBDA_FUNCTION_URL, clear_state=True
    )


def _handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
    response: dict[str, Any] = asgi_handler(event, context)
    return response


# The buffered handler (``CMD ["handlers.aws_lambda.handler"]``).
handler = _wrap(_handle)
# What uvicorn serves behind the Lambda Web Adapter (the streaming image).
web_app = Invocation(app, web_adapter=True)
