"""Grammar text (no model needed): compact JSON, JSON-valid strings, tool-call structure."""

from __future__ import annotations

import pytest

from core.engine.grammar import JSON_OBJECT_GBNF, grammar_for, schema_grammar, tool_call_grammar
from core.errors import InvalidParameterError

SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}


def test_json_object_allows_single_spaces_only_and_bounded_nesting() -> None:
    assert grammar_for("json_object") == JSON_OBJECT_GBNF
    assert '"\\n"' not in JSON_OBJECT_GBNF and "[ \\t]" not in JSON_OBJECT_GBNF
    assert 'sp ::= " "?' in JSON_OBJECT_GBNF
    assert "obj5" not in JSON_OBJECT_GBNF and "obj4 ::=" in JSON_OBJECT_GBNF
    assert grammar_for("text") is None and grammar_for(None) is None


def test_schema_strings_refuse_raw_control_characters() -> None:
    gbnf = schema_grammar(SCHEMA, param="p")
    assert 'char ::= [^"\\\\\\x7F\\x00-\\x1F] |' in gbnf
    assert 'space ::= " "?' in gbnf


def test_a_bad_schema_names_the_parameter() -> None:
    with pytest.raises(InvalidParameterError) as err:
        grammar_for("json_schema", {"$ref": "#/nowhere"})
    assert err.value.param == "response_format.json_schema.schema"
    with pytest.raises(InvalidParameterError) as err:
        grammar_for("json_schema", None)
    assert err.value.param == "response_format.json_schema"


def test_tool_call_grammar() -> None:
    one = tool_call_grammar(
        [("get_weather", SCHEMA)], max_calls=1, open_tag="<tool_call>", close_tag="</tool_call>"
    )
    assert one.startswith("root ::= nimbus-tool-call\n")
    assert 'nimbus-tool-call ::= "<tool_call>" nimbus-call "</tool_call>"' in one
    assert '"\\"get_weather\\""' in one and "root ::= " not in one.split("\n", 1)[1]
    several = tool_call_grammar(
        [("a", None), ("b", SCHEMA)], max_calls=3, open_tag="<tool_call>", close_tag="</tool_call>"
    )
    assert several.startswith("root ::= nimbus-tool-call nimbus-tool-call{0,2}\n")
    assert "nimbus-call ::= alternative-0 | alternative-1" in several
