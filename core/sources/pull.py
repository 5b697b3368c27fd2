"""Pull a model into the local cache, copy it out (to bake it into an image), list the cache."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from core.errors import ModelLoadError
from core.settings import ModelSourceSettings
from core.sources.gguf_files import local_parts, model_groups
from core.sources.pulled import PulledFile, PulledModel
from core.sources.resolve import ProgressCallback, file_sha256, resolve_model


def pull_model(
    spec: str, settings: ModelSourceSettings, *, progress: ProgressCallback | None = None
) -> PulledModel:
    """Download (when remote) and verify ``spec``; every file with its size and sha256."""
    spec = spec.strip()
    if spec.startswith("hf://"):
        from core.sources.hf import pull_hf_model

        pulled = pull_hf_model(spec, settings, progress=progress)
        if settings.sha256 is not None:  # the optional pin applies to the file that loads
            resolve_model(str(pulled.path), settings)
        return pulled
    first = resolve_model(spec, settings, progress=progress)
    files = tuple(
        PulledFile(p, p.stat().st_size, file_sha256(p)) for p in local_parts(first.resolve())
    )
    return PulledModel(spec, files)


def export_model(pulled: PulledModel, dest: Path) -> Path:
    """Copy the model's files (real files, not cache links) into ``dest``; returns the path of
    the file that loads. Each copy is written beside its final name and renamed."""
    try:
        dest.mkdir(parents=True, exist_ok=True)
        for file in pulled.files:
            target = dest / file.path.name
            tmp = dest / f".{file.path.name}.partial"
            try:
                shutil.copyfile(file.path, tmp)  # follows the cache's symlinks
                os.replace(tmp, target)
            finally:
                tmp.unlink(missing_ok=True)
    except OSError as exc:
        raise ModelLoadError(f"model {pulled.source!r}: cannot copy it to {dest}: {exc}") from exc
    return dest / pulled.path.name


@dataclass(frozen=True)
class CachedModel:
    spec: str  # what to pass as NIMBUS_MODEL / --model to use it
    size: int
    path: Path


def cached_models(settings: ModelSourceSettings) -> list[CachedModel]:
    """Models in the Hub cache (HF_HOME) and in the s3:// download cache, with sizes."""
    return [*_hub_models(), *_s3_models(settings)]


def _hub_models() -> list[CachedModel]:
    from core.sources.hf import hub_env

    cache = hub_env().cache_dir
    if not cache.is_dir():
        return []
    from huggingface_hub import scan_cache_dir

    found: list[CachedModel] = []
    info = scan_cache_dir(cache)
    for repo in sorted(info.repos, key=lambda r: r.repo_id):
        if repo.repo_type != "model":
            continue
        for revision in sorted(repo.revisions, key=lambda r: r.commit_hash):
            by_name = {
                f.file_path.relative_to(revision.snapshot_path).as_posix(): f
                for f in revision.files
            }
            ref = "main" if "main" in revision.refs else next(iter(sorted(revision.refs)), None)
            pin = "" if ref == "main" else f"@{ref or revision.commit_hash}"
            for group in model_groups(by_name):
                found.append(
                    CachedModel(
                        spec=f"hf://{repo.repo_id}/{group[0]}{pin}",
                        size=sum(by_name[n].size_on_disk for n in group),
                        path=by_name[group[0]].file_path,
                    )
                )
    return found


def _s3_models(settings: ModelSourceSettings) -> list[CachedModel]:
    cache = settings.cache_dir
    if not cache.is_dir():
        return []
    return [
        CachedModel(spec=str(p), size=p.stat().st_size, path=p)
        for p in sorted(cache.glob("*.gguf"))
        if p.is_file() and not p.name.startswith(".")
    ]
