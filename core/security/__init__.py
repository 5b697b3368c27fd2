"""Protection layer: API keys, rate limits, prompt checks, output redaction, CORS.

Platform adapters call ``adapter_defaults(settings)`` before ``create_app`` so API keys are on
by default there; ``nimbus serve`` on a loopback address runs without them.

The names below load on first use: settings validation imports ``core.security.patterns``, and
that must not pull in FastAPI (about 0.4 s) ahead of the model load on a cold start.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.security.guard import (
        RequestSecurity,
        Security,
        adapter_defaults,
        auth_required,
        request_security,
    )
    from core.security.middleware import install_security

_WHERE = {
    "RequestSecurity": "core.security.guard",
    "Security": "core.security.guard",
    "adapter_defaults": "core.security.guard",
    "auth_required": "core.security.guard",
    "request_security": "core.security.guard",
    "install_security": "core.security.middleware",
}

__all__ = [
    "RequestSecurity",
    "Security",
    "adapter_defaults",
    "auth_required",
    "install_security",
    "request_security",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'core.security' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
