"""Log-probabilities in OpenAI's shapes, kept in step with the output filter.

The engine gives one entry per generated token (the end-of-generation token excepted): its
bytes, its log-probability and the most likely alternatives. A token's text is exactly what the
output filter would redact, so entries whose text overlaps a redacted stretch are masked (token
= the replacement for the first, empty for the rest, no alternatives); on a stream an entry goes
out only once the filter has passed the text it covers."""

from __future__ import annotations

import codecs
from collections.abc import Sequence
from typing import Any

from core.engine.types import TokenLogprob
from core.security.output import OutputFilter, StreamRedactor

# OpenAI's stand-in for "as unlikely as it gets" (a JSON number, unlike -inf).
FLOOR = -9999.0


def _text(piece: bytes) -> str:
    return piece.decode("utf-8", "replace")


def _value(logprob: float) -> float:
    return max(logprob, FLOOR)


def chat_entry(lp: TokenLogprob) -> dict[str, Any]:
    return {
        "token": _text(lp.piece),
        "logprob": _value(lp.logprob),
        "bytes": list(lp.piece),
        "top_logprobs": [
            {"token": _text(piece), "logprob": _value(v), "bytes": list(piece)}
            for piece, v in lp.top
        ],
    }


def chat_logprobs(entries: Sequence[TokenLogprob]) -> dict[str, Any]:
    return {"content": [chat_entry(e) for e in entries], "refusal": None}


def completion_logprobs(entries: Sequence[TokenLogprob], offset: int = 0) -> dict[str, Any]:
    """The legacy /v1/completions shape; ``offset``: where the completion starts in ``text``
    (after an echoed prompt)."""
    tokens = [_text(e.piece) for e in entries]
    offsets = []
    for token in tokens:
        offsets.append(offset)
        offset += len(token)
    return {
        "tokens": tokens,
        "token_logprobs": [_value(e.logprob) for e in entries],
        "top_logprobs": [{_text(p): _value(v) for p, v in e.top} for e in entries],
        "text_offset": offsets,
    }


class LogprobGate:
    """One choice's entries, positioned in its text: ``add`` them as they are generated,
    ``release`` those whose text the redactor has decided (masked where it redacted)."""

    def __init__(self, output: OutputFilter, redactor: StreamRedactor | None = None) -> None:
        self._output = output
        self._redactor = redactor
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._position = 0
        self._pending: list[tuple[int, int, TokenLogprob]] = []
        self._replaced: set[int] = set()  # redacted stretches (by start) already shown
        self._fed = 0

    def add(self, entries: Sequence[TokenLogprob], fed_text: str = "") -> None:
        """``entries`` were generated and ``fed_text`` went into the redactor with them."""
        self._fed += len(fed_text)
        for entry in entries:
            start = self._position
            self._position += len(self._decoder.decode(entry.piece))
            self._pending.append((start, self._position, entry))

    def release(self, *, final: bool = False) -> list[TokenLogprob]:
        decided = self._fed - (self._redactor.held if self._redactor is not None else 0)
        spans = self._redactor.spans if self._redactor is not None else []
        out: list[TokenLogprob] = []
        while self._pending and (final or self._pending[0][1] <= decided):
            start, end, entry = self._pending.pop(0)
            out.append(self._mask(entry, start, end, spans))
        return out

    def settle(self, entries: Sequence[TokenLogprob], text: str) -> list[TokenLogprob]:
        """A whole choice at once: ``text`` is its unfiltered text."""
        self._redactor = None
        spans = self._output.spans(text)
        position = 0
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        out = []
        for entry in entries:
            start = position
            position += len(decoder.decode(entry.piece))
            out.append(self._mask(entry, start, position, spans))
        return out

    def _mask(
        self, entry: TokenLogprob, start: int, end: int, spans: Sequence[tuple[int, int]]
    ) -> TokenLogprob:
        end = max(end, start + 1)  # a token holding part of a character touches that character
        hit = next((a for a, b in spans if a < end and start < b), None)
        if hit is None:
            return entry
        text = "" if hit in self._replaced else self._output.replacement
        self._replaced.add(hit)
        return TokenLogprob(text.encode(), entry.logprob, ())
