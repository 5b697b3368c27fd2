"""deploy/cloudflare/deploy.sh drives wrangler as documented: a stand-in wrangler records what it
is asked to do (a deploy needs an account); the real pinned wrangler runs the dry run, which
parses the secrets file exactly as a deploy would and lists the bindings it would upload."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
DEPLOY_DIR = ROOT / "deploy" / "cloudflare"
CONFIG = ROOT / "handlers" / "cloudflare" / "wrangler.toml"

# Reads the --secrets-file while wrangler would (the script deletes it afterwards).
RECORDER = """#!{python}
import json, os, sys
args = sys.argv[1:]
entry = {{"argv": args}}
if "--secrets-file" in args:
    path = args[args.index("--secrets-file") + 1]
    entry["secrets"] = json.load(open(path))
    entry["secrets_mode"] = oct(os.stat(path).st_mode & 0o777)
with open(os.environ["RECORD"], "a") as f:
    f.write(json.dumps(entry) + "\\n")
"""


def clean_env() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "CLOUDFLARE_", "EDGE_", "ORIGIN_", "ALLOW_", "INFERENCE_"))
    }


def run_deploy(
    tmp_path: Path, env: dict[str, str], *args: str
) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]:
    fake = tmp_path / "wrangler"
    fake.write_text(RECORDER.format(python=sys.executable))
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    record = tmp_path / "calls.jsonl"
    proc = subprocess.run(
        ["bash", str(DEPLOY_DIR / "deploy.sh"), *args],
        env={
            **clean_env(),
            "WRANGLER": str(fake),
            "RECORD": str(record),
            "PYTHON": sys.executable,
            **env,
        },
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )
    calls = (
        [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []
    )
    return proc, calls


def test_help_works_without_any_tooling(tmp_path: Path) -> None:
    proc = subprocess.run(
        ["bash", str(DEPLOY_DIR / "deploy.sh"), "--help"],
        env={**clean_env(), "WRANGLER": str(tmp_path / "missing")},
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    for word in ("--dry-run", "--delete", "--secrets-file", "CLOUDFLARE_API_TOKEN", "EDGE_API_KEY"):
        assert word in proc.stdout


def test_deploy_needs_a_cloudflare_token(tmp_path: Path) -> None:
    proc, calls = run_deploy(tmp_path, {})
    assert proc.returncode != 0 and "CLOUDFLARE_API_TOKEN" in proc.stderr
    assert calls == []


def test_secrets_are_uploaded_with_the_deploy_never_on_a_command_line(tmp_path: Path) -> None:
    proc, calls = run_deploy(
        tmp_path,
        {
            "CLOUDFLARE_API_TOKEN": "cf-token",
            "INFERENCE_ORIGIN": "https://abc.lambda-url.eu-west-1.on.aws,https://me--nimbus.modal.run",
            "EDGE_API_KEY": "edge-secret-value",
            "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
        },
    )
    assert proc.returncode == 0, proc.stderr
    # One call: the first version of the worker already has its key (no window without it).
    (deploy,) = calls
    assert deploy["argv"][0] == "deploy"
    assert (
        "INFERENCE_ORIGIN:https://abc.lambda-url.eu-west-1.on.aws,https://me--nimbus.modal.run"
        in deploy["argv"]
    )
    assert deploy["secrets"] == {
        "EDGE_API_KEY": "edge-secret-value",
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
    }
    assert deploy["secrets_mode"] == "0o600"
    secrets_file = Path(deploy["argv"][deploy["argv"].index("--secrets-file") + 1])
    assert not secrets_file.exists()  # removed once wrangler is done
    assert not any("edge-secret-value" in arg for c in calls for arg in c["argv"])


def test_without_secrets_no_secrets_file_is_passed(tmp_path: Path) -> None:
    proc, calls = run_deploy(tmp_path, {"CLOUDFLARE_API_TOKEN": "cf-token"})
    assert proc.returncode == 0, proc.stderr
    (deploy,) = calls
    assert "--secrets-file" not in deploy["argv"]
    assert "EDGE_API_KEY not set" in proc.stderr  # said, since such a worker fails closed


def test_delete_tears_the_worker_down(tmp_path: Path) -> None:
    proc, calls = run_deploy(tmp_path, {}, "--delete")
    assert proc.returncode != 0 and "CLOUDFLARE_API_TOKEN" in proc.stderr and calls == []
    proc, calls = run_deploy(tmp_path, {"CLOUDFLARE_API_TOKEN": "cf-token"}, "--delete")
    assert proc.returncode == 0, proc.stderr
    assert calls == [{"argv": ["delete", "--config", str(CONFIG)]}]


def test_real_wrangler_dry_run_takes_the_secrets_file_and_hides_values(tmp_path: Path) -> None:
    wrangler = DEPLOY_DIR / "node_modules" / ".bin" / "wrangler"
    assert wrangler.exists(), "run `make install` (npm ci in deploy/cloudflare)"
    out = tmp_path / "bundle"
    proc = subprocess.run(
        ["bash", str(DEPLOY_DIR / "deploy.sh"), "--dry-run", str(out)],
        env={
            **clean_env(),
            "XDG_CONFIG_HOME": str(tmp_path / "config"),
            "WRANGLER_SEND_METRICS": "false",
            "NO_COLOR": "1",
            "PYTHON": sys.executable,
            "EDGE_API_KEY": "edge-secret-value-0123",
            "ORIGIN_API_KEY": "origin-secret-value-0123",
        },
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (out / "worker.js").is_file()
    lines = (proc.stdout + proc.stderr).splitlines()
    for name in ("EDGE_API_KEY", "ORIGIN_API_KEY"):
        assert any(f"env.{name} " in line and "(hidden)" in line for line in lines), name
    assert "secret-value-0123" not in proc.stdout + proc.stderr


def test_an_edge_model_is_uploaded_to_r2_before_the_deploy(tmp_path: Path) -> None:
    model = tmp_path / "tiny.gguf"
    model.write_bytes(b"GGUF" + b"\0" * 60)
    proc, calls = run_deploy(
        tmp_path,
        {
            "CLOUDFLARE_API_TOKEN": "cf-token",
            "EDGE_MODE": "failover",
            "EDGE_WASM": "nimbus",
            "EDGE_MODEL_KEY": "models/tiny.gguf",
            "EDGE_MODEL_FILE": str(model),
        },
    )
    assert proc.returncode == 0, proc.stderr
    create, put, deploy = calls
    assert create["argv"][:4] == ["r2", "bucket", "create", "nimbus-models"]
    assert put["argv"][:4] == ["r2", "object", "put", "nimbus-models/models/tiny.gguf"]
    assert put["argv"][put["argv"].index("--file") + 1] == str(model)
    assert "--remote" in put["argv"]
    assert deploy["argv"][0] == "deploy"
    assert "EDGE_MODE:failover" in deploy["argv"] and "EDGE_WASM:nimbus" in deploy["argv"]


def test_without_the_edge_model_nothing_goes_to_r2(tmp_path: Path) -> None:
    proc, calls = run_deploy(tmp_path, {"CLOUDFLARE_API_TOKEN": "cf-token", "EDGE_MODE": "off"})
    assert proc.returncode == 0, proc.stderr
    assert [c["argv"][0] for c in calls] == ["deploy"]


def test_a_missing_edge_model_file_stops_the_deploy(tmp_path: Path) -> None:
    proc, calls = run_deploy(
        tmp_path,
        {
            "CLOUDFLARE_API_TOKEN": "cf-token",
            "EDGE_MODE": "always",
            "EDGE_MODEL_FILE": str(tmp_path / "absent.gguf"),
        },
    )
    assert proc.returncode != 0 and "absent.gguf is not a file" in proc.stderr
    assert calls == []
