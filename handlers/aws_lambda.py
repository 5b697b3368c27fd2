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
Logs are JSON (Powertools Logger, the API request id as correlation id, no prompt text unless
``NIMBUS_AWS_LAMBDA__LOG_PROMPTS``); metrics go to CloudWatch as EMF lines on stdout.
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
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.api.deps import DEADLINE_SCOPE_KEY
from core.app import create_app
from core.engine.llama import LlamaEngine
from core.engine.types import Completion
from core.security import adapter_defaults
from core.settings import Settings, load_settings

_INIT_STARTED = time.perf_counter()
SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "nimbus")
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "nimbus")
LOG_TEXT_LIMIT = 4096  # characters of prompt/completion text per log line when enabled

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)


class InvocationRecord:
    """What the current request produced; the engine's Completion arrives through the app's
    observer hook. Lambda sends one request at a time to an execution environment."""

    def __init__(self) -> None:
        self.completion: Completion | None = None

    def reset(self) -> None:
        self.completion = None

    def __call__(self, completion: Completion) -> None:
        self.completion = completion
        metrics.add_metric("PromptTokens", MetricUnit.Count, completion.prompt_tokens)
        metrics.add_metric("CompletionTokens", MetricUnit.Count, completion.completion_tokens)
        if completion.time_to_first_token_s is not None:
            ttft_ms = completion.time_to_first_token_s * 1000
            metrics.add_metric("TimeToFirstToken", MetricUnit.Milliseconds, ttft_ms)
        if completion.completion_tokens:
            metrics.add_metric(
                "TokensPerSecond", MetricUnit.CountPerSecond, completion.tokens_per_second
            )

    def log_fields(self, log_text: bool) -> dict[str, Any]:
        c = self.completion
        if c is None:
            return {}
        fields: dict[str, Any] = {
            "prompt_tokens": c.prompt_tokens,
            "completion_tokens": c.completion_tokens,
            "finish_reason": c.finish_reason,
            "time_to_first_token_ms": (
                round(c.time_to_first_token_s * 1000, 1) if c.time_to_first_token_s else None
            ),
            "tokens_per_second": round(c.tokens_per_second, 2),
        }
        if log_text:
            fields["completion_text"] = c.text[:LOG_TEXT_LIMIT]
        return fields


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


class RequestLog:
    """One JSON log line and the latency metric per request, in both modes (Mangum and the Web
    Adapter): method, path, status, latency and what the engine produced; request and completion
    text only when ``log_prompts`` is on. The correlation id (the function URL / API Gateway
    request id) goes back to the caller as ``x-request-id``."""

    def __init__(self, inner: ASGIApp, *, log_prompts: bool, flush_metrics: bool) -> None:
        self.inner = inner
        self.log_prompts = log_prompts
        # Behind the Web Adapter no Powertools decorator wraps an invocation: this middleware
        # sets the correlation id, counts the cold start and flushes the EMF metrics itself.
        self.web_adapter = flush_metrics
        self._cold = True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.inner(scope, receive, send)
            return
        started = time.perf_counter()
        if self.web_adapter:
            logger.set_correlation_id(_web_adapter_request_id(scope))
        request_id = logger.get_correlation_id()
        record.reset()
        status: list[int] = []
        body = bytearray()

        async def receive_logged() -> Message:
            message = await receive()
            if self.log_prompts and message["type"] == "http.request":
                body.extend(message.get("body", b"")[: LOG_TEXT_LIMIT - len(body)])
            return message

        async def send_logged(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(int(message["status"]))
                if request_id:
                    headers = list(message.get("headers", []))
                    headers.append((b"x-request-id", str(request_id).encode("latin-1")))
                    message["headers"] = headers
            await send(message)

        try:
            await self.inner(scope, receive_logged, send_logged)
        finally:
            latency_ms = (time.perf_counter() - started) * 1000
            if self.web_adapter and self._cold:
                self._cold = False
                metrics.add_metric("ColdStart", MetricUnit.Count, 1)
            metrics.add_metric("Latency", MetricUnit.Milliseconds, latency_ms)
            fields: dict[str, Any] = {
                "method": scope.get("method"),
                "path": scope.get("path"),
                "status": status[0] if status else None,
                "latency_ms": round(latency_ms, 1),
                **record.log_fields(self.log_prompts),
            }
            if self.log_prompts:
                fields["request_body"] = body.decode("utf-8", errors="replace")
            logger.info("request", extra=fields)
            if self.web_adapter:
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
settings = adapter_defaults(load_settings())
engine = build_engine(settings)
record = InvocationRecord()
app = LambdaDeadline(
    create_app(settings, engine, observer=record),
    margin_s=settings.aws_lambda.deadline_margin_ms / 1000,
)
_log_prompts = settings.aws_lambda.log_prompts
# lifespan off: it would run (and close the engine) on every invocation.
asgi_handler = Mangum(
    RequestLog(app, log_prompts=_log_prompts, flush_metrics=False), lifespan="off"
)
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
web_app = RequestLog(app, log_prompts=_log_prompts, flush_metrics=True)
