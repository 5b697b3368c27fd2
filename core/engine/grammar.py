"""GBNF grammars for llama.cpp: structured output (OpenAI ``response_format``) and tool calls.

All of them produce compact JSON: at most one space after ``:`` and ``,`` (never newlines or
indentation), no raw control characters in strings, and a json_object at most four levels deep,
so small models do not spend their token budget on layout or on ever deeper nesting."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from core.errors import InvalidParameterError

# A JSON object (response_format json_object): compact, at most four levels of nesting.
JSON_OBJECT_GBNF = r"""
root ::= obj1
obj1 ::= "{" ( str ":" sp val1 ( "," sp str ":" sp val1 )* )? "}"
val1 ::= obj2 | arr2 | prim
obj2 ::= "{" ( str ":" sp val2 ( "," sp str ":" sp val2 )* )? "}"
arr2 ::= "[" ( val2 ( "," sp val2 )* )? "]"
val2 ::= obj3 | arr3 | prim
obj3 ::= "{" ( str ":" sp val3 ( "," sp str ":" sp val3 )* )? "}"
arr3 ::= "[" ( val3 ( "," sp val3 )* )? "]"
val3 ::= obj4 | arr4 | prim
obj4 ::= "{" ( str ":" sp prim ( "," sp str ":" sp prim )* )? "}"
arr4 ::= "[" ( prim ( "," sp prim )* )? "]"
prim ::= str | num | "true" | "false" | "null"
str ::= "\"" char* "\""
char ::= [^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4})
num ::= "-"? ("0" | [1-9] [0-9]{0,15}) ("." [0-9]{1,16})? ([eE] [-+]? [0-9]{1,3})?
sp ::= " "?
"""

# json_schema_to_gbnf's string characters admit raw control characters, which JSON forbids.
_SCHEMA_CHAR = 'char ::= [^"\\\\] |'
_JSON_CHAR = 'char ::= [^"\\\\\\x7F\\x00-\\x1F] |'
# GBNF tokens: string literals, character classes, rule names, anything else.
_GBNF_TOKEN = re.compile(r'"(?:\\.|[^"\\])*"|\[(?:\\.|[^\]\\])*\]|[A-Za-z0-9-]+|\s+|.')


def grammar_for(kind: str | None, schema: dict[str, Any] | None = None) -> str | None:
    """GBNF for ``kind`` 'json_object' or 'json_schema' (with ``schema``); None for plain text."""
    if kind is None or kind == "text":
        return None
    if kind == "json_object":
        return JSON_OBJECT_GBNF
    if not schema:
        raise InvalidParameterError(
            "response_format json_schema needs a 'json_schema.schema' object",
            param="response_format.json_schema",
        )
    return schema_grammar(schema, param="response_format.json_schema.schema")


def schema_grammar(schema: dict[str, Any], *, param: str, prop_order: Sequence[str] = ()) -> str:
    """Compact GBNF for a JSON schema (llama.cpp's converter, single spaces at most)."""
    from llama_cpp import llama_grammar  # loads llama.cpp; only needed for structured output

    try:
        gbnf = str(llama_grammar.json_schema_to_gbnf(json.dumps(schema), list(prop_order)))
    except Exception as exc:
        raise InvalidParameterError(f"unsupported JSON schema: {exc}", param=param) from exc
    return gbnf.replace(_SCHEMA_CHAR, _JSON_CHAR)


def tool_call_grammar(
    functions: Sequence[tuple[str, dict[str, Any] | None]],
    *,
    max_calls: int,
    open_tag: str,
    close_tag: str,
) -> str:
    """Up to ``max_calls`` lines ``<open_tag>{"name": ..., "arguments": {...}}<close_tag>``,
    each naming one of ``functions`` (name, JSON schema of the arguments) with arguments that
    follow its schema; the name comes first so a stream can announce the call early."""
    variants = [
        {
            "type": "object",
            "properties": {
                "name": {"const": name},
                "arguments": parameters or {"type": "object"},
            },
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        for name, parameters in functions
    ]
    schema = variants[0] if len(variants) == 1 else {"oneOf": variants}
    body = rename_rule(
        schema_grammar(schema, param="tools", prop_order=["name", "arguments"]),
        "root",
        "nimbus-call",
    )
    more = f" nimbus-tool-call{{0,{max_calls - 1}}}" if max_calls > 1 else ""
    return (
        f"root ::= nimbus-tool-call{more}\n"
        f"nimbus-tool-call ::= {_literal(open_tag)} nimbus-call {_literal(close_tag)}\n"
        f"{body}"
    )


def rename_rule(gbnf: str, old: str, new: str) -> str:
    """``gbnf`` with every use of rule ``old`` (not text inside literals) named ``new``."""
    return "".join(new if token == old else token for token in _GBNF_TOKEN.findall(gbnf))


def _literal(text: str) -> str:
    return json.dumps(text)
