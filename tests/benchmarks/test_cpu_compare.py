"""benchmarks.cpu_compare: two checkouts' Python CPU per token, side by side."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks import cpu_compare
from benchmarks.cpu_compare import PARTS, settings_env, summary, table


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


def test_settings_are_key_value_pairs() -> None:
    assert settings_env(["NIMBUS_ENGINE__IDLE_CACHE_MB=0", "A= b=c"]) == {
        "NIMBUS_ENGINE__IDLE_CACHE_MB": "0",
        "A": " b=c",
    }
    with pytest.raises(ValueError, match="KEY=VALUE"):
        settings_env(["NIMBUS_ENGINE__SLOTS"])


class _Server:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.proc = None
        self.rounds = 0

    def cpu(self) -> dict[str, object]:
        return {"threads": {}, "decode_ns": 0, "process_ns": 0}

    def concurrent(self, prompts: list[str], max_tokens: int) -> tuple[float, float, int]:
        self.rounds += 1
        return 100.0 if self.env else 50.0, 0.0, len(prompts) * max_tokens


def test_one_checkout_compares_two_settings(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    started: list[_Server] = []

    def start_http(*args: Any, extra_env: dict[str, str] | None = None, **kw: Any) -> _Server:
        started.append(_Server(dict(extra_env or {})))
        return started[-1]

    monkeypatch.setattr(cpu_compare, "start_http", start_http)
    monkeypatch.setattr(cpu_compare, "stop", lambda proc: None)
    argv = ["--before-env", "NIMBUS_ENGINE__IDLE_CACHE_MB=0", "--streams", "2", "--repeats", "2"]
    assert cpu_compare.main(argv) == 0
    # The setting reaches the before server only; both ran every round.
    assert [s.env for s in started] == [{"NIMBUS_ENGINE__IDLE_CACHE_MB": "0"}, {}]
    assert [s.rounds for s in started] == [2, 2]
    out = capsys.readouterr().out
    assert "NIMBUS_ENGINE__IDLE_CACHE_MB=0, after =" in out
    assert "| 2 | before | 100.0 |" in out and "| 2 | after | 50.0 |" in out


def test_nothing_to_compare_is_one_line_of_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cpu_compare.main(["--streams", "2"])
    assert exc.value.code == 2
    assert "nothing to compare" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cpu_compare.main(["--before-env", "oops"])
    assert "expected KEY=VALUE" in capsys.readouterr().err
