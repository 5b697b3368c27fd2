"""Stop sequences over a token stream: emit text as soon as it cannot be part of a stop string."""

from __future__ import annotations


class StopMatcher:
    def __init__(self, stops: tuple[str, ...]) -> None:
        self._stops = tuple(s for s in stops if s)
        self._buffer = ""

    def push(self, text: str) -> tuple[str, bool]:
        """Feed new text; return (text safe to emit, whether a stop sequence was hit)."""
        if not self._stops:
            return text, False
        self._buffer += text
        hits = [i for i in (self._buffer.find(s) for s in self._stops) if i >= 0]
        if hits:
            out = self._buffer[: min(hits)]
            self._buffer = ""
            return out, True
        hold = self._held_suffix_length()
        cut = len(self._buffer) - hold
        out, self._buffer = self._buffer[:cut], self._buffer[cut:]
        return out, False

    def flush(self) -> str:
        out, self._buffer = self._buffer, ""
        return out

    def _held_suffix_length(self) -> int:
        """Length of the longest buffer suffix that is a proper prefix of some stop string."""
        best = 0
        for stop in self._stops:
            for k in range(min(len(stop) - 1, len(self._buffer)), best, -1):
                if self._buffer.endswith(stop[:k]):
                    best = k
                    break
        return best
