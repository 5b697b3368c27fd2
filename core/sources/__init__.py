"""Model sources: resolve ``NIMBUS_MODEL`` to a local, verified GGUF file."""

from __future__ import annotations

from core.sources.resolve import (
    BUNDLED_MODEL_ALIASES,
    bundled_model_path,
    resolve_model,
    verify_gguf,
)

__all__ = ["BUNDLED_MODEL_ALIASES", "bundled_model_path", "resolve_model", "verify_gguf"]
