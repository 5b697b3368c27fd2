"""Idle slots' KV cells in host memory.

llama.cpp attends over every KV cell up to the highest one in use, masked or not, so cells a
finished request leaves in the shared cache make every later step attend over more of it (a long
prompt after a busy round was evaluated at 0.57-0.70x the speed of a fresh engine). When a
request starts, the other idle slots' cells are therefore saved in this store
(``llama_state_seq_get_data``) and cleared from the context; a prompt that shares a longer prefix
with a saved entry than with any slot gets it restored into its slot. Least recently saved
entries go first once ``budget_bytes`` is reached.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from core.engine.lowlevel import common_prefix


@dataclass(frozen=True)
class Saved:
    tokens: tuple[int, ...]
    state: bytearray


class IdleCache:
    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self._entries: OrderedDict[int, Saved] = OrderedDict()
        self._next = 0
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, tokens: Sequence[int], state: bytearray) -> bool:
        """Keep ``state`` (the cells of ``tokens``); False when it alone exceeds the budget."""
        if not tokens or len(state) > self.budget_bytes:
            return False
        # A saved entry that is a prefix of the new one adds nothing the new one lacks.
        for key, entry in list(self._entries.items()):
            if common_prefix(entry.tokens, tokens) == len(entry.tokens):
                self._drop(key)
        self._next += 1
        self._entries[self._next] = Saved(tuple(tokens), state)
        self.bytes += len(state)
        while self.bytes > self.budget_bytes:
            self._drop(next(iter(self._entries)))
        return True

    def best(self, tokens: Sequence[int], limit: int) -> tuple[int, int] | None:
        """(tokens shared, key) of the entry sharing the longest prefix with ``tokens`` (at most
        ``limit``), or None when none shares any."""
        found: tuple[int, int] | None = None
        for key, entry in self._entries.items():
            shared = min(common_prefix(entry.tokens, tokens), limit)
            if shared > 0 and (found is None or shared > found[0]):
                found = (shared, key)
        return found

    def take(self, key: int) -> Saved:
        entry = self._entries[key]
        self._drop(key)
        return entry

    def _drop(self, key: int) -> None:
        self.bytes -= len(self._entries.pop(key).state)
