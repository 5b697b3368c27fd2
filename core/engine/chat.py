"""Chat templating with the model's own Jinja template (GGUF ``tokenizer.chat_template``).

Message contents are rendered as placeholders and split back out, so the engine can tokenize the
template's own markup with special tokens enabled and the callers' text with them disabled."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from core.engine.types import ChatMessage, PromptSegment
from core.errors import EngineError, InvalidRequestError

# Used when a GGUF carries no template: ChatML, which SmolLM2 and many small models use.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def _raise(message: str) -> None:
    raise InvalidRequestError(f"chat template rejected the messages: {message}")


@lru_cache(maxsize=8)
def _compile(template: str) -> Any:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = _raise
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(template)


class ChatTemplate:
    def __init__(self, template: str | None, *, bos_token: str, eos_token: str) -> None:
        self.source = template or CHATML_TEMPLATE
        self.bos_token = bos_token
        self.eos_token = eos_token
        try:
            self._template = _compile(self.source)
        except TemplateError as exc:
            raise EngineError(f"invalid chat template: {exc}") from exc

    def render(self, messages: Sequence[ChatMessage]) -> tuple[PromptSegment, ...]:
        """Render ``messages`` plus the assistant generation prompt as prompt segments."""
        marker = f"\u2063nimbus{secrets.token_hex(6)}\u2063"
        placeholders = [f"{marker}{i}{marker}" for i in range(len(messages))]
        try:
            rendered: str = self._template.render(
                messages=[
                    {"role": m.role, "content": p}
                    for m, p in zip(messages, placeholders, strict=True)
                ],
                add_generation_prompt=True,
                bos_token=self.bos_token,
                eos_token=self.eos_token,
            )
        except InvalidRequestError:
            raise
        except TemplateError as exc:
            raise InvalidRequestError(f"chat template failed: {exc}") from exc
        if rendered.startswith(self.bos_token) and self.bos_token:
            # The tokenizer adds BOS itself; keeping the template's copy would double it.
            rendered = rendered[len(self.bos_token) :]
        segments: list[PromptSegment] = []
        rest = rendered
        for message, placeholder in zip(messages, placeholders, strict=True):
            before, found, after = rest.partition(placeholder)
            if not found:
                # A template that transforms or drops content: fall back to plain substitution.
                return self._render_plain(messages)
            if before:
                segments.append(PromptSegment(before, special=True))
            if message.content:
                segments.append(PromptSegment(message.content, special=False))
            rest = after
        if rest:
            segments.append(PromptSegment(rest, special=True))
        return tuple(segments)

    def _render_plain(self, messages: Sequence[ChatMessage]) -> tuple[PromptSegment, ...]:
        rendered: str = self._template.render(
            messages=[{"role": m.role, "content": m.content} for m in messages],
            add_generation_prompt=True,
            bos_token=self.bos_token,
            eos_token=self.eos_token,
        )
        if rendered.startswith(self.bos_token) and self.bos_token:
            rendered = rendered[len(self.bos_token) :]
        return (PromptSegment(rendered, special=True),)
