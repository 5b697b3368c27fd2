"""A full disk while pulling an hf:// model: a real tmpfs (in a private mount namespace) that is
too small, and one that fills up during the download."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_a_full_disk_is_one_line_and_leaves_no_partial_file(tmp_path: Path) -> None:
    unshare = shutil.which("unshare")
    assert unshare is not None, "util-linux unshare is needed (Debian: util-linux)"
    proc = subprocess.run(
        [
            unshare,
            "-m",
            "--propagation",
            "private",
            sys.executable,
            "-m",
            "tests.core.sources.disk_full_pull",
            str(tmp_path),
        ],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if not k.startswith("HF_")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])

    pre = result["precheck"]
    assert pre["message"].startswith("model 'hf://o/big': not enough disk space in ")
    assert "the download needs 12.0 MB" in pre["message"] and "\n" not in pre["message"]
    assert pre["left"] == []

    full = result["enospc"]
    assert full["message"].startswith("model 'hf://o/big': no space left in ")
    assert "while downloading big-Q8_0.gguf; the partial file was removed" in full["message"]
    assert full["left"] == []  # no .incomplete, no blob, no snapshot entry
    assert full["free"] > full["total"] - 1_000_000  # the space came back
