"""The one exception hierarchy. Each error knows its HTTP status and OpenAI error type/code;
``core.api.errors`` is the only place that turns them into responses."""

from __future__ import annotations


class NimbusError(Exception):
    """Base class: ``status``, ``error_type`` and ``code`` map onto the OpenAI error shape."""

    status: int = 500
    error_type: str = "server_error"
    code: str = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.headers = dict(headers or {})


class InvalidRequestError(NimbusError):
    status = 400
    error_type = "invalid_request_error"
    code = "invalid_request"


class InvalidParameterError(InvalidRequestError):
    code = "invalid_parameter"


class ContextOverflowError(InvalidRequestError):
    code = "context_length_exceeded"


class InvalidJSONError(NimbusError):
    status = 422
    error_type = "invalid_request_error"
    code = "invalid_json"


class AuthenticationError(NimbusError):
    status = 401
    error_type = "authentication_error"
    code = "invalid_api_key"


class NotFoundError(NimbusError):
    status = 404
    error_type = "invalid_request_error"
    code = "not_found"


class PayloadTooLargeError(NimbusError):
    status = 413
    error_type = "invalid_request_error"
    code = "payload_too_large"


class RateLimitedError(NimbusError):
    status = 429
    error_type = "rate_limit_error"
    code = "rate_limit_exceeded"


class EngineOverloadedError(NimbusError):
    """The wait queue is full: the caller should retry soon (503 + Retry-After)."""

    status = 503
    error_type = "server_error"
    code = "engine_overloaded"


class ModelNotReadyError(NimbusError):
    status = 503
    error_type = "server_error"
    code = "model_not_ready"


class ModelLoadError(NimbusError):
    """The model could not be resolved or loaded; raised at startup and names the source."""

    status = 500
    code = "model_load_failed"


class EngineError(NimbusError):
    status = 500
    code = "engine_error"


class PromptRejectedError(InvalidRequestError):
    """A prompt matched an injection pattern while the policy is 'block'."""

    code = "prompt_rejected"


class AuthUnavailableError(NimbusError):
    """The API-key source could not be read and no keys were cached: fail closed, retry later."""

    status = 503
    code = "auth_unavailable"


class SecurityConfigError(NimbusError):
    """Security settings that cannot work (e.g. keys required but no key source configured)."""

    status = 500
    code = "security_misconfigured"


class RangeNotSatisfiableError(NimbusError):
    """A Range header that selects no byte of the file (416 with Content-Range: bytes */size)."""

    status = 416
    error_type = "invalid_request_error"
    code = "range_not_satisfiable"
