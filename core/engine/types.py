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
    deadline: float | None = None
    """time.monotonic() after which generation ends with finish_reason 'length'."""
    add_bos: bool = True


@dataclass
class Completion:
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

    @property
    def tokens_per_second(self) -> float:
        return self.completion_tokens / self.total_s if self.total_s > 0 else 0.0


@dataclass(frozen=True)
class ChatMessage:
    role: str
    content: str


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
