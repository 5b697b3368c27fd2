"""deploy/cloudflare/deploy.sh drives wrangler as documented (a stand-in wrangler records what it
is asked to do; the real one bundles the worker in every edge test via --dry-run)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

from tests.handlers.cloudflare.conftest import DEPLOY_DIR

RECORDER = """#!/usr/bin/env python3
import json, os, sys
stdin = "" if sys.stdin.isatty() else sys.stdin.read()
with open(os.environ["RECORD"], "a") as f:
    f.write(json.dumps({"argv": sys.argv[1:], "stdin": stdin}) + "\\n")
"""


def run_deploy(
    tmp_path: Path, env: dict[str, str], *args: str
) -> tuple[subprocess.CompletedProcess[str], list[dict]]:
    fake = tmp_path / "wrangler"
    fake.write_text(RECORDER)
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    record = tmp_path / "calls.jsonl"
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "CLOUDFLARE_", "EDGE_", "ORIGIN_"))
    }
    proc = subprocess.run(
        ["bash", str(DEPLOY_DIR / "deploy.sh"), *args],
        env={**base, "WRANGLER": str(fake), "RECORD": str(record), "PYTHON": sys.executable, **env},
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )
    calls = (
        [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []
    )
    return proc, calls


def test_deploy_needs_a_cloudflare_token(tmp_path: Path) -> None:
    proc, calls = run_deploy(tmp_path, {})
    assert proc.returncode != 0 and "CLOUDFLARE_API_TOKEN" in proc.stderr
    assert calls == []


def test_deploy_sets_vars_and_pipes_secrets_through_stdin(tmp_path: Path) -> None:
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
    deploy, *secrets = calls
    assert deploy["argv"][0] == "deploy"
    assert (
        "INFERENCE_ORIGIN:https://abc.lambda-url.eu-west-1.on.aws,https://me--nimbus.modal.run"
        in deploy["argv"]
    )
    assert {(c["argv"][2], c["stdin"]) for c in secrets} == {
        ("EDGE_API_KEY", "edge-secret-value"),
        ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
    }
    assert all(c["argv"][:2] == ["secret", "put"] for c in secrets)
    # A secret value never appears on a command line.
    assert not any("edge-secret-value" in arg for c in calls for arg in c["argv"])


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
