"""Modal: download a model into the configured ``modal.Volume`` once, then serve it from there.

``modal run modal_app.py::pull --model hf://OWNER/REPO:QUANT`` runs :func:`pull` in a container
with the Volume mounted read-write: the model lands in the Hub cache layout under
``<volume_mount>/hub`` (what ``HF_HUB_CACHE`` names), verified against the Hub's sha256, and the
Volume is committed. Serving containers mount the same Volume read-only and, for an hf:// model,
resolve it from that cache with ``HF_HUB_OFFLINE=1``: no request to the Hub at cold start.
``HF_TOKEN`` (gated or private repositories) comes from a ``modal.Secret``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from core.errors import ModelLoadError
from core.settings import ModalSettings, Settings, load_settings

HUB_DIR = "hub"


def hub_cache(volume_mount: str) -> Path:
    return Path(volume_mount) / HUB_DIR


def serving_env(settings: Settings) -> dict[str, str]:
    """Environment of serving containers: an hf:// model comes from the Volume's Hub cache,
    without network."""
    modal = settings.modal
    if modal.volume is None or not settings.model.strip().startswith("hf://"):
        return {}
    return {"HF_HUB_CACHE": str(hub_cache(modal.volume_mount)), "HF_HUB_OFFLINE": "1"}


def pull_options(settings: Settings, image: Any) -> dict[str, Any]:
    """Keyword arguments for ``@app.function`` of the pull function."""
    import modal

    deploy = settings.modal
    options: dict[str, Any] = {
        "image": image,
        "timeout": deploy.pull_timeout_s,
        "env": {
            "HF_HUB_CACHE": str(hub_cache(deploy.volume_mount)),
            "HF_HUB_DISABLE_TELEMETRY": "1",
        },
        "secrets": [modal.Secret.from_name(deploy.hf_secret)] if deploy.hf_secret else [],
    }
    if deploy.volume is not None:
        # Created on the first pull; serving containers then mount it read-only.
        volume = modal.Volume.from_name(deploy.volume, create_if_missing=True)
        options["volumes"] = {deploy.volume_mount: volume}
    return options


@contextlib.contextmanager
def _hub_cache_env(cache: Path) -> Iterator[None]:
    saved = os.environ.get("HF_HUB_CACHE")
    os.environ["HF_HUB_CACHE"] = str(cache)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("HF_HUB_CACHE", None)
        else:
            os.environ["HF_HUB_CACHE"] = saved


def pull(model: str, deploy: ModalSettings) -> dict[str, Any]:
    """Download and verify ``model`` into the Volume's Hub cache; what to serve it with."""
    from core.sources.pull import pull_model

    volume, volume_mount = deploy.volume, deploy.volume_mount
    if volume is None:
        raise ModelLoadError(
            "NIMBUS_MODAL__VOLUME is not set: the pull function needs a modal.Volume to keep the "
            "model in (e.g. NIMBUS_MODAL__VOLUME=nimbus-models)"
        )
    if not model.strip().startswith("hf://"):
        raise ModelLoadError(
            f"model {model!r}: the pull function fetches hf:// models; upload a local file with "
            f"`modal volume put {volume} model.gguf /model.gguf` instead"
        )
    with _hub_cache_env(hub_cache(volume_mount)):
        pulled = pull_model(model, load_settings().source)
    _commit(volume)
    return {
        "model": model,
        "revision": pulled.revision,
        "path": str(pulled.path),
        "size": pulled.size,
        "files": [{"path": str(f.path), "size": f.size, "sha256": f.sha256} for f in pulled.files],
        "serve_with": {"NIMBUS_MODEL": model, "NIMBUS_MODAL__VOLUME": volume},
    }


def _commit(volume: str) -> None:
    """Persist the Volume's changes for other containers (only inside a Modal container;
    ``.local()`` writes to the mount path directly)."""
    import modal

    if modal.is_local():
        return
    modal.Volume.from_name(volume).commit()
