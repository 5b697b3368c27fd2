"""The KV-spread measurement on the real bundled model, at toy sizes."""

from __future__ import annotations

import argparse

import pytest

from benchmarks import kv_spread

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_the_rounds_cells_stay_in_the_cache_and_each_state_is_measured() -> None:
    args = argparse.Namespace(
        streams=3, tokens=4, repeats=1, sentences=3, threads=1, n_ctx=1024, idle_cache_mb=16
    )
    result = kv_spread.measure(args)
    rates = result["prefill_tps"]
    assert set(rates) == {"fresh", kv_spread.KEPT, kv_spread.MOVED, "after a burn"}
    assert all(rate > 0 for rate in rates.values())
    # The three finished streams' prompts and answers are still in the shared cache until the
    # next request starts, with or without the host-memory store.
    pairs = zip(result["cells_after_round"], result["round_prompt_tokens"], strict=True)
    for cells, prompt in pairs:
        assert cells >= prompt + 3 * 3
    table = kv_spread.markdown(result, args)
    assert f"| {kv_spread.MOVED} |" in table and "of 1024" in table
