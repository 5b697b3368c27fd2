"""The page and its vendored libraries are inside the wheel that `pip install .` builds (the
Lambda image and Modal install it that way, not from a checkout)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from core.ui.pages import STATIC_DIR

ROOT = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.slow


def test_the_wheel_carries_every_static_file(tmp_path: Path) -> None:
    build = ["wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)]
    proc = subprocess.run(
        [sys.executable, "-m", "pip", *build],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    (wheel,) = tmp_path.glob("nimbus_llm-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        "core/ui/static/" + p.relative_to(STATIC_DIR).as_posix()
        for p in STATIC_DIR.rglob("*")
        if p.is_file()
    }
    assert "core/ui/static/vendor/wllama/wllama.wasm.gz" in expected
    assert expected <= names, sorted(expected - names)
