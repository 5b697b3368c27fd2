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
