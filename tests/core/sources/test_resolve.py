from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from core.errors import ModelLoadError
from core.settings import ModelSourceSettings
from core.sources import bundled_model_path, resolve_model


def test_bundled_default_resolves_to_a_gguf(tmp_path: Path) -> None:
    path = resolve_model("default", ModelSourceSettings(cache_dir=tmp_path))
    assert path == bundled_model_path()
    assert path.read_bytes()[:4] == b"GGUF"


def test_missing_file_names_the_source(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="nope.gguf.*not found"):
        resolve_model(str(tmp_path / "nope.gguf"), ModelSourceSettings())


def test_non_gguf_file_is_rejected(tmp_path: Path) -> None:
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"<html>not a model</html>")
    with pytest.raises(ModelLoadError, match="not a GGUF file"):
        resolve_model(str(bad), ModelSourceSettings())


def test_sha256_is_checked(tmp_path: Path) -> None:
    good = tmp_path / "m.gguf"
    good.write_bytes(b"GGUF" + b"\0" * 60)
    digest = hashlib.sha256(good.read_bytes()).hexdigest()
    assert resolve_model(str(good), ModelSourceSettings(sha256=digest)) == good
    with pytest.raises(ModelLoadError, match="sha256 mismatch"):
        resolve_model(str(good), ModelSourceSettings(sha256="0" * 64))


def test_unknown_scheme_is_rejected() -> None:
    with pytest.raises(ModelLoadError, match="unsupported scheme"):
        resolve_model("https://example.invalid/m.gguf", ModelSourceSettings())
