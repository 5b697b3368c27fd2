"""Redaction of sensitive data in generated text: whole responses and token streams.

One scanner serves both paths. Patterns are searched leftmost-first (ties: earlier pattern
wins) and every match is replaced. On a stream the scanner runs in *partial* mode (the
``regex`` module reports a match that could still complete with more input): text that cannot
be part of a match goes out at once; text from the earliest possible match start is held until
the match is decided, which is never more than the longest text a pattern can match (plus a
small lookaround margin). So the streamed result equals the filter applied to the whole text.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import regex

from core.errors import SecurityConfigError
from core.patterns import match_width
from core.settings import OutputSettings

# Characters of context kept before, and looked at after, a match: lookbehinds/lookaheads in
# patterns may examine at most this many characters.
LOOKAROUND = 32

SSN = r"(?<![\d-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\d-])"
CARD = r"(?<!\d)\d(?:[ -]?\d){12,18}(?!\d)"
PASSWORD = r"(?i)\b(?:password|passwd|passphrase|pwd)[\"']?\s{0,3}[:=]\s{0,3}[\"']?[^\s\"',;]{1,64}"

# A validator gets the matched text and returns the (start, end) slice to redact, or None.
Validator = Callable[[str], "tuple[int, int] | None"]


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def card_span(text: str) -> tuple[int, int] | None:
    """The longest run of whole digit groups in ``text`` that is a Luhn-valid 13-19 digit number
    (so a card followed by an unrelated number is still found), or None."""
    groups: list[tuple[int, int]] = []  # (start, end) of each digit group
    start = 0
    for i, ch in enumerate(text):
        if not ch.isdigit():
            groups.append((start, i))
            start = i + 1
    groups.append((start, len(text)))
    best: tuple[int, int] | None = None
    for a in range(len(groups)):
        for b in range(len(groups) - 1, a - 1, -1):
            lo, hi = groups[a][0], groups[b][1]
            digits = "".join(ch for ch in text[lo:hi] if ch.isdigit())
            if 13 <= len(digits) <= 19 and luhn_ok(digits):
                if best is None or hi - lo > best[1] - best[0]:
                    best = (lo, hi)
                break
    return best


@dataclass(frozen=True)
class _Rule:
    name: str
    pattern: regex.Pattern[str]
    validate: Validator | None


class OutputFilter:
    """Redacts the configured patterns. ``filter(text)`` for whole texts, ``stream()`` for
    streams; both report how many matches were replaced."""

    def __init__(self, settings: OutputSettings) -> None:
        self.enabled = settings.enabled
        self.replacement = settings.replacement
        specs: list[tuple[str, str, Validator | None]] = []
        if settings.redact_credit_cards:
            specs.append(("credit_card", CARD, card_span))
        if settings.redact_ssn:
            specs.append(("ssn", SSN, None))
        if settings.redact_passwords:
            specs.append(("password", PASSWORD, None))
        specs += [(f"pattern_{i}", p, None) for i, p in enumerate(settings.extra_patterns)]
        self.rules: list[_Rule] = []
        longest = 1
        for name, source, validate in specs:
            try:
                compiled = regex.compile(source)
            except regex.error as exc:
                raise SecurityConfigError(f"output pattern {source!r}: {exc}") from exc
            width = match_width(source)[1]
            if width is None:
                raise SecurityConfigError(f"output pattern {source!r} is unbounded")
            longest = max(longest, width)
            self.rules.append(_Rule(name, compiled, validate))
        self.max_span = longest
        self.enabled = self.enabled and bool(self.rules)

    def filter(self, text: str) -> tuple[str, int]:
        if not self.enabled or not text:
            return text, 0
        out, count, _ = self.scan(text, 0, final=True)
        return out, count

    def stream(self) -> StreamRedactor:
        return StreamRedactor(self)

    def spans(self, text: str) -> list[tuple[int, int]]:
        """(start, end) of every stretch of ``text`` that ``filter`` replaces."""
        found: list[tuple[int, int]] = []
        if self.enabled and text:
            self.scan(text, 0, final=True, spans=found)
        return found

    def scan(
        self, buf: str, pos: int, *, final: bool, spans: list[tuple[int, int]] | None = None
    ) -> tuple[str, int, int]:
        """Redact ``buf[pos:]`` (``buf[:pos]`` is context for lookbehinds). Returns the output,
        the number of redactions and how far the input was consumed; when not ``final``, the
        rest (a possible match that more input could change) is left for the next call.
        ``spans`` (optional) receives the (start, end) in ``buf`` of each replaced stretch."""
        out: list[str] = []
        count = 0
        cursor = pos
        end = len(buf)
        while cursor < end:
            best: regex.Match[str] | None = None
            best_rule: _Rule | None = None
            for rule in self.rules:
                m = rule.pattern.search(buf, cursor, partial=not final)
                if m is not None and (best is None or m.start() < best.start()):
                    best, best_rule = m, rule
            if best is None or best_rule is None:
                break
            start = best.start()
            undecided = best.partial or start + self.max_span + LOOKAROUND > end
            if not final and undecided:
                out.append(buf[cursor:start])
                return "".join(out), count, start
            if best.end() == start:  # an empty partial at the very end: nothing to decide
                break
            out.append(buf[cursor:start])
            text = best.group()
            span = best_rule.validate(text) if best_rule.validate else (0, len(text))
            if span is None:
                out.append(text)
            else:
                out += [text[: span[0]], self.replacement, text[span[1] :]]
                count += 1
                if spans is not None:
                    spans.append((start + span[0], start + span[1]))
            cursor = best.end()
        out.append(buf[cursor:end])
        return "".join(out), count, end


class StreamRedactor:
    """Feeds text deltas through an OutputFilter; ``feed`` returns what is safe to send now,
    ``flush`` the rest at the end of the stream. ``redactions`` counts replacements."""

    def __init__(self, owner: OutputFilter) -> None:
        self._filter = owner
        self._context = ""  # already-sent input, for lookbehinds
        self._pending = ""
        self._base = 0  # offset in the whole input of self._context's start
        self.redactions = 0
        self.spans: list[tuple[int, int]] = []  # replaced stretches, as offsets in the input

    @property
    def held(self) -> int:
        """Characters fed but not yet decided (and so not yet returned)."""
        return len(self._pending)

    def feed(self, text: str) -> str:
        if not self._filter.enabled:
            return text
        return self._run(self._pending + text, final=False)

    def flush(self) -> str:
        if not self._filter.enabled or not self._pending:
            return ""
        return self._run(self._pending, final=True)

    def _run(self, pending: str, *, final: bool) -> str:
        buf = self._context + pending
        pos = len(self._context)
        found: list[tuple[int, int]] = []
        out, count, consumed = self._filter.scan(buf, pos, final=final, spans=found)
        self.redactions += count
        self.spans += [(self._base + a, self._base + b) for a, b in found]
        kept_from = max(0, consumed - LOOKAROUND)
        self._base += kept_from
        self._context = buf[kept_from:consumed]
        self._pending = buf[consumed:]
        return out

    async def wrap(self, stream: AsyncIterator[str]) -> AsyncIterator[str]:
        """The stream's deltas, redacted; empty deltas are skipped."""
        async for text in stream:
            if safe := self.feed(text):
                yield safe
        if rest := self.flush():
            yield rest
