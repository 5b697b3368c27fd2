"""The one settings tree. Every field is bounded and described. Env vars use the ``NIMBUS_``
prefix and ``__`` between levels (``NIMBUS_ENGINE__N_CTX=4096``); ``NIMBUS_MODEL`` picks it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
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
    idle_cache_mb: int = Field(
        256,
        ge=0,
        le=1_048_576,
        description="Host memory (MiB) for idle slots' KV cells: when a request starts, the "
        "other idle slots' cells leave the context (cells left in it slow every later step); "
        "those longer than prefill_chunk are kept in host memory, up to this budget, and come "
        "back for a prompt that shares their prefix. Count it in the memory a container needs. "
        "0 = idle cells stay in the context.",
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
        description="Chat template overriding the GGUF's: a built-in format ('chatml', "
        "'gemma'), a template file, or Jinja text. Unset with no template in the GGUF: chat "
        "requests are refused (400) while completions work.",
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
        1,
        ge=1,
        le=3600,
        description="Shortest Retry-After sent with 503 (the wait is estimated from the queue "
        "depth and the measured token rate; this is also the value before any measurement).",
    )
    retry_after_max_s: int = Field(
        60, ge=1, le=3600, description="Longest Retry-After sent with 503."
    )
    admission_wait_ms: int = Field(
        50,
        ge=0,
        le=10_000,
        description="How long a request that finds every slot and short-queue place "
        "(overload_queue) taken waits for one before it is refused with 503 (read before the "
        "body; 0 = refuse at once). Paces clients that retry the moment they are refused. A "
        "place further up max_queue is granted at the end of this wait unless more requests "
        "than slots + max_queue wanted in meanwhile.",
    )
    overload_queue: int = Field(
        4,
        ge=0,
        le=10000,
        description="Queue places kept while overloaded (more requests than slots + max_queue "
        "wanted in within overload_hold_ms): under sustained overload a full queue adds only "
        "waiting time, so an accepted request then waits behind at most this many; bursts "
        "still get max_queue. At least max_queue turns the short queue off.",
    )
    overload_hold_ms: int = Field(
        1000,
        ge=0,
        le=600_000,
        description="How long the short overload queue (overload_queue) stays in force after "
        "more requests than slots + max_queue wanted in; 0 = never.",
    )
    body_timeout_s: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="Longest time to receive a whole request body; a slower or stalled upload "
        "gets 408 and the connection is closed.",
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
    max_n: int = Field(
        4,
        ge=1,
        le=64,
        description="Most choices (n) one request may ask for; each takes a slot (and at most "
        "engine.slots).",
    )
    max_tools: int = Field(
        128, ge=0, le=1024, description="Most tools (function definitions) in one request."
    )
    max_tool_calls: int = Field(
        8,
        ge=1,
        le=128,
        description="Most tool calls one reply may make when parallel calls are allowed (the "
        "tool-call grammar stops there).",
    )

    @model_validator(mode="after")
    def _retry_after_range(self) -> LimitSettings:
        if self.retry_after_max_s < self.retry_after_s:
            raise ValueError("limits.retry_after_max_s must be >= limits.retry_after_s")
        return self


class EmbeddingSettings(BaseModel):
    """POST /v1/embeddings: a second llama.cpp context (embeddings on, pooled), created on first
    use; it takes no generation slot."""

    enabled: bool = Field(True, description="Serve POST /v1/embeddings.")
    model: str | None = Field(
        None,
        min_length=1,
        max_length=4096,
        description="A separate embedding model (same forms as NIMBUS_MODEL: a GGUF path, "
        "s3://...); unset = the served model.",
    )
    model_alias: str | None = Field(
        None,
        max_length=256,
        description="Model id of the separate embedding model (default: its file stem).",
    )
    pooling: Literal["auto", "mean", "last", "cls"] = Field(
        "auto",
        description="'auto' (the pooling the GGUF declares, else 'mean'), 'mean', 'last' or 'cls'.",
    )
    n_ctx: int = Field(
        512,
        ge=16,
        le=32768,
        description="Longest input in tokens; also the tokens evaluated per decode (memory grows "
        "with it: every token's logits are kept).",
    )
    n_seq: int = Field(8, ge=1, le=64, description="Most inputs evaluated together in one decode.")
    max_inputs: int = Field(
        256, ge=1, le=4096, description="Most inputs in one request (400 above it)."
    )


class ServerSettings(BaseModel):
    """The HTTP server started by ``nimbus serve``."""

    host: str = Field("127.0.0.1", min_length=1, max_length=255, description="Interface to bind.")
    port: int = Field(8000, ge=0, le=65535, description="TCP port (0 = pick a free one).")
    log_level: Literal["critical", "error", "warning", "info", "debug"] = Field(
        "info", description="uvicorn log level: 'critical', 'error', 'warning', 'info' or 'debug'."
    )
    access_log: bool = Field(
        True,
        description="uvicorn's access log (off when the request log, NIMBUS_REQUEST_LOG__*, "
        "replaces it).",
    )


class MetricsSettings(BaseModel):
    """Prometheus metrics at GET /metrics (docs/observability.md)."""

    enabled: bool = Field(
        False, description="Serve GET /metrics in the Prometheus text format (off: 404)."
    )
    key: SecretStr | None = Field(
        None,
        description="A key (16+ characters) that may read /metrics, for a scraper that should "
        "not hold an API key; API keys work too when keys are on. Set with keys off, /metrics "
        "requires it.",
    )

    @field_validator("key")
    @classmethod
    def _key_is_long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().strip()) < 16:
            raise ValueError("the metrics key must be at least 16 characters")
        return value


class RequestLogSettings(BaseModel):
    """One JSON line per HTTP request (docs/observability.md)."""

    enabled: bool = Field(
        False,
        description="Write one JSON line per request to stdout: id, route, status, model, tokens, "
        "TTFT, duration, finish reason, client (always on on Lambda, as Powertools log lines).",
    )
    prompts: bool = Field(
        False,
        description="Also log the request body and the (redacted) completion text; off: never.",
    )
    text_limit: int = Field(
        4096,
        ge=1,
        le=1_000_000,
        description="Most characters of request body and of completion text per line.",
    )


class AwsLambdaSettings(BaseModel):
    """The AWS Lambda adapter (handlers/aws_lambda.py); ignored everywhere else."""

    deadline_margin_ms: int = Field(
        2000,
        ge=0,
        le=900_000,
        description="Generation ends this long before the Lambda timeout (finish_reason 'length'), "
        "leaving time to send the response.",
    )
    log_prompts: bool = Field(
        False,
        description="Log request bodies and generated text on Lambda (as "
        "NIMBUS_REQUEST_LOG__PROMPTS, which works there too; off: only sizes, counts, timings).",
    )
    tracing: bool = Field(
        False,
        description="X-Ray tracing with Powertools Tracer (the function needs Tracing: Active).",
    )


# Portable x86-64 baseline (AVX2/FMA/F16C): Modal's image builder and its runtime hosts can be
# different CPUs, so a -march=native build could die with "illegal instruction".
DEFAULT_MODAL_CPU_CMAKE_ARGS = (
    "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF"
)


class ModalSettings(BaseModel):
    """The Modal adapter (modal_app.py, handlers/modal_server/): read when `modal deploy` imports
    modal_app.py, and again inside each container (the NIMBUS_* variables are forwarded)."""

    app_name: str = Field(
        "nimbus-llm",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
        description="Modal App name (`modal deploy` creates or updates it).",
    )
    min_containers: int = Field(
        1,
        ge=0,
        le=100,
        description="Containers kept warm while idle (0 = scale to zero; each one is billed).",
    )
    max_containers: int = Field(
        4, ge=1, le=1000, description="Most containers Modal may run for this class."
    )
    scaledown_window: int = Field(
        300, ge=2, le=3600, description="Seconds an idle extra container lingers before it stops."
    )
    cpu: float = Field(2.0, ge=0.125, le=64, description="CPU cores reserved per container.")
    memory_mb: int = Field(4096, ge=256, le=262144, description="Memory reserved per container.")
    gpu: str | None = Field(
        None,
        max_length=64,
        description="GPU type (e.g. T4, L4, A10G); selects the CUDA image and offloads all layers.",
    )
    timeout_s: int = Field(
        600, ge=10, le=86400, description="Longest a single input (request) may run, in seconds."
    )
    target_inputs: int = Field(
        4,
        ge=1,
        le=10000,
        description="Concurrent requests per container the autoscaler aims for (capped at the "
        "engine's capacity, slots + max_queue).",
    )
    memory_snapshot: bool = Field(
        True, description="Enable Modal memory snapshots (imports + model lookup restored)."
    )
    warmup: bool = Field(
        True,
        description="Generate one token at container start so no user pays first-decode costs.",
    )
    secret_name: str | None = Field(
        "nimbus-api-keys",
        max_length=128,
        description="modal.Secret injected into the containers; holds NIMBUS_SECURITY__AUTH__KEYS "
        "(empty = none, e.g. with NIMBUS_SECURITY__AUTH__MODE=off).",
    )
    volume: str | None = Field(
        None, max_length=128, description="modal.Volume holding larger GGUF models."
    )
    volume_mount: str = Field(
        "/models", pattern=r"^/[^\s]*$", description="Where the volume is mounted."
    )
    extras: str = Field(
        "",
        max_length=256,
        description="Comma-separated pyproject extras installed in the image ('s3' is added for "
        "s3:// models).",
    )
    hf_secret: str | None = Field(
        None,
        max_length=128,
        description="modal.Secret holding HF_TOKEN, for gated or private Hub repositories "
        "(the pull function).",
    )
    pull_timeout_s: int = Field(
        3600,
        ge=60,
        le=86400,
        description="Longest a model download by the pull function may take, in seconds.",
    )
    python_version: str = Field("3.11", pattern=r"^3\.\d+$", description="Container Python.")
    cpu_cmake_args: str = Field(
        DEFAULT_MODAL_CPU_CMAKE_ARGS,
        description="CMAKE_ARGS for llama-cpp-python in the CPU image.",
    )
    cuda_base_image: str = Field(
        "nvidia/cuda:12.4.1-devel-ubuntu22.04", description="Base image of the GPU variant."
    )
    cuda_cmake_args: str = Field(
        "-DGGML_CUDA=on", description="CMAKE_ARGS for llama-cpp-python in the GPU image."
    )

    @field_validator("gpu", "secret_name", "volume", "hf_secret", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        # `NIMBUS_MODAL__SECRET_NAME=` switches an option off.
        return None if isinstance(value, str) and not value.strip() else value


class UiSettings(BaseModel):
    """The browser side: the chat page, its in-browser (WebAssembly) mode, the API docs pages."""

    enabled: bool = Field(True, description="Serve the chat page at /chat (and redirect / to it).")
    serve_model_file: bool = Field(
        False,
        description="Serve the loaded model's GGUF file at /api/model/file (Range, ETag) for the "
        "page's in-browser mode; the API key applies.",
    )
    model_file_max_age_s: int = Field(
        3600,
        ge=0,
        le=31_536_000,
        description="How long browsers may reuse the model file before asking again (ETag).",
    )


# --- security (core/security): one group, one sub-model per control ----------------------------


def _check_patterns(patterns: list[str]) -> list[str]:
    import re

    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from exc
    return patterns


class AuthSettings(BaseModel):
    """API keys (``Authorization: Bearer <key>`` or ``x-api-key``)."""

    mode: Literal["auto", "on", "off"] = Field(
        "auto",
        description="'on' requires a key on the API routes (not /api/health, /docs); 'off' "
        "requires none; 'auto' = 'off' when server.host is a loopback address (`nimbus serve`), "
        "'on' otherwise; "
        "platform adapters turn 'auto' into 'on' with core.security.adapter_defaults().",
    )
    keys: SecretStr | None = Field(
        None,
        description="Comma-separated API keys (16+ characters each) or 'sha256:<hex>' digests.",
    )
    keys_file: Path | None = Field(
        None, description="File with one key or 'sha256:<hex>' digest per line ('#' comments)."
    )
    aws_secret_id: str | None = Field(
        None,
        max_length=2048,
        description='AWS Secrets Manager secret holding the keys (JSON list, {"keys": [...]}, '
        "or one per line).",
    )
    aws_ssm_parameter: str | None = Field(
        None,
        max_length=2048,
        description="SSM Parameter Store name (SecureString) holding the keys, one per line or "
        "comma-separated.",
    )
    aws_region: str | None = Field(
        None, max_length=64, description="Region for Secrets Manager / SSM (default: AWS_REGION)."
    )
    refresh_s: int = Field(
        300,
        ge=1,
        le=86400,
        description="Seconds a loaded key set is cached before the file / AWS source is re-read.",
    )

    @field_validator("keys")
    @classmethod
    def _keys_are_long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        for key in (k.strip() for k in value.get_secret_value().split(",")):
            if key and not key.startswith("sha256:") and len(key) < 16:
                raise ValueError("every API key must be at least 16 characters")
        return value


class RateLimitSettings(BaseModel):
    """Per-client limits (client = API key, or IP address when auth is off)."""

    enabled: bool = Field(True, description="Apply rate limits to the generation routes.")
    exempt_loopback: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Clients keyed by address (auth off) that connect from a loopback address "
        "are not rate limited: 'on', 'off', or 'auto' = 'on' when server.host is a loopback "
        "address (`nimbus serve` on this machine), 'off' otherwise; platform adapters turn "
        "'auto' into 'off'.",
    )
    backend: Literal["memory", "dynamodb"] = Field(
        "memory",
        description="'memory' (sliding window, per process) or 'dynamodb' (shared by every "
        "container; fixed windows, atomic conditional updates).",
    )
    window_s: int = Field(60, ge=1, le=86400, description="Length of the rate-limit window.")
    requests_per_window: int = Field(
        300, ge=1, le=10_000_000, description="Requests one client may start per window."
    )
    tokens_per_window: int = Field(
        1_000_000,
        ge=0,
        le=10_000_000_000,
        description="Prompt + completion tokens one client may use per window (0 = no limit).",
    )
    max_clients: int = Field(
        10000,
        ge=1,
        le=10_000_000,
        description="Clients tracked by the memory backend (least recently seen are dropped).",
    )
    dynamodb_table: str | None = Field(
        None,
        min_length=3,
        max_length=255,
        description="DynamoDB table (string partition key 'pk', TTL attribute 'expires_at').",
    )
    dynamodb_region: str | None = Field(
        None, max_length=64, description="Region of the DynamoDB table (default: AWS_REGION)."
    )
    dynamodb_endpoint_url: str | None = Field(
        None, max_length=2048, description="DynamoDB endpoint override (DynamoDB Local)."
    )
    on_backend_error: Literal["allow", "deny"] = Field(
        "allow",
        description="When the DynamoDB backend fails: 'allow' (admit the request, logged) or "
        "'deny' (answer 429).",
    )

    @model_validator(mode="after")
    def _dynamodb_needs_a_table(self) -> RateLimitSettings:
        if self.enabled and self.backend == "dynamodb" and not self.dynamodb_table:
            raise ValueError("rate_limit.backend='dynamodb' needs rate_limit.dynamodb_table")
        return self


class PromptSettings(BaseModel):
    """Checks on every prompt / message text before it reaches the model."""

    on_too_long: Literal["reject", "truncate"] = Field(
        "reject",
        description="Text longer than limits.max_prompt_chars: 'reject' (413) or 'truncate' "
        "(with a warning).",
    )
    strip_control_chars: bool = Field(
        True, description="Remove NUL and other control characters (tab, CR, LF are kept)."
    )
    injection_policy: Literal["off", "warn", "block"] = Field(
        "warn",
        description="On a likely prompt injection: 'off' (no check), 'warn' (header + log) or "
        "'block' (reject with 400). Quoted or explained mentions of a phrase do not count.",
    )
    injection_builtin: bool = Field(
        True,
        description="Use the built-in phrase families (ignore/disregard/forget previous "
        "instructions, 'you are now', system-prompt extraction; several languages).",
    )
    injection_patterns: list[str] = Field(
        default_factory=list,
        max_length=100,
        description="More regular expressions (JSON list), matched against the normalised text: "
        "NFKC, zero-width and control characters removed, whitespace collapsed, case-folded.",
    )

    @field_validator("injection_patterns")
    @classmethod
    def _patterns_compile(cls, value: list[str]) -> list[str]:
        return _check_patterns(value)


class OutputSettings(BaseModel):
    """Redaction of sensitive data in generated text (whole and streamed)."""

    enabled: bool = Field(True, description="Filter generated text.")
    redact_ssn: bool = Field(True, description="Redact US social security numbers (123-45-6789).")
    redact_credit_cards: bool = Field(
        True, description="Redact Luhn-valid card numbers (13-19 digits, spaces/dashes allowed)."
    )
    redact_passwords: bool = Field(True, description="Redact 'password: ...' / 'pwd=...' values.")
    extra_patterns: list[str] = Field(
        default_factory=list,
        max_length=100,
        description="More regular expressions to redact (JSON list); each must match at most "
        "256 characters (bounded repeats) so streams stay exact.",
    )
    replacement: str = Field(
        "[REDACTED]", min_length=1, max_length=64, description="Text put in place of a match."
    )

    @field_validator("extra_patterns")
    @classmethod
    def _patterns_are_bounded(cls, value: list[str]) -> list[str]:
        from core.patterns import match_width

        for pattern in _check_patterns(value):
            shortest, longest = match_width(pattern)
            if longest is None or longest > 256:
                raise ValueError(
                    f"output pattern {pattern!r} can match more than 256 characters; "
                    "use bounded repeats such as \\S{1,64} instead of \\S+"
                )
            if shortest == 0:
                raise ValueError(f"output pattern {pattern!r} can match empty text")
        return value


class CorsSettings(BaseModel):
    """Cross-origin access for browsers. Empty origins = no CORS headers (same-origin only)."""

    allow_origins: list[str] = Field(
        default_factory=list,
        max_length=100,
        description="Allowed origins, e.g. [\"https://app.example.com\"] (JSON list); '*' = any.",
    )
    allow_credentials: bool = Field(
        False, description="Allow cookies/Authorization from browsers (never with '*')."
    )
    allow_headers: list[str] = Field(
        default_factory=lambda: ["authorization", "x-api-key", "content-type"],
        max_length=50,
        description="Request headers browsers may send.",
    )
    max_age_s: int = Field(600, ge=0, le=86400, description="How long browsers cache preflights.")

    @model_validator(mode="after")
    def _no_wildcard_with_credentials(self) -> CorsSettings:
        if self.allow_credentials and "*" in self.allow_origins:
            raise ValueError("cors.allow_origins '*' cannot be combined with allow_credentials")
        return self


class AwsClientSettings(BaseModel):
    """AWS calls made while serving requests (the DynamoDB rate limiter, Secrets Manager and SSM
    key loading): bounded so a slow or unreachable endpoint cannot hold requests for long."""

    connect_timeout_s: float = Field(
        1.0, gt=0, le=60, description="Connect timeout of each AWS call attempt."
    )
    read_timeout_s: float = Field(
        2.0, gt=0, le=300, description="Read timeout of each AWS call attempt."
    )
    max_attempts: int = Field(
        2, ge=1, le=10, description="Attempts per AWS call, the first included (standard retries)."
    )


class SecuritySettings(BaseModel):
    """Auth, rate limits, prompt checks, output filter and CORS (core/security)."""

    auth: AuthSettings = Field(default_factory=AuthSettings)  # type: ignore[arg-type]
    rate_limit: RateLimitSettings = Field(default_factory=RateLimitSettings)  # type: ignore[arg-type]
    prompt: PromptSettings = Field(default_factory=PromptSettings)  # type: ignore[arg-type]
    output: OutputSettings = Field(default_factory=OutputSettings)  # type: ignore[arg-type]
    cors: CorsSettings = Field(default_factory=CorsSettings)  # type: ignore[arg-type]
    aws_client: AwsClientSettings = Field(default_factory=AwsClientSettings)  # type: ignore[arg-type]
    max_json_depth: int = Field(
        64, ge=4, le=10000, description="Deepest JSON nesting accepted in a request body (400)."
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
        description="Model source: 'default' (bundled SmolLM2-135M), a GGUF path or a directory "
        "holding one, hf://owner/repo[/file.gguf|:QUANT][@revision], or s3://bucket/key.",
    )
    model_alias: str | None = Field(
        None, max_length=256, description="Model id reported by /v1/models (default: file stem)."
    )
    model_aliases: list[str] = Field(
        default_factory=list,
        max_length=100,
        description="More names the OpenAI routes accept in `model` for the served model (JSON "
        "list); any other name gets 404 model_not_found.",
    )
    engine: EngineSettings = Field(default_factory=EngineSettings)  # type: ignore[arg-type]
    source: ModelSourceSettings = Field(default_factory=ModelSourceSettings)  # type: ignore[arg-type]
    limits: LimitSettings = Field(default_factory=LimitSettings)  # type: ignore[arg-type]
    embeddings: EmbeddingSettings = Field(default_factory=EmbeddingSettings)  # type: ignore[arg-type]
    server: ServerSettings = Field(default_factory=ServerSettings)  # type: ignore[arg-type]
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)  # type: ignore[arg-type]
    request_log: RequestLogSettings = Field(default_factory=RequestLogSettings)  # type: ignore[arg-type]
    security: SecuritySettings = Field(default_factory=SecuritySettings)  # type: ignore[arg-type]
    aws_lambda: AwsLambdaSettings = Field(default_factory=AwsLambdaSettings)  # type: ignore[arg-type]
    modal: ModalSettings = Field(default_factory=ModalSettings)  # type: ignore[arg-type]
    ui: UiSettings = Field(default_factory=UiSettings)  # type: ignore[arg-type]


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


def setting_errors(exc: ValidationError) -> list[str]:
    """One line per invalid field, named by its environment variable:
    ``NIMBUS_ENGINE__SLOTS: must be >= 1 (got 0)``."""
    lines = []
    for error in exc.errors():
        loc = [str(part) for part in error.get("loc", ()) if not isinstance(part, int)]
        name = "NIMBUS_" + "__".join(part.upper() for part in loc) if loc else "settings"
        got = error.get("input")
        shown = "" if isinstance(got, dict) or got is None else f" (got {_short(got)})"
        lines.append(f"{name}: {_reason(error)}{shown}")
    return lines


def _reason(error: Any) -> str:
    ctx = error.get("ctx") or {}
    kind = error.get("type", "")
    bounds = {
        "greater_than_equal": ">= {ge}",
        "greater_than": "> {gt}",
        "less_than_equal": "<= {le}",
        "less_than": "< {lt}",
    }
    if kind in bounds:
        return "must be " + bounds[kind].format(**ctx)
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected', '')}"
    if kind in ("int_parsing", "int_from_float"):
        return "must be a whole number"
    if kind == "float_parsing":
        return "must be a number"
    if kind == "bool_parsing":
        return "must be true or false"
    if kind == "string_pattern_mismatch":
        return f"must match {ctx.get('pattern', '')}"
    if kind == "string_too_long":
        return f"must be at most {ctx.get('max_length')} characters"
    if kind == "string_too_short":
        return f"must be at least {ctx.get('min_length')} characters"
    message = str(error.get("msg", "invalid value"))
    return message.removeprefix("Value error, ")


def _short(value: Any) -> str:
    # Environment values arrive as strings: show them as typed (0, not '0').
    text = value if isinstance(value, str) and value.strip() else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
