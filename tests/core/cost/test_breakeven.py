from __future__ import annotations

import json

import pytest

from core.cli import main
from core.cost.breakeven import break_even
from core.errors import InvalidParameterError

CHAPTER = [
    "cost",
    "break-even",
    "--tokens-per-month",
    "100000000",
    "--api-price-per-m",
    "40",
    "--cost-per-invocation",
    "0.001",
    "--tokens-per-invocation",
    "500",
    "--base-monthly",
    "50",
]


def test_the_chapters_example_by_hand() -> None:
    r = break_even(100_000_000, 40, 0.001, 500, 50)
    # 100M / 1M * $40; $50 + 100M / 500 * $0.001; 50 / (40e-6 - 0.001 / 500)
    assert r.api_monthly == pytest.approx(4000)
    assert r.serverless_monthly == pytest.approx(250)
    assert r.savings == pytest.approx(3750)
    assert r.invocations == pytest.approx(200_000)
    assert r.break_even_tokens == pytest.approx(1_315_789.4737, rel=1e-9)


def test_the_chapters_example_on_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(CHAPTER) == 0
    out = capsys.readouterr().out
    assert "$4,000.00" in out and "$250.00" in out and "$3,750.00" in out
    assert "1,315,789 tokens a month" in out


def test_the_chapters_example_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*CHAPTER, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "api_monthly": 4000.0,
        "serverless_monthly": 250.0,
        "savings": 3750.0,
        "break_even_tokens": 1315789,
    }


def test_no_base_cost_breaks_even_at_once_and_dearer_tokens_never() -> None:
    free_base = break_even(1_000_000, 10, 0.001, 1000, 0)
    assert free_base.break_even_tokens == 0
    assert free_base.serverless_monthly == pytest.approx(1.0)  # 1,000 invocations x $0.001
    # $0.01 per 500 tokens = $20 per 1M: dearer than a $10 API at every volume.
    dearer = break_even(1_000_000, 10, 0.01, 500, 50)
    assert dearer.break_even_tokens is None
    assert dearer.savings == pytest.approx(10 - (50 + 20))


def test_never_is_null_in_json(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["cost", "break-even", "--tokens-per-month", "1000", "--api-price-per-m", "1"]
    args += ["--cost-per-invocation", "1", "--tokens-per-invocation", "10", "--json"]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["break_even_tokens"] is None


@pytest.mark.parametrize(
    ("args", "param"),
    [
        ((1e6, 10, 0.001, 0, 50), "tokens-per-invocation"),
        ((-1, 10, 0.001, 500, 50), "tokens-per-month"),
        ((1e6, float("nan"), 0.001, 500, 50), "api-price-per-m"),
    ],
)
def test_bad_inputs_are_refused(args: tuple[float, ...], param: str) -> None:
    with pytest.raises(InvalidParameterError) as err:
        break_even(*args)
    assert err.value.param == param


def test_bad_input_is_one_line_on_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["cost", "break-even", "--tokens-per-month", "1e6", "--api-price-per-m", "10"]
    args += ["--cost-per-invocation", "0.001", "--tokens-per-invocation", "0"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("nimbus: error: --tokens-per-invocation must be")
    assert err.count("\n") == 1
