"""benchmarks.cpu_compare: two checkouts' Python CPU per token, side by side."""

from __future__ import annotations

from benchmarks.cpu_compare import PARTS, summary, table


def test_the_summary_is_the_median_of_each_part() -> None:
    rounds = [{p: float(i) for p in PARTS} for i in (3, 1, 2)]
    assert summary(rounds) == {p: 2.0 for p in PARTS}
    assert summary([]) == {}


def test_the_table_gives_after_over_before_of_the_python_part() -> None:
    before = {p: 100.0 for p in PARTS}
    after = {**before, "python": 40.0}
    lines = table({8: {"before": (150.0, before), "after": (160.0, after)}}, ("before", "after"))
    assert lines[2].startswith("| 8 | before | 150.0 | 100 |") and lines[2].endswith("|  |")
    assert lines[3].startswith("| 8 | after | 160.0 | 40 |") and lines[3].endswith("| 0.40x |")
