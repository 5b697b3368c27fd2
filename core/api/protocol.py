"""Request and response bodies. These models are the OpenAPI schema at /openapi.json.

Requests are strict where OpenAI is strict: no coercion (``true`` is not a number, ``0`` is not a
boolean, ``"5"`` is not an integer) and no unknown fields: a parameter this server does not
implement is refused with 400 naming it (``UNSUPPORTED`` says why for OpenAI's own parameters),
never ignored."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# OpenAI parameters this server refuses, and why (the 400's message; see core.api.errors).
UNSUPPORTED: dict[str, str] = {
    "audio": "audio output is not supported",
    "prediction": "predicted outputs are not supported",
    "reasoning_effort": "reasoning models are not supported",
    "verbosity": "verbosity is not supported",
    "web_search_options": "web search is not supported",
    "functions": "'functions' is deprecated and not supported: use 'tools'",
    "function_call": "'function_call' is deprecated and not supported: use 'tool_choice'",
    "metadata": "stored completions (and their metadata) are not supported",
    "include_obfuscation": "stream obfuscation is not supported",
}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


# --- seed contract: /api/generate -------------------------------------------------------------


class GenerateRequest(BaseModel):
    # Strict like the OpenAI bodies: a misspelt field (``max_token``) is refused, not ignored.
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)

    prompt: str = Field(..., min_length=1, description="The user's prompt.")
    max_tokens: int = Field(256, ge=1, alias="maxTokens", description="Most tokens to generate.")
    temperature: float = Field(
        0.7, ge=0.0, le=2.0, description="Sampling temperature (0 = greedy)."
    )
    seed: int | None = Field(
        None, ge=0, le=2**32 - 2, description="Sampling seed for repeatable output."
    )
    stream: bool = Field(False, description="Stream tokens as server-sent events.")
    raw: bool = Field(
        False, description="Send the prompt as-is instead of wrapping it in the chat template."
    )


class GenerateResponse(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    text: str
    tokens: int = Field(..., description="Completion tokens generated (exact).")
    latency_ms: float = Field(..., alias="latencyMs")


class HealthResponse(BaseModel):
    status: Literal["loading", "ready", "failed", "stopped"]
    model: str
    detail: str | None = None
    queue: dict[str, int] | None = None


# --- OpenAI-compatible: messages and tools ----------------------------------------------------

NonEmpty = Annotated[str, Field(min_length=1)]
FunctionName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


class TextPart(Strict):
    type: Literal["text"]
    text: str


class FunctionCallIn(Strict):
    name: FunctionName
    arguments: str = Field(..., description="The arguments as a JSON text (a string).")


class ToolCallIn(Strict):
    id: str = Field(..., min_length=1, max_length=256)
    type: Literal["function"] = "function"
    function: FunctionCallIn


class ChatMessageIn(Strict):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = Field(None, max_length=256)
    tool_calls: list[ToolCallIn] | None = Field(
        None, description="An assistant message's function calls."
    )
    tool_call_id: str | None = Field(
        None, max_length=256, description="A tool message: the call it answers."
    )
    refusal: None = Field(None, description="Accepted as null (OpenAI's messages carry it).")

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class FunctionDef(Strict):
    name: FunctionName
    description: str | None = None
    parameters: dict[str, Any] | None = Field(
        None, description="JSON schema of the arguments (an object)."
    )
    strict: bool | None = None


class ToolDef(Strict):
    type: Literal["function"]
    function: FunctionDef


class NamedFunction(Strict):
    name: FunctionName


class NamedToolChoice(Strict):
    type: Literal["function"]
    function: NamedFunction


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


class JSONSchemaSpec(Strict):
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)

    name: str = Field(..., pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None


class ResponseFormat(Strict):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaSpec | None = None


class StreamOptions(Strict):
    include_usage: bool = False


StopParam = str | list[str] | None


class SamplingFields(Strict):
    """Fields shared by chat and text completions (llama.cpp extras included)."""

    model: str | None = Field(
        None, description="The served model's id or an alias (404 for any other name)."
    )
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int = Field(40, ge=0, le=1000)
    min_p: float = Field(0.05, ge=0.0, le=1.0)
    repeat_penalty: float = Field(1.0, ge=0.0, le=10.0)
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    logit_bias: dict[str, float] | None = Field(
        None, description="Token id (as a string) -> bias added to its logit (-100..100)."
    )
    seed: int | None = Field(None, ge=0, le=2**32 - 2)
    stop: StopParam = None
    n: int = Field(1, ge=1, le=64, description="Choices to generate (limits.max_n).")
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = Field(None, max_length=256, description="Accepted; not used.")

    @field_validator("logit_bias")
    @classmethod
    def _bias_keys_are_token_ids(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value is None:
            return None
        if len(value) > 300:
            raise ValueError("at most 300 logit_bias entries are allowed")
        for key, bias in value.items():
            if not key.isdigit():
                raise ValueError(f"logit_bias keys are token ids; got {key!r}")
            if not -100 <= bias <= 100:
                raise ValueError(f"logit_bias values must be in -100..100; got {bias}")
        return value


class ChatCompletionRequest(SamplingFields):
    messages: Annotated[list[ChatMessageIn], Field(min_length=1)]
    max_completion_tokens: int | None = Field(None, ge=1)
    response_format: ResponseFormat | None = None
    tools: list[ToolDef] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    # Accepted only with the values that mean what this server does anyway.
    store: bool | None = Field(None, description="Only false: completions are not stored.")
    modalities: list[Literal["text"]] | None = None
    service_tier: Literal["auto", "default"] | None = None
    prompt_cache_key: str | None = Field(
        None, max_length=1024, description="Accepted; the prefix cache needs no key."
    )
    safety_identifier: str | None = Field(None, max_length=256, description="Accepted; not used.")

    @field_validator("store")
    @classmethod
    def _not_stored(cls, value: bool | None) -> bool | None:
        if value:
            raise ValueError("store=true is not supported: completions are not stored")
        return value


Prompt = NonEmpty | list[NonEmpty] | list[int] | list[list[int]]


class CompletionRequest(SamplingFields):
    prompt: Prompt
    max_tokens: int | None = Field(16, ge=1)
    echo: bool = False
    logprobs: int | None = Field(None, ge=0, le=20)
    best_of: int | None = Field(None, ge=1, description="Only equal to n (or 1).")
    suffix: str | None = Field(None, description="Only empty: insertion is not supported.")
    response_format: ResponseFormat | None = None

    @field_validator("suffix")
    @classmethod
    def _no_suffix(cls, value: str | None) -> str | None:
        if value:
            raise ValueError("suffix (insertion) is not supported")
        return value


class EmbeddingRequest(Strict):
    model: str | None = None
    input: NonEmpty | list[NonEmpty] | list[int] | list[list[int]] = Field(
        ..., description="A text, texts, a token array or token arrays."
    )
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(
        None, ge=1, description="Only the model's own size: vectors are not shortened."
    )
    user: str | None = Field(None, max_length=256, description="Accepted; not used.")


# --- OpenAI-compatible: responses -------------------------------------------------------------


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class FunctionCallOut(BaseModel):
    name: str
    arguments: str


class ToolCallOut(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCallOut


class ChatMessageOut(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    tool_calls: list[ToolCallOut] | None = None


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int]


class TokenLogprobOut(TopLogprob):
    top_logprobs: list[TopLogprob]


class ChoiceLogprobs(BaseModel):
    content: list[TokenLogprobOut] | None
    refusal: None = None


FinishReasonOut = Literal["stop", "length", "tool_calls"]


class ChatChoice(BaseModel):
    index: int = 0
    message: ChatMessageOut
    finish_reason: FinishReasonOut
    logprobs: ChoiceLogprobs | None = None


class ChatCompletionResponse(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage
    system_fingerprint: str | None = None


class CompletionLogprobs(BaseModel):
    tokens: list[str]
    token_logprobs: list[float]
    top_logprobs: list[dict[str, float]]
    text_offset: list[int]


class CompletionChoice(BaseModel):
    index: int = 0
    text: str
    finish_reason: Literal["stop", "length"]
    logprobs: CompletionLogprobs | None = None


class CompletionResponse(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage


class EmbeddingData(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str = Field(..., description="Floats, or base64 of float32s.")


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[EmbeddingData]
    model: str
    usage: EmbeddingUsage


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "nimbus"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


# --- llama-server's /tokenize and /detokenize -------------------------------------------------


class TokenizeRequest(Strict):
    content: str
    add_special: bool = Field(False, description="Add the BOS token when the model uses one.")
    parse_special: bool = Field(True, description="Read special-token text as those tokens.")
    with_pieces: bool = Field(False, description="Return each token's text with its id.")


class TokenPiece(BaseModel):
    id: int
    piece: str | list[int] = Field(..., description="The text, or the bytes when not UTF-8.")


class TokenizeResponse(BaseModel):
    tokens: list[int] | list[TokenPiece]


class DetokenizeRequest(Strict):
    tokens: list[int] = Field(..., max_length=1_000_000)


class DetokenizeResponse(BaseModel):
    content: str


class ErrorDetail(BaseModel):
    message: str
    type: str
    code: str
    param: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail
