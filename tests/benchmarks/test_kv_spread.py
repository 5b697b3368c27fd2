"""The KV-spread measurement on the real bundled model, at toy sizes."""

from __future__ import annotations

import argparse

import pytest

from benchmarks import kv_spread

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_the_rounds_cells_stay_in_the_cache_and_each_state_is_measured() -> None:
    args = argparse.Namespace(streams=3, tokens=4, repeats=1, sentences=3, threads=1, n_ctx=1024)
    result = kv_spread.measure(args)
    rates = result["prefill_tps"]
    assert set(rates) == {"fresh", "after the round", "after a burn"}
    assert all(rate > 0 for rate in rates.values())
    # The three finished streams' prompts and answers are still in the shared cache.
    assert result["cells_after_round"][0] >= result["round_prompt_tokens"][0] + 3 * 3
    table = kv_spread.markdown(result, args)
    assert "| after the round |" in table and "of 1024" in table
