from __future__ import annotations

import builtins
import json
from pathlib import Path
from typing import Any

import pytest

from core.cli import main
from core.cost import model as m
from core.cost.breakeven import break_even
from core.cost.prices import load_book
from core.cost.render import (
    plot_break_even,
    plot_report,
    report_json,
    report_text,
    table,
    usd,
)
from core.cost.throughput import Throughput
from core.errors import InvalidParameterError

ROOT = Path(__file__).resolve().parents[3]
BENCH = ROOT / "benchmarks" / "results" / "bench.json"
TPUT = Throughput(threads=1, single_tps=50, prefill_tps=100, aggregate={4: 120}, source="hand")


def small_report() -> m.Report:
    shape = m.Shape(
        lambda_memory_mb=(1769, 3538),
        modal_cpu=1.0,
        modal_memory_mb=4096,
        modal_min_containers=1,
        slots=4,
    )
    book = load_book([], ["api.test.input=1", "api.test.output=2"])
    return m.build_report(m.Workload(200, 300), 5e6, "test", shape, book, {1: TPUT})


def test_money_and_tables_read_well() -> None:
    assert [usd(x) for x in (4000, 1.5, 0.4, 0.25, 0.0075, 0.000263, 0, None, -3.2)] == [
        "$4,000.00",
        "$1.50",
        "$0.40",
        "$0.25",
        "$0.0075",
        "$0.000263",
        "$0",
        "—",
        "-$3.20",
    ]
    md = table(["a", "b"], [["x|y", "1"]], markdown=True)
    assert md.splitlines() == ["| a | b |", "|---|---|", "| x\\|y | 1 |"]
    text = table(["name", "n"], [["long name", "1"]], markdown=False)
    assert text.splitlines()[0] == "name       n"


def test_report_table_has_measured_and_unmeasured_rows() -> None:
    text = report_text(small_report(), markdown=True)
    rows = {
        line.split(" | ")[0].lstrip("| "): line
        for line in text.splitlines()
        if line.startswith("| ")
    }
    lam = rows["AWS Lambda 1769 MB (x86_64)"]
    # 200/100 + 300/50 = 8 s x 1.7275 GB x $0.0000166667 + $0.0000002
    assert "| 8.00 |" in lam and "$0.000231 |" in lam and "from the first token" in lam
    assert "not measured (see notes)" in rows["AWS Lambda 3538 MB (x86_64)"]
    assert "needs a throughput at 2 thread(s)" in text  # the note says what to run
    cloud = rows["Cloudflare Worker -> AWS Lambda 1769 MB (x86_64)"]
    assert "| $5.00 |" in cloud
    assert "test (break-even target)" in text
    assert "Assumptions:" in text and "prefill is billed time too" in text
    assert "overridden: api.test.input=1 (command line)" in text


def test_report_json_carries_every_number() -> None:
    data = report_json(small_report())
    lam = next(p for p in data["platforms"] if p["key"] == "lambda-1769")
    assert lam["seconds_per_request"] == pytest.approx(8.0)
    assert lam["usd_per_request"] == pytest.approx(8 * 1769 / 1024 * 0.0000166667 + 0.2e-6)
    assert lam["break_even_tokens"] == 0
    missing = next(p for p in data["platforms"] if p["key"] == "lambda-3538")
    assert missing["usd_per_request"] is None and "2 thread(s)" in missing["missing"]
    api = next(a for a in data["apis"] if a["name"] == "test")
    assert api["usd_per_request"] == pytest.approx(0.0008)
    assert data["prices"]["api.test.output"]["source"] == "command line"
    json.dumps(data)  # serialisable as it is


def _is_png(path: Path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_chart_files(tmp_path: Path) -> None:
    out = plot_report(small_report(), tmp_path / "cost.png")
    assert _is_png(out) and out.stat().st_size > 20_000
    chapter = break_even(1e8, 40, 0.001, 500, 50)
    be = plot_break_even(chapter, 1e8, 40, 0.001, 500, 50, tmp_path / "be.png")
    assert _is_png(be)


def test_the_cli_writes_the_chart(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    png = tmp_path / "chart.png"
    assert main(["cost", "--bench", str(BENCH), "--plot", str(png)]) == 0
    assert _is_png(png)
    assert f"wrote {png}" in capsys.readouterr().err


def test_without_matplotlib_the_chart_is_a_one_line_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    real_import = builtins.__import__

    def no_matplotlib(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.split(".")[0] == "matplotlib":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    with pytest.raises(InvalidParameterError, match="needs matplotlib"):
        plot_report(small_report(), tmp_path / "x.png")
    assert main(["cost", "--bench", str(BENCH), "--plot", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert err == "nimbus: error: --plot needs matplotlib: pip install 'nimbus-llm[bench]'\n"


def test_an_unwritable_chart_path_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "missing-dir" / "c.png"
    assert main(["cost", "--bench", str(BENCH), "--plot", str(target)]) == 2
    assert capsys.readouterr().err.startswith(f"nimbus: error: cannot write {target}")
