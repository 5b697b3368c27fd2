from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.cli import build_parser, main

NIMBUS = [sys.executable, "-m", "core.cli"]


def test_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    out = capsys.readouterr().out
    for command in ("serve", "generate", "config"):
        assert command in out


def test_serve_does_not_import_other_commands_modules() -> None:
    # Cold start: `nimbus serve` parses its command line without the cost model's modules,
    # and `nimbus cost` still gets its own arguments.
    code = (
        "import sys; from core.cli import build_parser; "
        "args = build_parser('serve').parse_args(['serve', '--port', '1']); "
        "print(any(m.startswith('core.cost') for m in sys.modules), args.port)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "1"]
    help_text = subprocess.run(
        [*NIMBUS, "cost", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "--bench" in help_text


def test_config_shows_env_overrides(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NIMBUS_ENGINE__N_CTX", "3072")
    assert main(["config", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["engine"]["n_ctx"] == 3072
    assert main(["config", "--markdown"]) == 0
    assert "| `NIMBUS_MODEL` |" in capsys.readouterr().out


def test_serve_with_a_non_gguf_model_exits_with_a_clear_message(tmp_path: Path) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"definitely not gguf")
    proc = subprocess.run(
        [*NIMBUS, "serve", "--model", str(bad), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ},
    )
    assert proc.returncode == 2
    assert "broken.gguf" in proc.stderr and "not a GGUF file" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.integration
def test_generate_streams_from_the_bundled_model() -> None:
    proc = subprocess.run(
        [
            *NIMBUS,
            "generate",
            "Say hello.",
            "--max-tokens",
            "12",
            "--temperature",
            "0",
            "--threads",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip()
    assert "tokens" in proc.stderr and "tok/s" in proc.stderr


def test_docs_configuration_table_is_the_generated_one(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # docs/configuration.md's table is `nimbus config --markdown` on defaults: a new setting must
    # appear there (regenerate it with `env -i PATH="$PATH" .venv/bin/nimbus config --markdown`).
    for name in [k for k in os.environ if k.startswith("NIMBUS_")]:
        monkeypatch.delenv(name)
    assert main(["config", "--markdown"]) == 0
    table = capsys.readouterr().out.strip()
    page = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    assert table in page


def _nimbus(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("NIMBUS_")}
    return subprocess.run(
        [*NIMBUS, *args], capture_output=True, text=True, timeout=120, env={**clean, **(env or {})}
    )


def test_a_bad_setting_is_one_line_per_field_and_exit_2() -> None:
    proc = _nimbus(
        "config",
        env={"NIMBUS_ENGINE__SLOTS": "0", "NIMBUS_SECURITY__PROMPT__INJECTION_POLICY": "nope"},
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert "nimbus: error: NIMBUS_ENGINE__SLOTS: must be >= 1 (got 0)" in lines
    assert (
        "nimbus: error: NIMBUS_SECURITY__PROMPT__INJECTION_POLICY: must be one of "
        "'off', 'warn' or 'block' (got nope)" in lines
    )
    assert len(lines) == 2 and "Traceback" not in proc.stderr


def test_a_bad_flag_value_is_one_line_too() -> None:
    proc = _nimbus("config", "--threads", "0")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "nimbus: error: NIMBUS_ENGINE__N_THREADS: must be >= 1 (got 0)"


def test_a_missing_model_is_one_line(tmp_path: Path) -> None:
    proc = _nimbus("generate", "hi", "--model", str(tmp_path / "nope.gguf"))
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "nope.gguf" in proc.stderr and "not found" in proc.stderr


def test_a_port_in_use_is_one_line() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        proc = _nimbus("serve", "--port", str(port))
    assert proc.returncode == 2
    assert (
        proc.stderr.strip()
        == f"nimbus: error: cannot listen on 127.0.0.1:{port}: address already in use"
    )


def test_a_closed_pipe_is_not_an_error() -> None:
    # `nimbus config | head -1`: the reader goes away after one line.
    proc = subprocess.run(
        f"{sys.executable} -m core.cli config | head -1",
        shell=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.stdout.count("\n") == 1
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr


def test_an_invalid_generate_argument_is_one_line() -> None:
    proc = _nimbus("generate", "hi", "--max-tokens", "0")
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("nimbus: error: maxTokens:")
    assert len(proc.stderr.strip().splitlines()) == 1
