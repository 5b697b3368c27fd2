"""S3 model source: download once into the cache dir, verify, then rename atomically."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import ModelLoadError
from core.settings import ModelSourceSettings
from core.sources.resolve import ProgressCallback, verify_gguf

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_S3_URI = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9])/(?P<key>.+)$")


def parse_s3_uri(uri: str) -> tuple[str, str]:
    match = _S3_URI.match(uri)
    if match is None:
        raise ModelLoadError(f"model {uri!r}: not a valid s3://bucket/key URI")
    return match["bucket"], match["key"]


def cache_path_for(uri: str, settings: ModelSourceSettings) -> Path:
    _bucket, key = parse_s3_uri(uri)
    # One cache entry per object; the name keeps the key's file name for people reading /tmp.
    tag = hashlib.sha256(uri.encode()).hexdigest()[:16]
    return settings.cache_dir / f"{tag}-{Path(key).name}"


def _client() -> S3Client:
    try:
        import boto3
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ModelLoadError("s3:// models need boto3: pip install 'nimbus-llm[s3]'") from exc
    client: S3Client = boto3.client("s3")
    return client


def fetch_s3_model(
    uri: str,
    settings: ModelSourceSettings,
    *,
    progress: ProgressCallback | None = None,
    client: Any = None,
) -> Path:
    """Return a verified local copy of ``uri``, downloading it at most once per cache dir."""
    bucket, key = parse_s3_uri(uri)
    target = cache_path_for(uri, settings)
    s3 = client if client is not None else _client()
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
    except Exception as exc:
        raise ModelLoadError(f"model {uri!r}: cannot read object: {exc}") from exc
    expected_size = int(head["ContentLength"])

    if target.is_file() and target.stat().st_size == expected_size:
        return verify_gguf(target, source=uri, sha256=settings.sha256)

    settings.cache_dir.mkdir(parents=True, exist_ok=True)
    # Download beside the target and rename: a crash never leaves a half file under the final name.
    fd, tmp_name = tempfile.mkstemp(prefix=".partial-", dir=settings.cache_dir)
    tmp = Path(tmp_name)
    try:
        done = 0

        def on_chunk(n: int) -> None:
            nonlocal done
            done += n
            if progress is not None:
                progress(done, expected_size)

        with os.fdopen(fd, "wb") as fh:
            s3.download_fileobj(bucket, key, fh, Callback=on_chunk)
        actual_size = tmp.stat().st_size
        if actual_size != expected_size:
            raise ModelLoadError(
                f"model {uri!r}: download incomplete ({actual_size} of {expected_size} bytes)"
            )
        verify_gguf(tmp, source=uri, sha256=settings.sha256)
        os.replace(tmp, target)
    except ModelLoadError:
        tmp.unlink(missing_ok=True)
        raise
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        raise ModelLoadError(f"model {uri!r}: download failed: {exc}") from exc
    return target
