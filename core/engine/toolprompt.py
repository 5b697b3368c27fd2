"""Tools for chat templates that know nothing of them (the bundled model's ChatML among them).

Such a template only renders role + content, so the tool definitions go into the system message
as text, an assistant's calls become ``<tool_call>{...}</tool_call>`` lines in its content and a
tool's result becomes a user turn wrapped in ``<tool_response>`` (the Hermes/Qwen convention, which
many small models have seen). Everything stays message content: the caller's text is never read
as template markup or special tokens."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from core.engine.types import ChatMessage

TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"


def describe_tools(tools: Sequence[dict[str, Any]]) -> str:
    signatures = "\n".join(
        json.dumps(tool.get("function", tool), ensure_ascii=False) for tool in tools
    )
    return (
        "You can call functions. Their JSON signatures:\n"
        f"{signatures}\n\n"
        "To call a function, reply with only this line (one line per call):\n"
        f'{TOOL_CALL_OPEN}{{"name": "<function name>", "arguments": <the arguments as a JSON '
        f"object>}}{TOOL_CALL_CLOSE}\n"
        "A function's result comes back inside <tool_response></tool_response>; then answer "
        "the user with it."
    )


def call_line(name: str, arguments: str) -> str:
    args = arguments.strip() or "{}"
    quoted = json.dumps(name, ensure_ascii=False)
    return f'{TOOL_CALL_OPEN}{{"name": {quoted}, "arguments": {args}}}{TOOL_CALL_CLOSE}'


def generic_tool_messages(
    messages: Sequence[ChatMessage], tools: Sequence[dict[str, Any]] | None
) -> list[ChatMessage]:
    """``messages`` rewritten for a template without tool support (see the module docstring)."""
    out: list[ChatMessage] = []
    rest = list(messages)
    if tools:
        text = describe_tools(tools)
        if rest and rest[0].role in ("system", "developer"):
            first = rest.pop(0)
            out.append(ChatMessage(first.role, f"{first.content}\n\n{text}"))
        else:
            out.append(ChatMessage("system", text))
    previous_was_tool = False
    for message in rest:
        if message.role == "tool":
            block = f"<tool_response>\n{message.content}\n</tool_response>"
            if previous_was_tool:  # results of parallel calls: one user turn
                out[-1] = ChatMessage("user", f"{out[-1].content}\n{block}")
            else:
                out.append(ChatMessage("user", block))
            previous_was_tool = True
            continue
        previous_was_tool = False
        if message.role == "assistant" and message.tool_calls:
            lines = [call_line(call.name, call.arguments) for call in message.tool_calls]
            if message.content:
                lines.insert(0, message.content)
            out.append(ChatMessage("assistant", "\n".join(lines)))
        else:
            out.append(ChatMessage(message.role, message.content))
    return out
