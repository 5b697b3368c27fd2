from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from core.cli import main
from core.cost.prices import default_book, load_book
from core.errors import InvalidParameterError

ROOT = Path(__file__).resolve().parents[3]


def test_every_shipped_price_is_dated_sourced_and_has_a_unit() -> None:
    book = default_book()
    entries = list(book)
    assert len(entries) >= 20
    for p in entries:
        assert p.value >= 0, p.key
        assert p.unit.startswith(("USD", "requests", "CPU")), p.key
        assert p.source.startswith("https://"), p.key
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", p.read), p.key
    # What the cost model needs is there.
    for key in (
        "lambda.gb_second_x86_64",
        "lambda.gb_second_arm64",
        "lambda.requests_per_m",
        "modal.cpu_core_second",
        "modal.memory_gib_second",
        "cloudflare.requests_per_m",
        "cloudflare.cpu_ms_per_m",
    ):
        assert key in book
    assert {"T4", "L4", "A100-80GB", "H100"} <= set(book.gpus())
    assert {"gpt-5-nano", "gpt-4o-mini", "gpt-4-turbo", "claude-haiku-4.5"} <= set(book.apis())
    assert book.api("claude-haiku-4.5") == (1.0, 5.0)


def test_a_user_file_overrides_in_either_shape(tmp_path: Path) -> None:
    f = tmp_path / "mine.toml"
    f.write_text(
        "[lambda]\ngb_second_x86_64 = 0.00002\n\n"
        '[api."house-model".input]\nvalue = 0.5\nunit = "ignored"\n'
        '[api."house-model".output]\nvalue = 1.5\n'
    )
    book = load_book([f], today="2030-01-02")
    entry = book.entry("lambda.gb_second_x86_64")
    assert entry.value == 0.00002
    assert entry.source == str(f) and entry.read == "2030-01-02" and entry.overridden
    assert entry.unit == "USD per GB-second"  # the unit stays the shipped one
    assert book.api("house-model") == (0.5, 1.5)
    assert not book.entry("lambda.gb_second_arm64").overridden


def test_the_command_line_wins_over_a_file(tmp_path: Path) -> None:
    f = tmp_path / "mine.toml"
    f.write_text("[modal]\ncpu_core_second = 0.5\n")
    book = load_book([f], ["modal.cpu_core_second=0.25", "modal.gpu_second.X1=0.01"])
    assert book.get("modal.cpu_core_second") == 0.25
    assert book.entry("modal.cpu_core_second").source == "command line"
    assert book.get("modal.gpu_second.X1") == 0.01


@pytest.mark.parametrize(
    ("assignment", "needle"),
    [
        ("lambda.gb_secnd_x86_64=1", "unknown price 'lambda.gb_secnd_x86_64'"),
        ("lambda.requests_per_m=-1", "must be a finite number >= 0"),
        ("lambda.requests_per_m=cheap", "--price wants KEY=NUMBER"),
        ("no-equals-sign", "--price wants KEY=NUMBER"),
        ("api.x.inputs=1", "unknown price 'api.x.inputs'"),
    ],
)
def test_bad_overrides_are_refused(assignment: str, needle: str) -> None:
    with pytest.raises(InvalidParameterError) as err:
        load_book([], [assignment])
    assert needle in err.value.message


def test_a_broken_price_file_is_one_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[lambda\n")
    with pytest.raises(InvalidParameterError, match="is not TOML"):
        load_book([bad])
    text = tmp_path / "text.toml"
    text.write_text('[lambda]\ngb_second_x86_64 = "cheap"\n')
    with pytest.raises(InvalidParameterError, match="is not a number"):
        load_book([text])
    with pytest.raises(InvalidParameterError, match="cannot read price file"):
        load_book([tmp_path / "missing.toml"])


def test_prices_command_lists_sources_and_overrides(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cost", "prices", "--markdown"]) == 0
    out = capsys.readouterr().out
    assert "| lambda.gb_second_x86_64 | 1.66667e-05 | USD per GB-second |" in out
    assert "https://aws.amazon.com/lambda/pricing/" in out
    assert main(["cost", "prices", "--json", "--price", "api.gpt-5-nano.output=0.5"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["api.gpt-5-nano.output"]["value"] == 0.5
    assert data["api.gpt-5-nano.output"]["source"] == "command line"
    assert data["api.gpt-5-nano.input"]["value"] == 0.05


def test_an_unknown_price_on_the_command_line_is_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["cost", "prices", "--price", "lamda.requests_per_m=1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nimbus: error: unknown price 'lamda.requests_per_m'")
    assert err.count("\n") == 1


def test_the_price_file_ships_in_the_package() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"cost/prices.toml"' in pyproject
