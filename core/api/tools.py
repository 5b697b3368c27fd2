"""Tool calling: the request's tools and messages checked and turned into engine inputs (template
context, grammar), and the model's output turned back into OpenAI tool calls.

Output formats recognised:

- ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` (Hermes, Qwen 2.5/3, and the
  generic format nimbus prompts models with when their template knows no tools). A grammar makes
  it exact whenever a call is certain (``tool_choice`` required or a named function) and, lazily,
  from the moment the model opens ``<tool_call>`` under ``auto``; it is read incrementally, so a
  stream announces each call as soon as its name is complete and sends its arguments in pieces.
- ``[TOOL_CALLS]`` followed by a JSON array of ``{"name", "arguments"}`` objects, or by
  ``name[ARGS]{...}`` (Mistral).
- A reply that is only a JSON object ``{"name": ..., "parameters"|"arguments": {...}}`` (or a list
  of them, or several separated by ``;``), optionally after ``<|python_tag|>`` (Llama 3.x).

A call must name a declared function and carry an object of arguments; anything else stays
text."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from core.api.protocol import ChatCompletionRequest, ChatMessageIn
from core.engine.grammar import tool_call_grammar
from core.engine.toolprompt import TOOL_CALL_CLOSE, TOOL_CALL_OPEN
from core.engine.types import ChatMessage, ToolCall
from core.errors import InvalidParameterError

Mode = Literal["auto", "required", "named"]


@dataclass(frozen=True)
class ToolPlan:
    """What a chat request's tools mean for one generation."""

    tools: list[dict[str, Any]]  # as the chat template sees them (OpenAI's shape)
    names: tuple[str, ...]  # the functions a call may name
    mode: Mode
    parallel: bool
    grammar: str | None
    triggers: tuple[str, ...]  # lazy grammar: it applies from the first match
    scanned: bool  # the output is in the <tool_call> format: read it incrementally
    open_tag: str = TOOL_CALL_OPEN


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def chat_messages(body: ChatCompletionRequest) -> list[ChatMessage]:
    """The messages for the engine, checked: role-specific fields in the right roles, a tool
    message with the call it answers and its content."""
    return [_message(i, m) for i, m in enumerate(body.messages)]


def _message(i: int, m: ChatMessageIn) -> ChatMessage:
    where = f"messages.{i}"
    if m.tool_calls is not None and m.role != "assistant":
        raise InvalidParameterError(
            f"{where}: only assistant messages carry tool_calls", param=f"{where}.tool_calls"
        )
    if m.tool_call_id is not None and m.role != "tool":
        raise InvalidParameterError(
            f"{where}: only tool messages carry tool_call_id", param=f"{where}.tool_call_id"
        )
    if m.role == "tool" and m.tool_call_id is None:
        raise InvalidParameterError(
            f"{where}: a tool message needs the tool_call_id it answers",
            param=f"{where}.tool_call_id",
        )
    if m.content is None and m.role != "assistant":
        raise InvalidParameterError(
            f"{where}: a {m.role} message needs content", param=f"{where}.content"
        )
    calls = tuple(ToolCall(c.id, c.function.name, c.function.arguments) for c in m.tool_calls or ())
    return ChatMessage(m.role, m.text(), calls, m.tool_call_id, m.name)


def plan_tools(
    body: ChatCompletionRequest, *, tag: str | None, max_tools: int, max_calls: int
) -> ToolPlan | None:
    """None when the reply is plain text (no tools, or tool_choice 'none'). ``tag``: the
    engine's tool-call tag (None when the model's template teaches another format)."""
    choice = body.tool_choice
    if not body.tools:
        if body.tools is not None:
            raise InvalidParameterError("tools must not be empty", param="tools")
        if choice is not None and choice != "none":
            raise InvalidParameterError(
                "tool_choice needs tools to choose from", param="tool_choice"
            )
        return None
    if len(body.tools) > max_tools:
        raise InvalidParameterError(f"at most {max_tools} tools are allowed", param="tools")
    names: list[str] = []
    for i, tool in enumerate(body.tools):
        fn = tool.function
        if fn.name in names:
            raise InvalidParameterError(
                f"two tools are named {fn.name!r}", param=f"tools.{i}.function.name"
            )
        if fn.parameters is not None and fn.parameters.get("type", "object") != "object":
            raise InvalidParameterError(
                "a function's parameters must be a JSON schema of type 'object'",
                param=f"tools.{i}.function.parameters",
            )
        names.append(fn.name)
    if choice == "none":
        return None
    if body.response_format is not None and body.response_format.type != "text":
        raise InvalidParameterError(
            "response_format cannot be combined with tools (tool_choice 'none' allows it)",
            param="response_format",
        )
    if body.logprobs:
        raise InvalidParameterError(
            "logprobs are not supported together with tools", param="logprobs"
        )
    mode: Mode = "auto"
    allowed = names
    if choice == "required":
        mode = "required"
    elif choice is not None and choice != "auto":
        mode = "named"
        if choice.function.name not in names:
            raise InvalidParameterError(
                f"tool_choice names {choice.function.name!r}, which is not in tools",
                param="tool_choice.function.name",
            )
        allowed = [choice.function.name]
    parallel = body.parallel_tool_calls is not False and mode != "named"
    tools = [tool.model_dump(exclude_none=True) for tool in body.tools]
    open_tag = tag or TOOL_CALL_OPEN
    grammar: str | None = None
    triggers: tuple[str, ...] = ()
    if mode != "auto" or tag is not None:
        params = {t.function.name: t.function.parameters for t in body.tools}
        grammar = tool_call_grammar(
            [(name, params[name]) for name in allowed],
            max_calls=max_calls if parallel else 1,
            open_tag=open_tag,
            close_tag=TOOL_CALL_CLOSE,
        )
        if mode == "auto":
            # Free text until the model opens a call; from there on the call is exact.
            triggers = (rf"[\s\S]*?({re.escape(open_tag)})[\s\S]*",)
    return ToolPlan(
        tools=tools,
        names=tuple(allowed),
        mode=mode,
        parallel=parallel,
        grammar=grammar,
        triggers=triggers,
        scanned=grammar is not None,
        open_tag=open_tag,
    )


# -- reading the output --------------------------------------------------------------------------


@dataclass
class CallEvent:
    """A call was announced (its id, function name), or more of its arguments arrived."""

    index: int
    arguments: str
    id: str | None = None
    name: str | None = None


@dataclass
class ParsedCall:
    id: str
    name: str
    arguments: str


@dataclass
class ToolOutput:
    """The text and calls one choice produced so far."""

    content: list[str] = field(default_factory=list)
    calls: list[ParsedCall] = field(default_factory=list)


_CALL_HEAD = re.compile(r'\s*\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"arguments"\s*:\s*')


class ToolScanner:
    """Reads one choice's output incrementally. ``feed``/``finish`` return what became certain:
    content text (str) and call events (CallEvent), in order; ``output`` accumulates both.

    With ``scanned`` (the <tool_call> format, made exact by a grammar) calls are read as they
    are generated. Otherwise, text that may be a call in another format (it starts with ``{``
    or ``[``, or carries ``[TOOL_CALLS]`` / ``<|python_tag|>``) is held to the end and parsed
    then; if it holds no valid call it goes out as content after all."""

    def __init__(self, plan: ToolPlan) -> None:
        self.plan = plan
        self.open = plan.open_tag
        self.output = ToolOutput()
        self._buffer = ""
        self._state: Literal["text", "head", "args", "tail", "held"] = "text"
        self._depth = 0
        self._in_string = False
        self._escaped = False
        self._seen_text = False

    # -- public --------------------------------------------------------------------------------
    def feed(self, text: str) -> list[str | CallEvent]:
        self._buffer += text
        return self._advance(final=False)

    def finish(self) -> list[str | CallEvent]:
        events = self._advance(final=True)
        if self._state == "held":
            events += self._parse_held()
        self._buffer = ""
        return events

    # -- scanning ------------------------------------------------------------------------------
    def _advance(self, *, final: bool) -> list[str | CallEvent]:
        events: list[str | CallEvent] = []
        while True:
            before = (self._state, len(self._buffer))
            if self._state == "text":
                self._text(events, final)
            elif self._state == "head":
                self._head(events)
            elif self._state == "args":
                self._args(events)
            elif self._state == "tail":
                self._tail()
            if (self._state, len(self._buffer)) == before or self._state == "held":
                return events

    def _text(self, events: list[str | CallEvent], final: bool) -> None:
        buf = self._buffer
        if self.plan.scanned:
            at = buf.find(self.open)
            if at >= 0:
                self._content(events, buf[:at])
                self._buffer = buf[at + len(self.open) :]
                self._state = "head"
                return
            keep = 0 if final else _held_prefix(buf, (self.open,))
            self._content(events, buf[: len(buf) - keep])
            self._buffer = buf[len(buf) - keep :]
            return
        # Another model family's format: decided at the end.
        stripped = buf.lstrip()
        if not self._seen_text and stripped[:1] in ("{", "["):
            self._state = "held"
            return
        for marker in _NATIVE_MARKERS:
            at = buf.find(marker)
            if at >= 0:
                self._content(events, buf[:at])
                self._buffer = buf[at:]
                self._state = "held"
                return
        if not stripped and not final:
            return  # leading whitespace: the format is not known yet
        keep = 0 if final else _held_prefix(buf, _NATIVE_MARKERS)
        self._content(events, buf[: len(buf) - keep])
        self._buffer = buf[len(buf) - keep :]

    def _content(self, events: list[str | CallEvent], text: str) -> None:
        if text:
            self._seen_text = self._seen_text or bool(text.strip())
            self.output.content.append(text)
            events.append(text)

    def _head(self, events: list[str | CallEvent]) -> None:
        m = _CALL_HEAD.match(self._buffer)
        if m is None:
            return
        name = json.loads(f'"{m.group(1)}"')
        call = ParsedCall(new_call_id(), name, "")
        self.output.calls.append(call)
        index = len(self.output.calls) - 1
        events.append(CallEvent(index, "", id=call.id, name=name))
        self._buffer = self._buffer[m.end() :]
        self._state = "args"
        self._depth, self._in_string, self._escaped = 0, False, False

    def _args(self, events: list[str | CallEvent]) -> None:
        """Arguments go out as they come, up to the end of their JSON value."""
        end = None
        for i, ch in enumerate(self._buffer):
            if self._in_string:
                if self._escaped:
                    self._escaped = False
                elif ch == "\\":
                    self._escaped = True
                elif ch == '"':
                    self._in_string = False
            elif ch == '"':
                self._in_string = True
            elif ch in "{[":
                self._depth += 1
            elif ch in "}]":
                self._depth -= 1
                if self._depth == 0:
                    end = i + 1
                    break
        piece = self._buffer if end is None else self._buffer[:end]
        if piece:
            call = self.output.calls[-1]
            call.arguments += piece
            events.append(CallEvent(len(self.output.calls) - 1, piece))
        self._buffer = "" if end is None else self._buffer[end:]
        if end is not None:
            self._state = "tail"

    def _tail(self) -> None:
        at = self._buffer.find(TOOL_CALL_CLOSE)
        if at >= 0:
            self._buffer = self._buffer[at + len(TOOL_CALL_CLOSE) :].lstrip("\n")
            self._state = "text"

    def _parse_held(self) -> list[str | CallEvent]:
        text = self._buffer
        calls = parse_native(text, self.plan.names)
        if not calls:
            events: list[str | CallEvent] = []
            self._content(events, text)
            return events
        out: list[str | CallEvent] = []
        for name, arguments in calls[: None if self.plan.parallel else 1]:
            call = ParsedCall(new_call_id(), name, arguments)
            self.output.calls.append(call)
            index = len(self.output.calls) - 1
            out.append(CallEvent(index, "", id=call.id, name=name))
            out.append(CallEvent(index, arguments))
        return out


_NATIVE_MARKERS = ("[TOOL_CALLS]", "<|python_tag|>")
_MISTRAL_ARGS = re.compile(r"\s*([A-Za-z0-9_-]{1,64})\[ARGS\]")


def parse_native(text: str, names: Sequence[str]) -> list[tuple[str, str]]:
    """(name, arguments JSON) of the calls in ``text`` in a format other than <tool_call>;
    [] when it is not (only) calls of declared functions."""
    body = text.strip()
    if body.startswith("[TOOL_CALLS]"):
        body = body[len("[TOOL_CALLS]") :].strip()
        if _MISTRAL_ARGS.match(body):
            return _mistral_args(body, names)
    body = body.removeprefix("<|python_tag|>").strip()
    items: list[Any] = []
    try:
        value = json.loads(body)
        items = value if isinstance(value, list) else [value]
    except ValueError:
        try:  # Llama 3.x may separate several calls with ';'
            items = [json.loads(part) for part in body.split(";") if part.strip()]
        except ValueError:
            return []
    calls: list[tuple[str, str]] = []
    for item in items:
        if not isinstance(item, dict):
            return []
        name = item.get("name")
        arguments = item.get("arguments", item.get("parameters"))
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments)
            except ValueError:
                return []
        if name not in names or not isinstance(arguments, dict):
            return []
        calls.append((str(name), json.dumps(arguments, ensure_ascii=False)))
    return calls


def _mistral_args(body: str, names: Sequence[str]) -> list[tuple[str, str]]:
    """``name[ARGS]{...}`` repeated (Mistral's newer format)."""
    calls: list[tuple[str, str]] = []
    decoder = json.JSONDecoder()
    rest = body
    while rest.strip():
        m = _MISTRAL_ARGS.match(rest)
        if m is None or m.group(1) not in names:
            return []
        try:
            arguments, end = decoder.raw_decode(rest, m.end())
        except ValueError:
            return []
        if not isinstance(arguments, dict):
            return []
        calls.append((m.group(1), json.dumps(arguments, ensure_ascii=False)))
        rest = rest[end:].lstrip().removeprefix("[TOOL_CALLS]")
    return calls


def _held_prefix(text: str, markers: Sequence[str]) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of a marker."""
    best = 0
    for marker in markers:
        for k in range(min(len(marker) - 1, len(text)), best, -1):
            if text.endswith(marker[:k]):
                best = k
                break
    return best
