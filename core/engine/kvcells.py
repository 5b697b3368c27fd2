"""How many KV cells the slots hold, for the ``kv_cache_used_cells`` gauge.

llama.cpp no longer reports used cells, but the scheduler knows what it did to them. A slot's
cells are *runs* of positions, each written by one evaluation (an *origin*): ``seq_cp`` tags the
source's cells with a second sequence (the same cells, not copies), and ``seq_rm`` from a
position drops the slot's cells from there on. A cell is thus the pair (origin, position), and the
cells in use are the union of every slot's runs. The map changes only when a request is placed or
a slot is emptied, never per token: a slot's open run ends at the slot's current length, read
when the gauge is sampled."""

from __future__ import annotations

from collections.abc import Sequence

# (origin, start, end); end -1 = open: up to the slot's current length.
Run = tuple[int, int, int]


class CellMap:
    def __init__(self, n_seq: int) -> None:
        # One tuple per sequence, replaced whole, so a reader on another thread sees either the
        # old or the new runs of a sequence, never half of an update.
        self._runs: list[tuple[Run, ...]] = [() for _ in range(n_seq)]
        self._origins = 0

    def _upto(self, seq: int, n: int, length: int) -> tuple[Run, ...]:
        """The runs of ``seq`` (whose open run ends at ``length``) cut to positions < n."""
        out = []
        for origin, start, end in self._runs[seq]:
            stop = min(length if end < 0 else end, n)
            if stop > start:
                out.append((origin, start, stop))
        return tuple(out)

    def _open(self, at: int) -> Run:
        self._origins += 1
        return (self._origins, at, -1)

    def keep(self, seq: int, n: int, length: int) -> None:
        """After ``seq_rm(seq, n, -1)`` (``n`` = 0: the whole sequence): the first ``n`` cells
        stay; positions from ``n`` on will be new cells. ``length`` is what the slot held."""
        self._runs[seq] = (*self._upto(seq, n, length), self._open(n))

    def copy(self, src: int, dst: int, n: int, src_length: int) -> None:
        """After ``seq_rm(dst)`` + ``seq_cp(src, dst, 0, n)``: ``dst`` shares the source's first
        ``n`` cells; positions from ``n`` on will be new cells."""
        self._runs[dst] = (*self._upto(src, n, src_length), self._open(n))

    def clear(self, seq: int) -> None:
        """After ``seq_rm(seq)`` when the slot is left empty."""
        self._runs[seq] = ()

    def used(self, lengths: Sequence[int]) -> int:
        """Cells in use, given every sequence's current length."""
        spans: dict[int, list[tuple[int, int]]] = {}
        for seq, runs in enumerate(self._runs):
            length = lengths[seq]
            for origin, start, end in runs:
                stop = min(length if end < 0 else end, length)
                if stop > start:
                    spans.setdefault(origin, []).append((start, stop))
        total = 0
        for ranges in spans.values():
            ranges.sort()
            lo, hi = ranges[0]
            for start, stop in ranges[1:]:
                if start > hi:
                    total += hi - lo
                    lo, hi = start, stop
                else:
                    hi = max(hi, stop)
            total += hi - lo
        return total
