"""Structured output (OpenAI ``response_format``) -> llama.cpp GBNF grammar."""

from __future__ import annotations

import json
from typing import Any

from core.errors import InvalidParameterError


def grammar_for(kind: str | None, schema: dict[str, Any] | None = None) -> str | None:
    """GBNF for ``kind`` 'json_object' or 'json_schema' (with ``schema``); None for plain text."""
    if kind is None or kind == "text":
        return None
    from llama_cpp import llama_grammar  # loads llama.cpp; only needed for structured output

    if kind == "json_object":
        return str(llama_grammar.JSON_GBNF)
    if not schema:
        raise InvalidParameterError(
            "response_format json_schema needs a 'json_schema.schema' object",
            param="response_format.json_schema",
        )
    try:
        return str(llama_grammar.json_schema_to_gbnf(json.dumps(schema)))
    except Exception as exc:
        raise InvalidParameterError(
            f"unsupported JSON schema: {exc}", param="response_format.json_schema"
        ) from exc
