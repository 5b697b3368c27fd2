"""The browser libraries shipped in core/ui/static/vendor are exactly the pinned npm package's
files (core/ui/npm/package-lock.json, installed by `make test` with npm ci)."""

from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from core.ui import vendor

ROOT = Path(__file__).resolve().parents[3]
NPM = ROOT / "core/ui/npm"


def test_the_pin_is_exact_and_locked_with_an_integrity_hash() -> None:
    manifest = json.loads((NPM / "package.json").read_text())
    lock = json.loads((NPM / "package-lock.json").read_text())
    assert manifest["dependencies"] == {"@wllama/wllama": "3.8.1"}
    entry = lock["packages"]["node_modules/@wllama/wllama"]
    assert entry["version"] == "3.8.1"
    assert entry["integrity"].startswith("sha512-")


def test_node_modules_holds_the_pinned_version() -> None:
    assert vendor.installed_version("@wllama/wllama") == vendor.pinned_version("@wllama/wllama")


@pytest.mark.parametrize("copy", vendor.COPIES, ids=lambda c: c.target)
def test_each_shipped_file_equals_the_npm_file(copy: vendor.Copy) -> None:
    shipped = vendor.shipped_bytes(copy)
    source = vendor.source_bytes(copy)
    assert len(shipped) == len(source)
    assert hashlib.sha256(shipped).hexdigest() == hashlib.sha256(source).hexdigest()


def test_the_wasm_ships_compressed() -> None:
    path = vendor.VENDOR / "wllama/wllama.wasm.gz"
    raw = gzip.decompress(path.read_bytes())
    assert raw[:4] == b"\0asm"
    assert path.stat().st_size < len(raw) / 3


def test_check_mode_passes_and_catches_a_changed_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ok = subprocess.run(
        [sys.executable, "-m", "core.ui.vendor", "--check"], capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stderr
    # A tampered copy in a scratch vendor directory is reported.
    for copy in vendor.COPIES:
        target = tmp_path / copy.target
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((vendor.VENDOR / copy.target).read_bytes())
    (tmp_path / "wllama/index.js").write_bytes(b"// changed\n")
    monkeypatch.setattr(vendor, "VENDOR", tmp_path)
    assert vendor.differences() == ["wllama/index.js: differs from @wllama/wllama/esm/index.js"]


def test_writing_again_changes_no_byte(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vendor, "VENDOR", tmp_path)
    vendor.write()
    for copy in vendor.COPIES:
        assert (tmp_path / copy.target).read_bytes() == (
            ROOT / "core/ui/static/vendor" / copy.target
        ).read_bytes()
