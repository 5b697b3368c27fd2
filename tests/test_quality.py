"""The code-quality bar is part of the suite: ruff clean, mypy --strict clean on core and handlers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def test_ruff_is_clean() -> None:
    proc = run("ruff", "check", "core", "handlers", "tests", "benchmarks")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy_strict_is_clean() -> None:
    proc = run("mypy")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_core_never_imports_handlers_or_cloud_sdks_at_module_level() -> None:
    code = (
        "import sys, core.app, core.cli, core.engine.llama, core.sources;"
        "cloud = {'handlers', 'boto3', 'botocore', 'aws_lambda_powertools', 'modal', 'mangum'};"
        "bad = [m for m in sys.modules if m.split('.')[0] in cloud];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_py_typed_is_shipped() -> None:
    assert (ROOT / "core" / "py.typed").exists() and (ROOT / "handlers" / "py.typed").exists()
