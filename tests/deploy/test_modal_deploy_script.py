"""deploy/modal/deploy.sh without a Modal account: the credential check, and the URL it prints
from `modal deploy`'s output (the CLI is swapped for a stand-in through MODAL_CLI, the script's
documented hook; the real deploy needs an account)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "modal" / "deploy.sh"
URL = "https://acme--nimbus-llm-model-web.modal.run"


def run_env(
    tmp_path: Path, extra: dict[str, str], cli_output: str = "", cli_status: int = 0
) -> dict[str, str]:
    stand_in = tmp_path / "modal-cli"
    stand_in.write_text(
        f"#!/bin/sh\necho \"$@\" > {tmp_path / 'args'}\ncat <<'OUT'\n{cli_output}\nOUT\nexit {cli_status}\n"
    )
    stand_in.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODAL_", "NIMBUS_"))}
    env.update(HOME=str(tmp_path), PYTHON=sys.executable, MODAL_CLI=str(stand_in), **extra)
    return env


def run(
    tmp_path: Path, extra: dict[str, str], cli_output: str = "", cli_status: int = 0
) -> subprocess.CompletedProcess[str]:
    env = run_env(tmp_path, extra, cli_output, cli_status)
    return subprocess.run(
        ["bash", str(SCRIPT)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )


def test_script_is_valid_bash() -> None:
    assert subprocess.run(["bash", "-n", str(SCRIPT)]).returncode == 0
    assert os.access(SCRIPT, os.X_OK)


def test_refuses_to_deploy_without_credentials(tmp_path: Path) -> None:
    proc = run(tmp_path, {})
    assert proc.returncode == 2
    assert "no Modal credentials" in proc.stderr and "modal token new" in proc.stderr
    assert not (tmp_path / "args").exists()  # modal was never called


def test_deploys_with_a_token_profile_and_prints_the_url(tmp_path: Path) -> None:
    (tmp_path / ".modal.toml").write_text('[default]\ntoken_id = "ak-x"\ntoken_secret = "as-y"\n')
    output = (
        f"✓ Created objects.\n├── 🔨 Created web endpoint for Model.web => {URL}\n✓ App deployed!"
    )
    proc = run(tmp_path, {}, cli_output=output)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "args").read_text().split() == ["deploy", "modal_app.py"]
    assert f"nimbus-llm is deployed: {URL}" in proc.stdout
    assert f"smoke.py {URL}" in proc.stdout
    assert "deploy/modal/deploy.sh --stop" in proc.stdout  # and how to tear it down


def test_env_tokens_work_and_a_failed_deploy_fails(tmp_path: Path) -> None:
    tokens = {"MODAL_TOKEN_ID": "ak-x", "MODAL_TOKEN_SECRET": "as-y"}
    proc = run(
        tmp_path, tokens, cli_output="Error: Secret 'nimbus-api-keys' not found", cli_status=1
    )
    assert proc.returncode == 1
    assert "modal deploy failed" in proc.stderr
    assert "not found" in proc.stdout  # modal's own message is shown to the user
    assert "modal secret create nimbus-api-keys NIMBUS_SECURITY__AUTH__KEYS=" in proc.stderr
    assert "NIMBUS_MODAL__SECRET_NAME= NIMBUS_SECURITY__AUTH__MODE=off" in proc.stderr


def test_help_names_every_mode_and_the_settings() -> None:
    proc = subprocess.run(["bash", str(SCRIPT), "--help"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    for word in ("--dry-run", "--serve", "--stop", "NIMBUS_MODAL__", "modal secret create"):
        assert word in proc.stdout
    bad = subprocess.run(["bash", str(SCRIPT), "--bogus"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--help" in bad.stderr


def test_dry_run_needs_no_credentials_and_never_calls_modal(tmp_path: Path) -> None:
    proc = run(tmp_path, {"NIMBUS_ENGINE__SLOTS": "2", "NIMBUS_SECURITY__AUTH__KEYS": "x" * 20})
    assert proc.returncode == 2  # a real deploy still needs them
    dry = subprocess.run(
        ["bash", str(SCRIPT), "--dry-run"],
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith(("MODAL_", "NIMBUS_"))},
            "HOME": str(tmp_path),
            "PYTHON": sys.executable,
            "MODAL_CLI": str(tmp_path / "modal-cli"),
            "NIMBUS_ENGINE__SLOTS": "2",
            "NIMBUS_SECURITY__AUTH__KEYS": "a-secret-key-of-20ch",
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert dry.returncode == 0, dry.stderr
    assert "deploy modal_app.py" in dry.stdout and "Modal app 'nimbus-llm'" in dry.stdout
    assert "set: NIMBUS_ENGINE__SLOTS=2" in dry.stdout
    assert "a-secret-key-of-20ch" not in dry.stdout  # secrets are not echoed
    assert not (tmp_path / "args").exists()


def test_serve_and_stop_drive_the_modal_cli(tmp_path: Path) -> None:
    tokens = {"MODAL_TOKEN_ID": "ak-x", "MODAL_TOKEN_SECRET": "as-y"}
    serve = subprocess.run(
        ["bash", str(SCRIPT), "--serve"],
        env={**run_env(tmp_path, tokens)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert serve.returncode == 0, serve.stderr
    assert (tmp_path / "args").read_text().split() == ["serve", "modal_app.py"]
    stop = subprocess.run(
        ["bash", str(SCRIPT), "--stop"],
        env={**run_env(tmp_path, tokens)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert stop.returncode == 0, stop.stderr
    assert (tmp_path / "args").read_text().split() == ["app", "stop", "--yes", "nimbus-llm"]
    assert "no longer billed" in stop.stdout
