"""The per-app security object and the per-request view the routes use.

``Security`` is built once per app from settings (app.state.security). The FastAPI dependency
``request_security`` authenticates the caller, applies the rate limit and hands the route a
``RequestSecurity`` that sanitizes prompt text, redacts output and charges tokens.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from typing import Any, cast

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPBearer

from core.engine.stream import GenerationStream
from core.errors import AuthenticationError, RateLimitedError
from core.http.headers import response_headers
from core.http.observe import note_facts
from core.security.keys import KeyRing, require_configured
from core.security.output import OutputFilter
from core.security.prompt import PromptGuard, PromptReport
from core.security.ratelimit import MemoryRateLimiter, NoRateLimit, RateLimiter
from core.settings import Settings

log = logging.getLogger("nimbus.security")

WARNINGS_HEADER = "X-Nimbus-Prompt-Warnings"
REDACTIONS_HEADER = "X-Nimbus-Redactions"
_MAX_HEADER_CHARS = 1024


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def auth_required(settings: Settings) -> bool:
    """'on' -> yes, 'off' -> no, 'auto' -> yes unless the server binds a loopback address."""
    mode = settings.security.auth.mode
    if mode == "auto":
        return not is_loopback(settings.server.host)
    return mode == "on"


def adapter_defaults(settings: Settings) -> Settings:
    """Settings as a platform adapter (Lambda, Modal) should use them: API keys are required
    unless the operator set ``NIMBUS_SECURITY__AUTH__MODE=off`` explicitly."""
    auth = settings.security.auth
    if auth.mode != "auto":
        return settings
    security = settings.security.model_copy(update={"auth": auth.model_copy(update={"mode": "on"})})
    return settings.model_copy(update={"security": security})


def build_limiter(settings: Settings) -> RateLimiter:
    rl = settings.security.rate_limit
    if not rl.enabled:
        return NoRateLimit()
    if rl.backend == "dynamodb":
        from core.security.dynamo import DynamoRateLimiter

        return DynamoRateLimiter(rl)
    return MemoryRateLimiter(rl)


class Security:
    def __init__(
        self, settings: Settings, *, limiter: RateLimiter | None = None, trusted: bool = False
    ) -> None:
        """``trusted``: for callers their platform already authenticated (a Modal method, the
        CLI): prompt checks and output redaction as configured, no API key, no rate limit."""
        self.auth_required = auth_required(settings) and not trusted
        self.keys = KeyRing(settings.security.auth)
        if self.auth_required:
            require_configured(self.keys)
        self.rate_limited = settings.security.rate_limit.enabled and not trusted
        if limiter is None:
            limiter = NoRateLimit() if trusted else build_limiter(settings)
        self.limiter = limiter
        self.prompt = PromptGuard(settings.security.prompt, settings.limits.max_prompt_chars)
        self.output = OutputFilter(settings.security.output)
        self._background: set[asyncio.Task[None]] = set()

    async def identify(self, request: Request) -> str:
        """The rate-limit identity: 'key:<key id>' when auth is on, else 'ip:<address>'."""
        if not self.auth_required:
            return f"ip:{request.client.host if request.client else 'unknown'}"
        presented = presented_key(request)
        kid = await self.keys.match(presented) if presented else None
        if kid is None:
            # Same answer for a missing, malformed or unknown key: no hint which part was wrong.
            log.info("rejected a request without a valid API key")
            raise AuthenticationError(
                "invalid or missing API key", headers={"WWW-Authenticate": "Bearer"}
            )
        return f"key:{kid}"

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run bookkeeping that must not be lost when a streaming response is cancelled."""
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def presented_key(request: Request) -> str | None:
    auth = request.headers.get("authorization")
    if auth:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer":
            return None
        return token.strip() or None
    return request.headers.get("x-api-key") or None


@dataclass
class RequestSecurity:
    """Security for one request: prompt report, redaction count, token charging."""

    security: Security
    client: str
    report: PromptReport = field(default_factory=PromptReport)
    redactions: int = 0
    _headers: dict[str, str] = field(default_factory=dict)

    def text(self, text: str, param: str) -> str:
        return self.security.prompt.check(text, param, self.report)

    def filter(self, text: str) -> str:
        """Redact a whole response text; the count goes out in X-Nimbus-Redactions."""
        filtered, count = self.security.output.filter(text)
        self.redactions += count
        self._headers[REDACTIONS_HEADER] = str(self.redactions)
        return filtered

    async def stream_text(self, stream: GenerationStream) -> AsyncIterator[str]:
        """The stream's text deltas with output redaction; tokens are charged at the end, or
        when the client goes away (prompt + the deltas seen so far)."""
        redactor = self.security.output.stream()
        deltas = 0
        try:
            async for text in stream:
                deltas += 1
                if safe := redactor.feed(text):
                    yield safe
            if rest := redactor.flush():
                yield rest
        finally:
            self.redactions += redactor.redactions
            result = stream.result
            used = (
                result.prompt_tokens + result.completion_tokens
                if result is not None
                else stream.prompt_tokens + deltas
            )
            self.security.spawn(self.security.limiter.charge(self.client, used))

    async def charge(self, prompt_tokens: int, completion_tokens: int) -> None:
        await self.security.limiter.charge(self.client, prompt_tokens + completion_tokens)

    @property
    def warnings(self) -> list[str]:
        return self.report.warnings

    def finish_prompt(self) -> None:
        """Log prompt warnings and publish them as a response header."""
        if self.warnings:
            log.warning("prompt warnings for %s: %s", self.client, "; ".join(self.warnings))
            self._headers[WARNINGS_HEADER] = header_safe("; ".join(self.warnings))

    def body_fields(self) -> dict[str, Any]:
        """Extra response fields, present only when there is something to report."""
        info: dict[str, Any] = {}
        if self.warnings:
            info["prompt_warnings"] = list(self.warnings)
        if self.redactions:
            info["redactions"] = self.redactions
        return info


def header_safe(value: str) -> str:
    """Printable ASCII only (header values cannot carry control characters or raw UTF-8)."""
    cleaned = "".join(ch if " " <= ch <= "~" else "?" for ch in value)
    return cleaned[:_MAX_HEADER_CHARS]


# Declared for the OpenAPI schema (/docs "Authorize"); the headers are read by presented_key.
_BEARER = Depends(HTTPBearer(auto_error=False, description="API key as a bearer token"))
_API_KEY = Depends(APIKeyHeader(name="x-api-key", auto_error=False, description="API key"))


async def request_security(
    request: Request, _bearer: object = _BEARER, _api_key: object = _API_KEY
) -> RequestSecurity:
    """FastAPI dependency: 401 without a valid key, 429 over the limit (with Retry-After)."""
    security = cast(Security, request.app.state.security)
    client = await security.identify(request)
    headers = response_headers(request.scope)
    if security.rate_limited:
        decision = await security.limiter.hit(client)
        headers.update(decision.headers())
        if not decision.allowed:
            raise RateLimitedError(
                f"rate limit exceeded; retry in {decision.headers()['Retry-After']} s",
                headers=decision.headers(),
            )
    sec = RequestSecurity(security, client, _headers=headers)
    note_facts(request.scope, sec)  # client and redactions for the request's log and metrics
    return sec
