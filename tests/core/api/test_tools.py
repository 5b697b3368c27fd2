"""Tool-call reading: the incremental <tool_call> scanner and the other families' formats."""

from __future__ import annotations

import json

import pytest

from core.api.tools import CallEvent, ToolPlan, ToolScanner, parse_native
from core.engine.grammar import rename_rule

NAMES = ("get_weather", "add")


def _plan(scanned: bool, *, parallel: bool = True) -> ToolPlan:
    return ToolPlan(
        tools=[],
        names=NAMES,
        mode="auto",
        parallel=parallel,
        grammar="root ::= x" if scanned else None,
        triggers=(),
        scanned=scanned,
    )


def _run(scanner: ToolScanner, pieces: list[str]) -> list[str | CallEvent]:
    events: list[str | CallEvent] = []
    for piece in pieces:
        events += scanner.feed(piece)
    return events + scanner.finish()


def _chars(text: str) -> list[str]:
    return list(text)


@pytest.mark.parametrize("split", [_chars, lambda t: [t]], ids=["per-char", "whole"])
def test_scanner_reads_calls_as_they_arrive(split: object) -> None:
    text = (
        'Let me look. <tool_call>{"name": "get_weather", "arguments": {"city": "Pa\\"ris", '
        '"days": [1, {"a": "}"}]}}</tool_call><tool_call>{"name":"add","arguments":{}}</tool_call>'
    )
    scanner = ToolScanner(_plan(scanned=True))
    events = _run(scanner, split(text))  # type: ignore[operator]
    content = "".join(e for e in events if isinstance(e, str))
    assert content == "Let me look. "
    calls = [e for e in events if isinstance(e, CallEvent)]
    heads = [e for e in calls if e.name is not None]
    assert [h.name for h in heads] == ["get_weather", "add"]
    assert all(h.id and h.id.startswith("call_") and h.arguments == "" for h in heads)
    first_args = "".join(e.arguments for e in calls if e.index == 0)
    assert json.loads(first_args) == {"city": 'Pa"ris', "days": [1, {"a": "}"}]}
    assert "".join(e.arguments for e in calls if e.index == 1) == "{}"
    assert [c.arguments for c in scanner.output.calls] == [first_args, "{}"]


def test_scanner_streams_arguments_in_pieces_and_never_the_closing_tag() -> None:
    scanner = ToolScanner(_plan(scanned=True))
    events = _run(
        scanner, ["<tool_", 'call>{"name": "add", "arg', 'uments": {"a"', ": 1}}</tool_call>"]
    )
    args = [e.arguments for e in events if isinstance(e, CallEvent) and e.name is None]
    assert len(args) == 2 and "".join(args) == '{"a": 1}'
    assert not [e for e in events if isinstance(e, str)]


def test_scanner_holds_a_possible_tag_but_releases_plain_text() -> None:
    scanner = ToolScanner(_plan(scanned=True))
    assert scanner.feed("a <tool") == ["a "]
    assert scanner.feed("kit") == ["<toolkit"]
    assert scanner.finish() == []


def test_a_call_cut_before_its_name_is_dropped() -> None:
    scanner = ToolScanner(_plan(scanned=True))
    events = _run(scanner, ['<tool_call>{"name": "get_wea'])
    assert events == [] and scanner.output.calls == []


@pytest.mark.parametrize(
    "text",
    [
        '{"name": "get_weather", "parameters": {"city": "Oslo"}}',
        '<|python_tag|>{"name": "get_weather", "arguments": {"city": "Oslo"}}',
        '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Oslo"}}]',
        '[TOOL_CALLS]get_weather[ARGS]{"city": "Oslo"}',
        '{"name": "get_weather", "arguments": "{\\"city\\": \\"Oslo\\"}"}',
    ],
    ids=["llama3", "python-tag", "mistral-json", "mistral-args", "string-arguments"],
)
def test_native_formats_of_other_families(text: str) -> None:
    assert parse_native(text, NAMES) == [("get_weather", '{"city": "Oslo"}')]
    scanner = ToolScanner(_plan(scanned=False))
    events = _run(scanner, _chars(text))
    assert not [e for e in events if isinstance(e, str)]
    [call] = scanner.output.calls
    assert (call.name, json.loads(call.arguments)) == ("get_weather", {"city": "Oslo"})


def test_several_llama_calls_and_the_parallel_switch() -> None:
    text = '{"name": "add", "parameters": {"a": 1}}; {"name": "add", "parameters": {"a": 2}}'
    assert [json.loads(a) for _, a in parse_native(text, NAMES)] == [{"a": 1}, {"a": 2}]
    scanner = ToolScanner(_plan(scanned=False, parallel=False))
    _run(scanner, [text])
    assert len(scanner.output.calls) == 1


@pytest.mark.parametrize(
    "text",
    [
        '{"name": "unknown_fn", "arguments": {}}',
        '{"name": "add", "arguments": [1, 2]}',
        '{"answer": 42}',
        "[1, 2, 3]",
        '{"name": "add", "arguments": {',
    ],
)
def test_anything_else_falls_back_to_text(text: str) -> None:
    assert parse_native(text, NAMES) == []
    scanner = ToolScanner(_plan(scanned=False))
    events = _run(scanner, _chars(text))
    assert "".join(e for e in events if isinstance(e, str)) == text
    assert scanner.output.calls == []


def test_plain_text_streams_at_once_without_a_grammar() -> None:
    scanner = ToolScanner(_plan(scanned=False))
    assert scanner.feed("  Hello") == ["  Hello"]
    assert scanner.feed(" there [TOOL") == [" there "]
    assert scanner.feed("S] no") == ["[TOOLS] no"]


def test_rename_rule_leaves_literals_and_longer_names_alone() -> None:
    gbnf = 'root ::= "root" root-1 [root]\nroot-1 ::= root'
    assert rename_rule(gbnf, "root", "call") == 'call ::= "root" root-1 [root]\nroot-1 ::= call'
