"""S3 model source against moto's S3."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from core.errors import ModelLoadError
from core.settings import ModelSourceSettings
from core.sources import resolve_model
from core.sources.s3 import cache_path_for, fetch_s3_model

MODEL = b"GGUF" + bytes(range(256)) * 64


@pytest.fixture()
def s3(aws: None) -> Iterator[Any]:
    client = boto3.client("s3")
    client.create_bucket(Bucket="models")
    client.put_object(Bucket="models", Key="tiny/model.gguf", Body=MODEL)
    client.put_object(Bucket="models", Key="tiny/page.html", Body=b"<html>")
    yield client


def test_downloads_once_with_progress_then_uses_cache(s3: Any, tmp_path: Path) -> None:
    settings = ModelSourceSettings(cache_dir=tmp_path, sha256=hashlib.sha256(MODEL).hexdigest())
    seen: list[tuple[int, int]] = []
    path = resolve_model(
        "s3://models/tiny/model.gguf", settings, progress=lambda d, t: seen.append((d, t))
    )
    assert path.read_bytes() == MODEL
    assert seen and seen[-1] == (len(MODEL), len(MODEL))
    # Second call: no download (no progress), same file.
    seen.clear()
    assert (
        resolve_model(
            "s3://models/tiny/model.gguf", settings, progress=lambda d, t: seen.append((d, t))
        )
        == path
    )
    assert seen == []
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_crash_mid_download_leaves_no_file_under_the_final_name(s3: Any, tmp_path: Path) -> None:
    class Flaky:
        def head_object(self, **kw: Any) -> Any:
            return s3.head_object(**kw)

        def download_fileobj(self, bucket: str, key: str, fh: Any, Callback: Any) -> None:
            fh.write(MODEL[:100])
            raise ConnectionError("connection reset")

    settings = ModelSourceSettings(cache_dir=tmp_path)
    with pytest.raises(ModelLoadError, match="download failed.*connection reset"):
        fetch_s3_model("s3://models/tiny/model.gguf", settings, client=Flaky())
    assert list(tmp_path.iterdir()) == []
    assert not cache_path_for("s3://models/tiny/model.gguf", settings).exists()


def test_wrong_checksum_and_non_gguf_are_rejected(s3: Any, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="sha256 mismatch"):
        resolve_model(
            "s3://models/tiny/model.gguf", ModelSourceSettings(cache_dir=tmp_path, sha256="a" * 64)
        )
    with pytest.raises(ModelLoadError, match="not a GGUF"):
        resolve_model("s3://models/tiny/page.html", ModelSourceSettings(cache_dir=tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_missing_object_names_the_uri(s3: Any, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="s3://models/absent.gguf"):
        resolve_model("s3://models/absent.gguf", ModelSourceSettings(cache_dir=tmp_path))
