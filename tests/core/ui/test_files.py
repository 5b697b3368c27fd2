"""Byte ranges and validators for file responses (RFC 9110 semantics)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import RangeNotSatisfiableError
from core.ui.files import byte_range


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        (None, 10, None),
        ("", 10, None),
        ("bytes=0-3", 10, (0, 3)),
        ("bytes=4-", 10, (4, 9)),
        ("bytes=-3", 10, (7, 9)),
        ("bytes=-30", 10, (0, 9)),  # a suffix longer than the file is the whole file
        ("bytes=5-100", 10, (5, 9)),  # the end is clamped
        ("bytes=0-1,4-5", 10, None),  # several ranges: the whole file (allowed by RFC 9110)
        ("items=0-3", 10, None),  # another unit is ignored
        ("bytes=5-2", 10, None),  # invalid: ignored
        ("bytes=-", 10, None),
    ],
)
def test_byte_range(header: str | None, size: int, expected: tuple[int, int] | None) -> None:
    assert byte_range(header, size) == expected


@pytest.mark.parametrize(("header", "size"), [("bytes=10-", 10), ("bytes=-0", 10), ("bytes=0-", 0)])
def test_unsatisfiable_ranges_raise_416(header: str, size: int) -> None:
    with pytest.raises(RangeNotSatisfiableError) as info:
        byte_range(header, size)
    assert info.value.status == 416


@given(st.integers(1, 10_000), st.integers(0, 20_000), st.integers(0, 20_000))
def test_a_satisfiable_range_stays_inside_the_file(size: int, a: int, b: int) -> None:
    first, last = min(a, b), max(a, b)
    if first >= size:
        with pytest.raises(RangeNotSatisfiableError):
            byte_range(f"bytes={first}-{last}", size)
        return
    span = byte_range(f"bytes={first}-{last}", size)
    assert span is not None
    assert 0 <= span[0] <= span[1] <= size - 1
    assert span == (first, min(last, size - 1))
