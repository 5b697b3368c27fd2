"""The one settings tree. Every field is bounded and described. Env vars use the ``NIMBUS_``
prefix and ``__`` between levels (``NIMBUS_ENGINE__N_CTX=4096``); ``NIMBUS_MODEL`` picks it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

_DEFAULT_CACHE = Path(os.environ.get("TMPDIR", "/tmp")) / "nimbus-models"


class EngineSettings(BaseModel):
    """How llama.cpp is loaded and run."""

    n_ctx: int = Field(
        2048,
        ge=128,
        le=131072,
        description="Context window per request (tokens); also the KV cache all slots share.",
    )
    n_threads: int = Field(
        default_factory=lambda: max(1, os.cpu_count() or 1),
        ge=1,
        le=256,
        description="CPU threads for decoding (default: all cores).",
    )
    n_batch: int = Field(
        512,
        ge=8,
        le=8192,
        description="Most tokens (all requests together) evaluated per llama_decode call.",
    )
    slots: int = Field(
        4,
        ge=1,
        le=64,
        description="Requests decoded together (continuous batching); more wait in the queue.",
    )
    prefill_chunk: int = Field(
        128,
        ge=1,
        le=8192,
        description="Most prompt tokens of a newcomer evaluated per step while others stream.",
    )
    prefix_cache: bool = Field(
        True,
        description="Keep finished requests' KV cells; reuse them for prompts sharing a prefix.",
    )
    n_gpu_layers: int = Field(
        0, ge=-1, le=1000, description="Layers offloaded to a GPU (-1 = all; needs a CUDA build)."
    )
    use_mmap: bool = Field(
        True, description="Memory-map the GGUF file (faster cold start, shared pages)."
    )
    chat_template: str | None = Field(
        None,
        max_length=65536,
        description="Jinja chat template overriding the one in the GGUF metadata.",
    )


class ModelSourceSettings(BaseModel):
    """Where remote models are cached and how they are checked."""

    cache_dir: Path = Field(
        _DEFAULT_CACHE,
        description="Download cache for s3:// models (/tmp is the writable place on Lambda).",
    )
    sha256: str | None = Field(
        None,
        pattern=r"^[0-9a-fA-F]{64}$",
        description="Expected sha256 of the model file; checked after download when set.",
    )


class LimitSettings(BaseModel):
    """Request limits. Defaults are safe for a small CPU box."""

    max_queue: int = Field(
        16,
        ge=0,
        le=10000,
        description="Requests allowed to wait for a free slot; beyond it -> 503.",
    )
    retry_after_s: int = Field(
        1, ge=1, le=3600, description="Retry-After sent with 503 when the queue is full."
    )
    max_tokens_default: int = Field(
        256, ge=1, le=131072, description="max_tokens when a request gives none."
    )
    max_tokens_cap: int = Field(
        2048,
        ge=1,
        le=131072,
        description="Largest max_tokens a request may ask for (400 above it).",
    )
    max_prompt_chars: int = Field(
        32768,
        ge=1,
        le=10_000_000,
        description="Longest prompt/message text accepted, in characters.",
    )
    max_messages: int = Field(256, ge=1, le=10000, description="Most chat messages in one request.")
    max_stop_sequences: int = Field(
        4, ge=0, le=64, description="Most stop sequences in one request."
    )
    max_body_bytes: int = Field(
        1_048_576,
        ge=1024,
        le=100_000_000,
        description="Largest request body, checked before JSON parsing.",
    )


class ServerSettings(BaseModel):
    """The HTTP server started by ``nimbus serve``."""

    host: str = Field("127.0.0.1", min_length=1, max_length=255, description="Interface to bind.")
    port: int = Field(8000, ge=0, le=65535, description="TCP port (0 = pick a free one).")
    log_level: Literal["critical", "error", "warning", "info", "debug"] = Field(
        "info", description="uvicorn log level."
    )


class Settings(BaseSettings):
    """Effective configuration: defaults < environment (NIMBUS_*) < explicit arguments."""

    model_config = SettingsConfigDict(
        env_prefix="NIMBUS_", env_nested_delimiter="__", extra="ignore", validate_default=True
    )

    model: str = Field(
        "default",
        min_length=1,
        max_length=4096,
        description="Model source: 'default' (bundled SmolLM2-135M), a GGUF path, or s3://bucket/key.",
    )
    model_alias: str | None = Field(
        None, max_length=256, description="Model id reported by /v1/models (default: file stem)."
    )
    engine: EngineSettings = Field(default_factory=EngineSettings)  # type: ignore[arg-type]
    source: ModelSourceSettings = Field(default_factory=ModelSourceSettings)  # type: ignore[arg-type]
    limits: LimitSettings = Field(default_factory=LimitSettings)  # type: ignore[arg-type]
    server: ServerSettings = Field(default_factory=ServerSettings)  # type: ignore[arg-type]


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment with ``overrides`` (nested dicts allowed) applied on top."""
    return Settings(**overrides)


def describe_fields(settings: Settings) -> list[tuple[str, str, Any, str]]:
    """(env var, type, current value, description) for every leaf field; feeds `nimbus config`."""
    rows: list[tuple[str, str, Any, str]] = []

    def walk(model: BaseModel, prefix: str) -> None:
        for name, field in type(model).model_fields.items():
            value = getattr(model, name)
            env = f"{prefix}{name.upper()}"
            if isinstance(value, BaseModel):
                walk(value, env + "__")
                continue
            annotation = getattr(field.annotation, "__name__", None) or str(field.annotation)
            rows.append((env, annotation.replace("typing.", ""), value, field.description or ""))

    walk(settings, "NIMBUS_")
    return rows
