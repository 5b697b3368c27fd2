"""Regular-expression helpers shared by the settings, the prompt checks and the output filter."""

from __future__ import annotations

import importlib
from typing import Any

# The parser behind `re` knows the shortest and longest text a pattern can match; that bound
# is what lets the stream redactor hold back no more than a match can span.
_parser: Any = importlib.import_module("re._parser")
_UNBOUNDED = 1 << 16


def match_width(pattern: str) -> tuple[int, int | None]:
    """(shortest, longest) match length in characters; longest is None when unbounded.
    Lookaround assertions are zero-width and are not counted."""
    low, high = _parser.parse(pattern).getwidth()
    return int(low), (None if high >= _UNBOUNDED else int(high))
