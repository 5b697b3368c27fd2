"""The KV cell map behind the kv_cache_used_cells gauge: the scheduler's seq_rm/seq_cp calls
replayed, checked against a brute-force model that tracks every cell by identity."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from core.engine.kvcells import CellMap


class Cells:
    """The brute-force model: each sequence holds a list of cell ids, one per position."""

    def __init__(self, n_seq: int) -> None:
        self.seqs: list[list[int]] = [[] for _ in range(n_seq)]
        self._ids = itertools.count()

    def keep(self, seq: int, n: int) -> None:
        del self.seqs[seq][n:]

    def copy(self, src: int, dst: int, n: int) -> None:
        self.seqs[dst] = self.seqs[src][:n]

    def grow(self, seq: int, k: int) -> None:
        self.seqs[seq] += [next(self._ids) for _ in range(k)]

    def used(self) -> int:
        return len({cell for seq in self.seqs for cell in seq})


def test_a_copied_prefix_is_counted_once_and_growth_needs_no_update() -> None:
    cells = CellMap(2)
    cells.keep(0, 0, 0)  # slot 0 placed afresh, evaluates 10 tokens
    assert cells.used([10, 0]) == 10
    cells.copy(0, 1, 8, 10)  # slot 1 shares slot 0's first 8 cells, then adds 5 of its own
    assert cells.used([10, 13]) == 15
    cells.keep(0, 4, 10)  # slot 0 reuses 4 of its cells for a new prompt of 6 more tokens
    # slot 0's cells 4..9 are gone from it, but 4..7 are still slot 1's
    assert cells.used([10, 13]) == 4 + 4 + 5 + 6
    cells.clear(1)
    assert cells.used([10, 0]) == 10


def test_cutting_the_source_after_a_copy_frees_only_unshared_cells() -> None:
    cells = CellMap(3)
    cells.keep(0, 0, 0)
    cells.copy(0, 1, 6, 6)
    cells.copy(1, 2, 6, 6)  # a copy of a copy: still the same six cells
    assert cells.used([6, 6, 6]) == 6
    cells.clear(0)
    cells.clear(1)
    assert cells.used([0, 0, 6]) == 6


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["keep", "copy", "clear"]),
            st.integers(0, 3),
            st.integers(0, 3),
            st.integers(0, 40),
            st.integers(0, 20),
        ),
        max_size=30,
    )
)
def test_matches_a_cell_by_cell_model(ops: list[tuple[str, int, int, int, int]]) -> None:
    model, cells = Cells(4), CellMap(4)
    for op, a, b, n, grow in ops:
        lengths = [len(s) for s in model.seqs]
        if op == "keep":
            n = min(n, lengths[a])
            cells.keep(a, n, lengths[a])
            model.keep(a, n)
            model.grow(a, grow)
        elif op == "copy" and a != b:
            n = min(n, lengths[a])
            cells.copy(a, b, n, lengths[a])
            model.copy(a, b, n)
            model.grow(b, grow)
        elif op == "clear":
            cells.clear(a)
            model.keep(a, 0)
        assert cells.used([len(s) for s in model.seqs]) == model.used()
