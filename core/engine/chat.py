"""Chat templating with the model's own Jinja template (GGUF ``tokenizer.chat_template``).

Message contents are rendered as placeholders and split back out, so the engine can tokenize the
template's own markup with special tokens enabled and the callers' text with them disabled."""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

from jinja2 import TemplateError, nodes
from jinja2.ext import Extension, loopcontrols
from jinja2.parser import Parser
from jinja2.sandbox import ImmutableSandboxedEnvironment

from core.engine.templates import CHATML_TEMPLATE, builtin_names
from core.engine.types import ChatMessage, PromptSegment
from core.errors import ChatTemplateMissingError, EngineError, InvalidRequestError

__all__ = ["CHATML_TEMPLATE", "ChatTemplate"]


def _raise(message: str) -> None:
    raise InvalidRequestError(f"chat template rejected the messages: {message}")


def _tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    """``tojson`` as chat templates are written for (transformers, llama-cpp-python): plain
    ``json.dumps`` keeping non-ASCII text, not Jinja's HTML-escaping, key-sorting default."""
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


class _GenerationBlock(Extension):
    """``{% generation %}...{% endgeneration %}`` (marks assistant text for training masks in
    transformers): renders its body unchanged."""

    tags = {"generation"}  # noqa: RUF012 - jinja2's declared class attribute

    def parse(self, parser: Parser) -> list[nodes.Node]:
        next(parser.stream)
        return parser.parse_statements(("name:endgeneration",), drop_needle=True)


@lru_cache(maxsize=8)
def _compile(template: str) -> Any:
    # The same environment as transformers' and llama-cpp-python's chat formatters, sandboxed.
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols, _GenerationBlock]
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(template)


class ChatTemplate:
    """A model's chat template (None: the model has none, and chat requests say so)."""

    def __init__(
        self, template: str | None, *, bos_token: str, eos_token: str, model: str = "this model"
    ) -> None:
        self.source = template or None
        self.bos_token = bos_token
        self.eos_token = eos_token
        self.model = model
        self._template: Any = None
        if self.source is not None:
            try:
                self._template = _compile(self.source)
            except TemplateError as exc:
                raise EngineError(f"invalid chat template: {exc}") from exc

    def render(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        documents: Sequence[Mapping[str, Any]] | None = None,
    ) -> tuple[PromptSegment, ...]:
        """Render ``messages`` plus the assistant generation prompt as prompt segments.
        ``tools`` and ``documents`` reach the template as the variables of those names."""
        if self._template is None:
            raise ChatTemplateMissingError(
                f"{self.model} has no chat template (its GGUF carries no "
                "tokenizer.chat_template): send text to /v1/completions or /api/generate with "
                "raw=true, or set NIMBUS_ENGINE__CHAT_TEMPLATE to a template file, Jinja text "
                f"or a built-in format ({', '.join(builtin_names())})",
                param="messages",
            )
        marker = f"\u2063nimbus{secrets.token_hex(6)}\u2063"
        placeholders = [f"{marker}{i}{marker}" for i in range(len(messages))]
        context = {"tools": tools, "documents": documents}
        try:
            rendered: str = self._template.render(
                messages=[
                    {"role": m.role, "content": p}
                    for m, p in zip(messages, placeholders, strict=True)
                ],
                add_generation_prompt=True,
                bos_token=self.bos_token,
                eos_token=self.eos_token,
                **context,
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
            if placeholder not in rendered:
                continue  # the template left this message out (a skipped role, a {% break %})
            before, found, after = rest.partition(placeholder)
            if not found:
                # A template that transforms or drops content: fall back to plain substitution.
                return self._render_plain(messages, context)
            if before:
                segments.append(PromptSegment(before, special=True))
            if message.content:
                segments.append(PromptSegment(message.content, special=False))
            rest = after
        if rest:
            segments.append(PromptSegment(rest, special=True))
        if any(s.special and "\u2063" in s.text for s in segments):
            # A placeholder came out transformed (e.g. | upper): substitute plainly instead.
            return self._render_plain(messages, context)
        return tuple(segments)

    def _render_plain(
        self, messages: Sequence[ChatMessage], context: dict[str, Any]
    ) -> tuple[PromptSegment, ...]:
        rendered: str = self._template.render(
            messages=[{"role": m.role, "content": m.content} for m in messages],
            add_generation_prompt=True,
            bos_token=self.bos_token,
            eos_token=self.eos_token,
            **context,
        )
        if rendered.startswith(self.bos_token) and self.bos_token:
            rendered = rendered[len(self.bos_token) :]
        return (PromptSegment(rendered, special=True),)
