"""Chat templating with the model's own Jinja template (GGUF ``tokenizer.chat_template``).

Message contents are rendered as placeholders and split back out, so the engine can tokenize the
template's own markup with special tokens enabled and the callers' text with them disabled.

The Jinja environment accepts what published templates use (loop controls, the ``generation``
block, transformers' ``tojson``, ``raise_exception``, ``strftime_now``, ``tools``/``documents``).

Tools: a template that knows them (its source mentions ``tools``) gets the tool definitions as
``tools`` and the messages' ``tool_calls`` / ``tool_call_id``, as Hugging Face's templates expect
(arguments as an object); it renders them as markup, so they may not contain the model's control
tokens. Any other template gets them as plain message text (core.engine.toolprompt)."""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

from jinja2 import TemplateError, nodes
from jinja2.ext import Extension, loopcontrols
from jinja2.parser import Parser
from jinja2.sandbox import ImmutableSandboxedEnvironment

from core.engine.templates import CHATML_TEMPLATE, builtin_names
from core.engine.toolprompt import TOOL_CALL_OPEN, generic_tool_messages
from core.engine.types import ChatMessage, PromptSegment
from core.errors import (
    ChatTemplateMissingError,
    EngineError,
    InvalidParameterError,
    InvalidRequestError,
)

__all__ = ["CHATML_TEMPLATE", "ChatTemplate"]

_MENTIONS_TOOLS = re.compile(r"\btools\b")
_MARK = "\u2063"

Tools = Sequence[dict[str, Any]]


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
    ``json.dumps`` keeping non-ASCII text and key order, not Jinja's HTML-escaping, key-sorting
    default, so templates render tools exactly as the model saw them in training."""
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
        self,
        template: str | None,
        *,
        bos_token: str,
        eos_token: str,
        model: str = "this model",
        control_tokens: Callable[[], Sequence[str]] = tuple,
    ) -> None:
        self.source = template or None
        self.bos_token = bos_token
        self.eos_token = eos_token
        self.model = model
        self._control_tokens = control_tokens  # read when tools are first rendered
        source = self.source or ""
        self.knows_tools = bool(_MENTIONS_TOOLS.search(source))
        # Hermes/Qwen-style templates teach the same <tool_call> format the generic one uses.
        self.tool_call_tag = TOOL_CALL_OPEN if TOOL_CALL_OPEN in source else None
        self._template: Any = None
        if self.source is not None:
            try:
                self._template = _compile(self.source)
            except TemplateError as exc:
                raise EngineError(f"invalid chat template: {exc}") from exc

    def render(
        self,
        messages: Sequence[ChatMessage],
        tools: Tools | None = None,
        *,
        documents: Tools | None = None,
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
        uses_tools = bool(tools) or any(m.tool_calls or m.role == "tool" for m in messages)
        if uses_tools and not self.knows_tools:
            messages, tools = generic_tool_messages(messages, tools), None
        elif uses_tools:
            self._check_markup(messages, tools or ())
        marker = f"{_MARK}nimbus{secrets.token_hex(6)}{_MARK}"
        # Empty contents are passed as they are: templates skip them (an assistant turn that only
        # calls tools), and a placeholder would then be missing from the output.
        placeholders = [f"{marker}{i}{marker}" if m.content else "" for i, m in enumerate(messages)]
        try:
            rendered = self._render(messages, placeholders, tools, documents)
        except InvalidRequestError:
            raise
        except TemplateError as exc:
            raise InvalidRequestError(f"chat template failed: {exc}") from exc
        segments: list[PromptSegment] = []
        rest = rendered
        for message, placeholder in zip(messages, placeholders, strict=True):
            if not placeholder or placeholder not in rendered:
                continue  # empty, or left out by the template (a skipped role, a {% break %})
            before, found, after = rest.partition(placeholder)
            if not found:
                # A template that reorders content: fall back to plain substitution.
                return self._render_plain(messages, tools, documents)
            if before:
                segments.append(PromptSegment(before, special=True))
            segments.append(PromptSegment(message.content, special=False))
            rest = after
        if rest:
            segments.append(PromptSegment(rest, special=True))
        if any(s.special and _MARK in s.text for s in segments):
            # A placeholder came out transformed (e.g. | upper): substitute plainly instead.
            return self._render_plain(messages, tools, documents)
        return tuple(segments)

    def _render(
        self,
        messages: Sequence[ChatMessage],
        contents: Sequence[str],
        tools: Tools | None,
        documents: Tools | None,
    ) -> str:
        context: dict[str, Any] = {
            "messages": [_message_dict(m, c) for m, c in zip(messages, contents, strict=True)],
            "add_generation_prompt": True,
            "bos_token": self.bos_token,
            "eos_token": self.eos_token,
            "tools": list(tools) if tools else None,
            "documents": list(documents) if documents else None,
        }
        rendered: str = self._template.render(**context)
        if rendered.startswith(self.bos_token) and self.bos_token:
            # The tokenizer adds BOS itself; keeping the template's copy would double it.
            rendered = rendered[len(self.bos_token) :]
        return rendered

    def _render_plain(
        self, messages: Sequence[ChatMessage], tools: Tools | None, documents: Tools | None
    ) -> tuple[PromptSegment, ...]:
        rendered = self._render(messages, [m.content for m in messages], tools, documents)
        return (PromptSegment(rendered, special=True),)

    def _check_markup(self, messages: Sequence[ChatMessage], tools: Tools) -> None:
        """Tool definitions and calls are rendered as markup (special tokens are read in it):
        none may carry a control token of the model."""
        control = [t for t in self._control_tokens() if t]
        if not control:
            return
        texts: list[tuple[str, str]] = [
            (f"tools.{i}", json.dumps(tool, ensure_ascii=False)) for i, tool in enumerate(tools)
        ]
        for i, m in enumerate(messages):
            for j, call in enumerate(m.tool_calls):
                texts.append((f"messages.{i}.tool_calls.{j}", call.id + call.name + call.arguments))
            if m.tool_call_id:
                texts.append((f"messages.{i}.tool_call_id", m.tool_call_id))
            if m.name:
                texts.append((f"messages.{i}.name", m.name))
        for param, text in texts:
            for token in control:
                if token in text:
                    raise InvalidParameterError(
                        f"{param} contains the model's control token {token!r}", param=param
                    )


def _message_dict(message: ChatMessage, content: str) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role, "content": content}
    if message.tool_calls:
        out["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": _arguments(call.arguments)},
            }
            for call in message.tool_calls
        ]
    if message.tool_call_id is not None:
        out["tool_call_id"] = message.tool_call_id
    if message.name is not None:
        out["name"] = message.name
    return out


def _arguments(text: str) -> Any:
    """Hugging Face templates expect the arguments as an object (they apply ``tojson``)."""
    try:
        return json.loads(text)
    except ValueError:
        return text
