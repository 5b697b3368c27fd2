"""The Makefile's set-up checks: `make test` needs Node for the edge tooling and says so in one
line when npm is missing, instead of failing inside npm; `make serve` does not need Node."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def make(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # A PATH holding make alone: no npm, no node (recipes run under /bin/sh by absolute path).
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    make_bin = shutil.which("make")
    assert make_bin, "make is a prerequisite"
    (bin_dir / "make").symlink_to(make_bin)
    return subprocess.run(
        [str(bin_dir / "make"), "-C", str(ROOT), *args],
        env={**os.environ, "PATH": str(bin_dir)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_missing_npm_is_one_line_saying_what_to_install(tmp_path: Path) -> None:
    # -B: run the edge tooling's recipe even though it is installed in this checkout.
    proc = make(tmp_path, "-B", "deploy/cloudflare/node_modules/.installed")
    assert proc.returncode != 0
    # make's own "*** [target] Error 1" line (make[1] when the suite runs under `make test`) aside.
    said = [
        line for line in proc.stderr.splitlines() if not re.match(r"make(\[\d+\])?: \*\*\*", line)
    ]
    assert said == [
        "make: npm not found: install Node.js 20.3 or newer (with npm) for the Cloudflare edge "
        "tooling; `make serve` does not need it"
    ]


def test_serve_depends_on_the_python_setup_only() -> None:
    makefile = (ROOT / "Makefile").read_text()
    serve = re.search(r"^serve:(.*)$", makefile, re.M)
    test = re.search(r"^test:(.*)$", makefile, re.M)
    assert serve and test
    assert serve.group(1).split() == ["$(STAMP)"]
    assert "$(EDGE_STAMP)" in test.group(1).split()
