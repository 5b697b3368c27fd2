"""The host-memory store of idle slots' KV cells (no model: states are opaque bytes)."""

from __future__ import annotations

from core.engine.idlecache import IdleCache


def test_the_entry_sharing_the_longest_prefix_is_found_within_the_limit() -> None:
    cache = IdleCache(1000)
    cache.put([1, 2, 3, 4], bytearray(b"a" * 10))
    cache.put([1, 2, 9], bytearray(b"b" * 10))
    assert cache.best([1, 2, 3, 4, 5], limit=10) == (4, 1)
    assert cache.best([1, 2, 3, 4, 5], limit=3) == (3, 1)
    assert cache.best([7, 8], limit=10) is None
    assert cache.take(1).tokens == (1, 2, 3, 4)
    assert len(cache) == 1 and cache.bytes == 10


def test_least_recently_saved_entries_go_first_beyond_the_budget() -> None:
    cache = IdleCache(25)
    cache.put([1], bytearray(b"x" * 10))
    cache.put([2], bytearray(b"y" * 10))
    cache.put([3], bytearray(b"z" * 10))
    assert cache.best([1], limit=5) is None and cache.best([2], limit=5) is not None
    assert cache.bytes == 20
    assert not cache.put([4], bytearray(b"w" * 26))  # alone larger than the budget: not kept
    assert len(cache) == 2


def test_an_entry_that_a_newer_one_extends_is_dropped() -> None:
    cache = IdleCache(1000)
    cache.put([1, 2], bytearray(b"a" * 10))
    cache.put([1, 2, 3], bytearray(b"b" * 10))
    assert len(cache) == 1 and cache.best([1, 2, 3], limit=9) == (3, 2)
