from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.cli import main
from core.cost.prices import default_book

ROOT = Path(__file__).resolve().parents[3]
BENCH = ROOT / "benchmarks" / "results" / "bench.json"


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    assert main(["cost", *args, "--json"]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def test_help_names_the_subcommands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "cost" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["cost", "--help"])
    out = capsys.readouterr().out
    assert "break-even" in out and "prices" in out and "--measure" in out


def test_from_a_bench_result_recomputed_by_hand(capsys: pytest.CaptureFixture[str]) -> None:
    data = run_json(capsys, "--bench", str(BENCH), "--lambda-memory", "3538", "--no-edge")
    bench = json.loads(BENCH.read_text())["results"]["nimbus"]
    book = default_book()
    lam = next(p for p in data["platforms"] if p["key"] == "lambda-3538")
    seconds = 250 / bench["prefill_tps"] + 250 / bench["single_tps"]
    per_request = seconds * 3538 / 1024 * book.get("lambda.gb_second_x86_64") + 0.2e-6
    assert lam["seconds_per_request"] == pytest.approx(seconds)
    assert lam["usd_per_request"] == pytest.approx(per_request)
    assert lam["monthly"] == pytest.approx(per_request * 200_000)  # 100M tokens / 500
    modal = next(p for p in data["platforms"] if p["platform"] == "modal")
    per_s = 2 * book.get("modal.cpu_core_second") + 4 * book.get("modal.memory_gib_second")
    assert modal["streams"] == 4 and modal["decode_tps"] == bench["agg_4"]
    assert modal["fixed_monthly"] == pytest.approx(per_s * 730 * 3600)
    gpt = next(a for a in data["apis"] if a["name"] == "gpt-4o-mini")
    assert gpt["monthly"] == pytest.approx(200_000 * (250 * 0.15 + 250 * 0.6) / 1e6)
    assert data["api"] == "gpt-4o-mini" and data["requests_per_month"] == 200_000


def test_a_gpu_without_a_measurement_shows_its_idle_cost(
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = run_json(
        capsys, "--bench", str(BENCH), "--modal-gpu", "T4", "--modal-gpu", f"L4={BENCH}"
    )
    book = default_book()
    t4, l4 = (p for p in data["platforms"] if p["key"] in ("modal-T4", "modal-L4"))
    per_s = (
        2 * book.get("modal.cpu_core_second")
        + 4 * book.get("modal.memory_gib_second")
        + book.get("modal.gpu_second.T4")
    )
    assert t4["fixed_monthly"] == pytest.approx(per_s * 730 * 3600)
    assert t4["usd_per_request"] is None and "no throughput measured on a T4" in t4["missing"]
    assert l4["usd_per_request"] is not None  # priced from the file it was given


def test_the_modal_shape_comes_from_the_settings(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = run_json(capsys, "--bench", str(BENCH))
    modal = next(p for p in data["platforms"] if p["key"] == "modal-cpu")
    assert (modal["threads"], modal["streams"]) == (2, 4)  # NIMBUS_MODAL__CPU 2.0, 4 slots
    book = default_book()
    per_s = 2 * book.get("modal.cpu_core_second") + 4 * book.get("modal.memory_gib_second")
    assert modal["usd_per_second"] == pytest.approx(per_s)
    monkeypatch.setenv("NIMBUS_MODAL__CPU", "1.5")
    monkeypatch.setenv("NIMBUS_MODAL__MEMORY_MB", "2048")
    monkeypatch.setenv("NIMBUS_MODAL__MIN_CONTAINERS", "0")
    monkeypatch.setenv("NIMBUS_MODAL__GPU", "T4")
    monkeypatch.setenv("NIMBUS_ENGINE__SLOTS", "8")
    data = run_json(capsys, "--bench", str(BENCH))
    modal = next(p for p in data["platforms"] if p["key"] == "modal-cpu")
    assert (modal["threads"], modal["streams"], modal["fixed_monthly"]) == (2, 8, 0)
    per_s = 1.5 * book.get("modal.cpu_core_second") + 2 * book.get("modal.memory_gib_second")
    assert modal["usd_per_second"] == pytest.approx(per_s)
    assert any(p["key"] == "modal-T4" for p in data["platforms"])
    # A flag wins over the environment.
    data = run_json(
        capsys, "--bench", str(BENCH), "--modal-cpu", "2", "--modal-min-containers", "2"
    )
    modal = next(p for p in data["platforms"] if p["key"] == "modal-cpu")
    assert modal["fixed_monthly"] == pytest.approx(
        2
        * (2 * book.get("modal.cpu_core_second") + 2 * book.get("modal.memory_gib_second"))
        * 730
        * 3600
    )


def test_slots_and_volume_flags_reach_the_model(capsys: pytest.CaptureFixture[str]) -> None:
    data = run_json(
        capsys,
        "--bench",
        str(BENCH),
        "--slots",
        "8",
        "--tokens-per-month",
        "1e9",
        "--prompt-tokens",
        "100",
        "--completion-tokens",
        "400",
        "--api",
        "gpt-5-nano",
    )
    modal = next(p for p in data["platforms"] if p["platform"] == "modal")
    bench = json.loads(BENCH.read_text())["results"]["nimbus"]
    assert modal["decode_tps"] == bench["agg_8"]
    assert data["requests_per_month"] == pytest.approx(2e6)
    assert data["api"] == "gpt-5-nano"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ([], "say where throughput comes from"),
        (["--bench", str(BENCH), "--api", "gpt-0"], "unknown API 'gpt-0'"),
        (["--bench", str(BENCH), "--bench", str(BENCH)], "two bench results at 2 threads"),
        (["--bench", str(BENCH), "--modal-gpu", "T4="], "--modal-gpu wants GPU or GPU=FILE"),
        (["--bench", str(BENCH), "--modal-gpu", "Z9"], "no price for GPU 'Z9'"),
        (["--bench", str(BENCH), "--lambda-memory", "1k"], "--lambda-memory wants MB numbers"),
        (["--bench", str(BENCH), "--slots", "0"], "--slots must be >= 1"),
        (["--bench", str(BENCH), "--tokens-per-month", "0"], "--tokens-per-month must be > 0"),
        (["--bench", str(BENCH), "--completion-tokens", "0"], ">= 1 completion token"),
        (["--measure", "--api", "nope"], "unknown API 'nope'"),  # refused before measuring
    ],
)
def test_user_errors_are_one_line(
    capsys: pytest.CaptureFixture[str], args: list[str], needle: str
) -> None:
    assert main(["cost", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nimbus: error: ") and needle in err, err
    assert err.count("\n") == 1


def test_no_traceback_from_the_real_command() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "core.cli", "cost", "--bench", "/nonexistent.json"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("nimbus: error: cannot read bench result /nonexistent.json")
    assert "Traceback" not in proc.stderr


@pytest.mark.integration
def test_measure_on_the_real_model(capsys: pytest.CaptureFixture[str]) -> None:
    # One thread (Lambda 1,769 MB and a 1-core Modal container), short streams.
    data = run_json(
        capsys,
        "--measure",
        "--measure-tokens",
        "12",
        "--prompt-tokens",
        "64",
        "--lambda-memory",
        "1769",
        "--modal-cpu",
        "1",
        "--slots",
        "2",
        "--no-edge",
    )
    (t,) = data["throughput"]
    assert t["threads"] == 1 and "measured now in-process" in t["source"]
    assert t["single_tps"] > 1 and t["prefill_tps"] > 1 and t["aggregate"]["2"] > 1
    lam, modal = data["platforms"]
    seconds = 64 / t["prefill_tps"] + 250 / t["single_tps"]
    assert lam["seconds_per_request"] == pytest.approx(seconds)
    assert lam["usd_per_request"] == pytest.approx(
        seconds * 1769 / 1024 * default_book().get("lambda.gb_second_x86_64") + 0.2e-6
    )
    assert modal["decode_tps"] == t["aggregate"]["2"]
    assert t["rss_mb"] is not None and t["rss_mb"] < 1769  # the bundled model fits


@pytest.mark.integration
def test_measure_says_what_this_machine_cannot_measure(
    capsys: pytest.CaptureFixture[str],
) -> None:
    too_many = (os.cpu_count() or 1) + 1
    mb = min(10240, 1769 * too_many)
    assert (
        main(
            [
                "cost",
                "--measure",
                "--measure-tokens",
                "8",
                "--prompt-tokens",
                "16",
                "--lambda-memory",
                f"1769,{mb}",
                "--modal-cpu",
                "1",
                "--slots",
                "1",
                "--no-edge",
            ]
        )
        == 0
    )
    captured = capsys.readouterr()
    assert f"not measured: {min(6, too_many)} threads" in captured.err
    assert "not measured (see notes)" in captured.out
