"""Protection layer: API keys, rate limits, prompt checks, output redaction, CORS.

Platform adapters call ``adapter_defaults(settings)`` before ``create_app`` so API keys are on
by default there; ``nimbus serve`` on a loopback address runs without them."""

from __future__ import annotations

from core.security.guard import (
    RequestSecurity,
    Security,
    adapter_defaults,
    auth_required,
    request_security,
)
from core.security.middleware import install_security

__all__ = [
    "RequestSecurity",
    "Security",
    "adapter_defaults",
    "auth_required",
    "install_security",
    "request_security",
]
