"""hf:// model source: a GGUF on the Hugging Face Hub (or any endpoint speaking its file API).

    hf://OWNER/REPO/PATH/TO/FILE.gguf[@REVISION]   one file (every part, if it is a split GGUF)
    hf://OWNER/REPO:QUANT[@REVISION]               the one GGUF whose name carries the tag QUANT
    hf://OWNER/REPO[@REVISION]                     the repository's only GGUF model

Downloads go through ``huggingface_hub`` into its cache (``HF_HOME`` / ``HF_HUB_CACHE``; the
layout other Hub tools share), from ``HF_ENDPOINT``, with ``HF_TOKEN``. Every file is checked
against the sha256 the Hub lists for it (Git LFS) and for the GGUF magic before it is used; a
failed or interrupted download leaves no file behind. With ``HF_HUB_OFFLINE=1`` (or the Hub out
of reach) a model already in the cache is used without any request.

The environment is read at each call, not at import, so one process can switch endpoints."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import shutil
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import ModelLoadError
from core.settings import ModelSourceSettings
from core.sources.gguf_files import describe, model_groups, pick_model, split_parts
from core.sources.pulled import PulledFile, PulledModel
from core.sources.resolve import ProgressCallback, file_sha256, verify_gguf

if TYPE_CHECKING:
    from tqdm.auto import tqdm

log = logging.getLogger("nimbus.sources.hf")

SCHEME = "hf://"
DEFAULT_ENDPOINT = "https://huggingface.co"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_QUANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_TRUE = {"1", "on", "yes", "true"}
_DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
LOG_EVERY_S = 5.0


@dataclass(frozen=True)
class HfSpec:
    text: str
    repo_id: str
    filename: str | None
    quant: str | None
    revision: str


@dataclass(frozen=True)
class HubEnv:
    endpoint: str
    cache_dir: Path
    token: str | None
    offline: bool


@dataclass(frozen=True)
class _RemoteFile:
    name: str
    size: int | None
    sha256: str | None  # the Git LFS oid; GGUF files on the Hub are always LFS
    blob_id: str | None = None


def parse_hf_spec(spec: str) -> HfSpec:
    """Split ``hf://OWNER/REPO[/PATH.gguf | :QUANT][@REVISION]``; ModelLoadError if malformed."""
    text = spec.strip()
    if not text.startswith(SCHEME):
        raise ModelLoadError(f"model {spec!r}: not an hf:// model")
    body, revision, quant = text[len(SCHEME) :], "main", None
    if "@" in body:
        body, revision = body.rsplit("@", 1)
        if ":" in revision:  # hf://o/r@REV:QUANT reads the same as hf://o/r:QUANT@REV
            revision, quant = revision.split(":", 1)
    owner, _, rest = body.partition("/")
    repo, _, path = rest.partition("/")
    if not path and ":" in repo:
        repo, quant = repo.split(":", 1)
    usage = (
        "use hf://OWNER/REPO/FILE.gguf, hf://OWNER/REPO:QUANT or hf://OWNER/REPO, "
        "each with @REVISION optional"
    )
    if not (_NAME.match(owner) and _NAME.match(repo)) or not revision:
        raise ModelLoadError(f"model {spec!r}: not a valid hf:// model ({usage})")
    if path and quant:
        raise ModelLoadError(f"model {spec!r}: give a file path or a quantization tag, not both")
    if path and not path.lower().endswith(".gguf"):
        raise ModelLoadError(f"model {spec!r}: {path} is not a .gguf file ({usage})")
    if quant is not None and not _QUANT.match(quant):
        raise ModelLoadError(f"model {spec!r}: {quant!r} is not a quantization tag (e.g. Q4_K_M)")
    return HfSpec(text, f"{owner}/{repo}", path or None, quant, revision)


def hub_env(environ: Mapping[str, str] | None = None) -> HubEnv:
    """The Hub settings huggingface_hub documents, read now (its own constants are frozen at
    import)."""
    env = os.environ if environ is None else environ
    cache = env.get("HF_HUB_CACHE")
    if not cache:
        home = env.get("HF_HOME") or os.path.join(
            env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
            "huggingface",
        )
        cache = os.path.join(home, "hub")
    token = env.get("HF_TOKEN") or None
    if token is None and environ is None:
        from huggingface_hub import get_token

        token = get_token()  # `hf auth login` stores one
    return HubEnv(
        endpoint=(env.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/"),
        cache_dir=Path(cache).expanduser(),
        token=token,
        offline=env.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE,
    )


def storage_dir(env: HubEnv, repo_id: str) -> Path:
    """The repository's folder in the Hub cache (models--OWNER--REPO)."""
    return env.cache_dir / ("models--" + repo_id.replace("/", "--"))


def fetch_hf_model(
    spec: str, settings: ModelSourceSettings, *, progress: ProgressCallback | None = None
) -> Path:
    """The verified local path of ``spec`` (the first part of a split model)."""
    return pull_hf_model(spec, settings, progress=progress).path


def pull_hf_model(
    spec: str, settings: ModelSourceSettings, *, progress: ProgressCallback | None = None
) -> PulledModel:
    """Download (or find in the cache) and verify every file of ``spec``."""
    parsed = parse_hf_spec(spec)
    env = hub_env()
    if env.offline:
        return _from_cache(parsed, env, reason="HF_HUB_OFFLINE is set")
    try:
        commit, listing = _remote_listing(parsed, env)
    except ModelLoadError:
        raise
    except Exception as exc:
        if not _is_network_error(exc):
            raise _explain(exc, parsed, env) from exc
        log.warning("model %s: %s unreachable (%s); looking in the cache", spec, env.endpoint, exc)
        return _from_cache(parsed, env, reason=f"{env.endpoint} is unreachable ({_line(exc)})")
    names = _choose(parsed, list(listing))
    files = [listing[n] for n in names]
    _check_space(env, parsed, files)
    reporter = _Reporter(parsed.text, sum(f.size or 0 for f in files), progress)
    pulled = [_download(parsed, env, commit, f, reporter) for f in files]
    reporter.finish()
    _remember_revision(env, parsed, commit)
    return PulledModel(parsed.text, tuple(pulled), revision=commit)


# -- listing ------------------------------------------------------------------------------------
def _remote_listing(parsed: HfSpec, env: HubEnv) -> tuple[str, dict[str, _RemoteFile]]:
    """The commit ``parsed.revision`` points at and its files with sizes and LFS sha256."""
    from huggingface_hub import HfApi

    api = HfApi(endpoint=env.endpoint, token=env.token or False)
    info = api.model_info(parsed.repo_id, revision=parsed.revision, files_metadata=True)
    if not info.sha:
        raise ModelLoadError(f"model {parsed.text!r}: the Hub did not say which commit it serves")
    listing = {
        s.rfilename: _RemoteFile(
            s.rfilename,
            s.lfs.size if s.lfs is not None else s.size,
            s.lfs.sha256 if s.lfs is not None else None,
            s.blob_id,
        )
        for s in info.siblings or []
    }
    return str(info.sha), listing


def _choose(parsed: HfSpec, names: list[str]) -> list[str]:
    where = f"{parsed.repo_id}@{parsed.revision}"
    if parsed.filename is None:
        return pick_model(names, source=parsed.text, quant=parsed.quant, where=where)
    wanted = split_parts(parsed.filename) or [parsed.filename]
    missing = [n for n in wanted if n not in names]
    if missing:
        present = describe(model_groups(names))
        raise ModelLoadError(
            f"model {parsed.text!r}: {', '.join(missing)} not found in {where}; it has: {present}"
        )
    return wanted


# -- download -----------------------------------------------------------------------------------
def _download(
    parsed: HfSpec, env: HubEnv, commit: str, file: _RemoteFile, reporter: _Reporter
) -> PulledFile:
    from huggingface_hub import hf_hub_download

    storage = storage_dir(env, parsed.repo_id)
    reporter.next_file(file)
    try:
        local = Path(
            hf_hub_download(
                parsed.repo_id,
                file.name,
                revision=commit,
                cache_dir=env.cache_dir,
                endpoint=env.endpoint,
                token=env.token or False,
                tqdm_class=reporter.tqdm_class(),
            )
        )
    except Exception as exc:
        _remove_partial(storage, file)
        raise _explain(exc, parsed, env, file=file.name) from exc
    return _verified(parsed, local, file.sha256, expected_size=file.size)


def _verified(
    parsed: HfSpec, local: Path, sha256: str | None, *, expected_size: int | None
) -> PulledFile:
    """Check ``local`` (a snapshot entry) against its LFS sha256 and the GGUF magic, once: a
    marker beside the blob records the check. A file that fails is removed from the cache."""
    blob = local.resolve()
    marker = blob.with_name(blob.name + ".verified")
    try:
        verify_gguf(local, source=parsed.text)
        size = local.stat().st_size
        if expected_size is not None and size != expected_size:
            raise ModelLoadError(
                f"model {parsed.text!r}: {local.name} is {size} bytes, the Hub lists "
                f"{expected_size}"
            )
        if sha256 is not None and not marker.exists():
            actual = file_sha256(local)
            if actual != sha256:
                raise ModelLoadError(
                    f"model {parsed.text!r}: {local.name} does not match the Hub's sha256 "
                    f"(expected {sha256}, got {actual}); the copy was removed"
                )
            # A read-only cache (a mounted volume) keeps no marker: it is checked again next time.
            with contextlib.suppress(OSError):
                marker.touch()
    except ModelLoadError:
        _discard(local, blob, marker)
        raise
    return PulledFile(local, size, sha256)


def _discard(*paths: Path) -> None:
    for path in paths:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)


def _remove_partial(storage: Path, file: _RemoteFile) -> None:
    """huggingface_hub keeps ``blobs/<etag>.incomplete`` to resume later; a failed pull removes
    it so that nothing half-written stays on disk."""
    for etag in (file.sha256, file.blob_id):
        if etag:
            _discard(storage / "blobs" / f"{etag}.incomplete")


def _remember_revision(env: HubEnv, parsed: HfSpec, commit: str) -> None:
    """Record refs/<revision> -> commit (as huggingface_hub does) so offline starts find it."""
    if parsed.revision == commit:
        return
    ref = storage_dir(env, parsed.repo_id) / "refs" / parsed.revision
    try:
        ref.parent.mkdir(parents=True, exist_ok=True)
        tmp = ref.with_name(ref.name + ".tmp")
        tmp.write_text(commit)
        os.replace(tmp, ref)
    except OSError as exc:
        log.warning("model %s: could not record revision %s: %s", parsed.text, commit, exc)


def _check_space(env: HubEnv, parsed: HfSpec, files: list[_RemoteFile]) -> None:
    blobs = storage_dir(env, parsed.repo_id) / "blobs"
    needed = sum(
        (f.size or 0)
        for f in files
        if not (f.sha256 and (blobs / f.sha256).exists())
        and not (f.blob_id and (blobs / f.blob_id).exists())
    )
    probe = env.cache_dir
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if needed > free:
        raise ModelLoadError(
            f"model {parsed.text!r}: not enough disk space in {env.cache_dir}: the download needs "
            f"{_mb(needed)}, {_mb(free)} free (point HF_HOME at a larger disk)"
        )


# -- the cache ----------------------------------------------------------------------------------
def _from_cache(parsed: HfSpec, env: HubEnv, *, reason: str) -> PulledModel:
    storage = storage_dir(env, parsed.repo_id)
    commit = _cached_commit(storage, parsed.revision)
    snapshot = storage / "snapshots" / commit if commit else None
    if snapshot is None or not snapshot.is_dir():
        raise ModelLoadError(
            f"model {parsed.text!r}: not in the Hub cache at {env.cache_dir} and {reason}; "
            f"download it first with `nimbus pull {parsed.text}`"
        )
    names = [p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*") if p.is_file()]
    chosen = _choose(parsed, names)
    files = []
    for name in chosen:
        local = snapshot / name
        blob = local.resolve().name
        sha = blob if _SHA256.match(blob) else None
        files.append(_verified(parsed, local, sha, expected_size=None))
    return PulledModel(parsed.text, tuple(files), revision=commit)


def _cached_commit(storage: Path, revision: str) -> str | None:
    if _COMMIT.match(revision):
        return revision
    ref = storage / "refs" / revision
    try:
        return ref.read_text().strip() or None
    except OSError:
        return None


# -- errors -------------------------------------------------------------------------------------
def _is_network_error(exc: BaseException) -> bool:
    import httpx
    from huggingface_hub.errors import OfflineModeIsEnabled

    return isinstance(exc, httpx.TransportError | OfflineModeIsEnabled | ConnectionError)


def _explain(
    exc: BaseException, parsed: HfSpec, env: HubEnv, *, file: str | None = None
) -> ModelLoadError:
    """One line naming the model for every way a Hub download fails."""
    import httpx
    from huggingface_hub import errors as hf

    name = f"model {parsed.text!r}"
    where = f"{parsed.repo_id} at {env.endpoint}"
    if isinstance(exc, ModelLoadError):
        return exc
    if isinstance(exc, hf.GatedRepoError):
        token = "HF_TOKEN is set but its account" if env.token else "no HF_TOKEN is set; an account"
        return ModelLoadError(
            f"{name}: {parsed.repo_id} is a gated repository and {token} must accept its terms "
            "on the Hub first"
        )
    if isinstance(exc, hf.RepositoryNotFoundError):
        hint = (
            "check the name and that HF_TOKEN's account may read it"
            if env.token
            else "a private repository needs HF_TOKEN"
        )
        return ModelLoadError(f"{name}: repository {where} not found ({hint})")
    if isinstance(exc, hf.RevisionNotFoundError):
        return ModelLoadError(f"{name}: revision {parsed.revision!r} not found in {where}")
    if isinstance(exc, hf.EntryNotFoundError):
        return ModelLoadError(f"{name}: {file or 'the file'} not found in {where}")
    if isinstance(exc, hf.HfHubHTTPError):
        status = exc.response.status_code if exc.response is not None else "an error"
        return ModelLoadError(f"{name}: {env.endpoint} answered {status} ({_line(exc)})")
    if isinstance(exc, OSError) and exc.errno in _DISK_FULL:
        return ModelLoadError(
            f"{name}: no space left in {env.cache_dir} while downloading {file}; the partial "
            "file was removed (point HF_HOME at a larger disk)"
        )
    if isinstance(exc, httpx.TransportError | ConnectionError | OSError):
        what = f"downloading {file}" if file else f"reaching {env.endpoint}"
        return ModelLoadError(
            f"{name}: network failure while {what} ({_line(exc)}); nothing was kept, run it "
            "again to retry"
        )
    return ModelLoadError(f"{name}: {type(exc).__name__}: {_line(exc)}")


def _line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] or type(exc).__name__


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


# -- progress -----------------------------------------------------------------------------------
class _Reporter:
    """Bytes of every file of one pull together, to a callback, a terminal bar or the log."""

    def __init__(self, source: str, total: int, callback: ProgressCallback | None) -> None:
        self.source = source
        self.total = total
        self.done = 0
        self._file_start = 0
        self._last_log = 0.0
        self._callback = callback
        self._bar: Any = None
        if callback is None and sys.stderr.isatty():
            from tqdm import tqdm as bar

            self._bar = bar(total=total, unit="B", unit_scale=True, desc="model", file=sys.stderr)

    def next_file(self, file: _RemoteFile) -> None:
        self._file_start = self.done

    def advance(self, n: int) -> None:
        self.done += n
        if self._callback is not None:
            self._callback(self.done, self.total)
        elif self._bar is not None:
            self._bar.update(n)
        elif time.monotonic() - self._last_log >= LOG_EVERY_S or self.done >= self.total:
            self._last_log = time.monotonic()
            pct = 100 * self.done / self.total if self.total else 100.0
            log.info(
                "model %s: downloaded %s of %s (%.0f%%)",
                self.source,
                _mb(self.done),
                _mb(self.total),
                pct,
            )

    def restart_file(self, initial: int) -> None:
        """huggingface_hub starts a file's bar at the bytes it resumes from."""
        self.done = self._file_start + initial

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def tqdm_class(self) -> type[tqdm[Any]]:
        from tqdm.auto import tqdm as base  # the class huggingface_hub's signature names

        reporter = self

        class Bar(base):  # type: ignore[type-arg]
            """What huggingface_hub drives as a progress bar: forwards bytes, draws nothing."""

            def __init__(self, *args: Any, **kwargs: Any) -> None:
                kwargs["disable"] = True
                super().__init__(*args, **kwargs)
                reporter.restart_file(int(kwargs.get("initial") or 0))

            def update(self, n: float | None = 1) -> bool | None:
                reporter.advance(int(n or 0))
                return None

        return Bar
