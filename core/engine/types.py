"""Plain data passed between the API layer and an engine."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

FinishReason = Literal["stop", "length", "cancelled"]
EngineState = Literal["loading", "ready", "failed", "stopped"]


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.7
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int | None = None


@dataclass(frozen=True)
class PromptSegment:
    """A piece of prompt text. ``special=False`` keeps text such as ``<|im_end|>`` inside a user
    message as plain text, so callers cannot forge chat-template control tokens."""

    text: str
    special: bool


@dataclass(frozen=True)
class GenerationRequest:
    prompt: tuple[PromptSegment, ...]
    max_tokens: int
    sampling: SamplingParams = field(default_factory=SamplingParams)
    stop: tuple[str, ...] = ()
    grammar: str | None = None
    """GBNF grammar constraining the output (see core.engine.grammar)."""
    grammar_triggers: tuple[str, ...] = ()
    """When set, the grammar is lazy: it applies from the first match of one of these regular
    expressions (matched against the whole text so far; group 1 marks where it starts)."""
    n: int = 1
    """Choices generated from one evaluation of the prompt (its KV cells are shared)."""
    logprobs: int | None = None
    """None: no log-probabilities; k >= 0: the chosen token's and the k most likely ones'."""
    logit_bias: tuple[tuple[int, float], ...] = ()
    """(token id, bias) added to that token's logit before sampling."""
    deadline: float | None = None
    """time.monotonic() after which generation ends with finish_reason 'length'."""
    add_bos: bool = True
    tokens: tuple[int, ...] | None = None
    """Token ids to use as the prompt as they are (``prompt`` is then not tokenized)."""


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token: its bytes, its log-probability and the ``top`` alternatives (bytes,
    log-probability), most likely first."""

    piece: bytes
    logprob: float
    top: tuple[tuple[bytes, float], ...] = ()


@dataclass
class Delta:
    """A piece of one choice's output. Plain ``str`` items stand for choice 0 without
    log-probabilities (the common case costs no object per token)."""

    index: int
    text: str
    logprobs: list[TokenLogprob] | None = None


@dataclass
class ChoiceResult:
    index: int
    text: str
    finish_reason: FinishReason
    completion_tokens: int
    logprobs: list[TokenLogprob] | None = None


@dataclass
class Completion:
    """A finished generation. ``text``, ``finish_reason`` and ``logprobs`` describe choice 0;
    ``completion_tokens`` counts every choice; ``choices`` lists them all when n > 1."""

    text: str
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    time_to_first_token_s: float | None = None
    total_s: float = 0.0
    cached_tokens: int = 0
    """Prompt tokens whose KV was reused from the prefix cache instead of evaluated."""
    queue_wait_s: float | None = None
    """Submission to getting a slot; None when the request never got one."""
    logprobs: list[TokenLogprob] | None = None
    choices: list[ChoiceResult] = field(default_factory=list)

    def all_choices(self) -> list[ChoiceResult]:
        if self.choices:
            return self.choices
        return [
            ChoiceResult(0, self.text, self.finish_reason, self.completion_tokens, self.logprobs)
        ]

    @property
    def tokens_per_second(self) -> float:
        return self.completion_tokens / self.total_s if self.total_s > 0 else 0.0


@dataclass(frozen=True)
class ToolCall:
    """A function call an assistant message made (``arguments``: a JSON text)."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class ChatMessage:
    role: str
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None


@dataclass(frozen=True)
class EngineStats:
    active: int
    waiting: int
    capacity: int
    # For metrics (core.metrics); an engine without the numbers leaves the defaults.
    slots: int = 0
    kv_cells: int = 0
    kv_cells_used: int = 0
    placed: int = 0
    """Requests that got a slot (cumulative, like the three counters below)."""
    reuse_hits: int = 0
    """Placed requests that reused at least one cached prompt token."""
    prompt_tokens: int = 0
    """Prompt tokens of placed requests."""
    reused_tokens: int = 0
    """Of which taken from the prefix cache instead of evaluated."""
    decode_calls: int = 0
    load_seconds: float | None = None
    """How long loading the model took; None until it has loaded."""

    retry_after_s: int = 1
    """Seconds a request refused now should wait (estimated from the queue and token rate)."""


@dataclass(frozen=True)
class Embeddings:
    """Unit vectors (little-endian float32 bytes, one per input) and the tokens evaluated."""

    vectors: list[bytes]
    prompt_tokens: int
    model: str
    dimensions: int
    pooling: str
