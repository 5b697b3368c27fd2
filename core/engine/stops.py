"""Stop sequences over a token stream: emit text as soon as it cannot be part of a stop string.

Incremental: only the text that could still begin a stop string is held back (shorter than the
longest stop), so each token costs a search of that short tail plus the new text, never of
everything generated so far."""

from __future__ import annotations


class StopMatcher:
    def __init__(self, stops: tuple[str, ...]) -> None:
        self._stops = tuple(s for s in stops if s)
        self._buffer = ""

    def push(self, text: str) -> tuple[str, bool]:
        """Feed new text; return (text safe to emit, whether a stop sequence was hit)."""
        if not self._stops:
            return text, False
        buffer = self._buffer + text if self._buffer else text
        first = -1
        for stop in self._stops:
            i = buffer.find(stop)
            if i >= 0 and (first < 0 or i < first):
                first = i
        if first >= 0:
            self._buffer = ""
            return buffer[:first], True
        cut = len(buffer) - self._held_suffix_length(buffer)
        self._buffer = buffer[cut:]
        return buffer[:cut], False

    def flush(self) -> str:
        out, self._buffer = self._buffer, ""
        return out

    @property
    def held(self) -> str:
        """The text held back (it could be the start of a stop string)."""
        return self._buffer

    def _held_suffix_length(self, buffer: str) -> int:
        """Length of the longest suffix of ``buffer`` that is a proper prefix of a stop string.
        Only places where a stop's first character occurs in the last len(stop) - 1 characters
        are tried (one C-level ``find`` per stop for the common token that holds none)."""
        best = 0
        n = len(buffer)
        for stop in self._stops:
            lead = stop[0]
            pos = buffer.find(lead, max(0, n - len(stop) + 1), n - best)
            while pos >= 0:
                if stop.startswith(buffer[pos:]):
                    best = n - pos
                    break
                pos = buffer.find(lead, pos + 1, n - best)
        return best
