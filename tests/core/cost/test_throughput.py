from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.cost.throughput import Throughput, from_bench
from core.errors import InvalidParameterError

ROOT = Path(__file__).resolve().parents[3]
BENCH = ROOT / "benchmarks" / "results" / "bench.json"


def test_reads_the_committed_bench_result() -> None:
    data = json.loads(BENCH.read_text())
    nimbus = data["results"]["nimbus"]
    t = from_bench(BENCH)
    assert t.threads == data["meta"]["threads"]
    assert t.single_tps == nimbus["single_tps"]
    assert t.prefill_tps == nimbus["prefill_tps"]
    assert t.aggregate[4] == nimbus["agg_4"] and t.aggregate[8] == nimbus["agg_8"]
    assert t.rss_mb == nimbus["rss_mb"]
    assert str(BENCH) in t.source and data["meta"]["when"] in t.source


def write(tmp_path: Path, payload: object) -> Path:
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(payload))
    return path


def test_falls_back_to_the_in_process_engine(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {
            "meta": {"threads": 3, "when": "today"},
            "results": {"engine": {"single_tps": 10, "prefill_tps": 20, "agg_2": 15, "agg_x": 1}},
        },
    )
    t = from_bench(path)
    assert (t.threads, t.single_tps, t.prefill_tps, t.aggregate) == (3, 10.0, 20.0, {2: 15.0})
    assert "(engine, today" in t.source


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        ("not json at all", "is not JSON"),
        ({"meta": {}}, "is not a `nimbus bench` result"),
        ({"meta": {"threads": 2}, "results": {"llama_server": {}}}, "has no nimbus result"),
        ({"meta": {}, "results": {"nimbus": {"single_tps": 1, "prefill_tps": 1}}}, "meta.threads"),
        ({"meta": {"threads": 2}, "results": {"nimbus": {"single_tps": 0}}}, "single_tps"),
        (
            {"meta": {"threads": 2}, "results": {"nimbus": {"single_tps": 5, "prefill_tps": "x"}}},
            "prefill_tps",
        ),
    ],
)
def test_what_is_not_a_bench_result_is_refused(
    tmp_path: Path, payload: object, needle: str
) -> None:
    path = tmp_path / "bench.json"
    path.write_text(payload if isinstance(payload, str) else json.dumps(payload))
    with pytest.raises(InvalidParameterError, match=needle):
        from_bench(path)


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidParameterError, match="cannot read bench result"):
        from_bench(tmp_path / "nope.json")


def test_aggregate_at_uses_the_most_streams_not_above() -> None:
    t = Throughput(threads=1, single_tps=1, prefill_tps=1, aggregate={1: 5, 2: 8, 8: 20}, source="")
    assert t.aggregate_at(4) == (2, 8)
    assert t.aggregate_at(8) == (8, 20)
    assert Throughput(1, 1, 1, {8: 3}, "").aggregate_at(4) is None
