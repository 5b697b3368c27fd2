"""The Modal class's options, derived from the settings tree (``settings.modal`` and the engine):
resources, warm containers, concurrency, the forwarded environment, secrets and volumes."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

from core.settings import ModalSettings, Settings
from handlers.modal_server.image import build_image
from handlers.modal_server.volume import serving_env

_SECRET_HINTS = ("KEY", "SECRET", "TOKEN", "PASSWORD")


def container_env(
    deploy: ModalSettings, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """``NIMBUS_*`` variables forwarded to the containers (secrets excluded: use a
    modal.Secret), plus container-specific defaults the user did not set."""
    environ = os.environ if environ is None else environ
    env = {
        k: v
        for k, v in environ.items()
        if k.startswith("NIMBUS_")
        # Deploy knobs are never secret (NIMBUS_MODAL__SECRET_NAME is only a name).
        and (k.startswith("NIMBUS_MODAL__") or not any(h in k.upper() for h in _SECRET_HINTS))
    }
    # os.cpu_count() in a container may report the host's cores, not the reservation: size the
    # llama.cpp thread pool to the cores Modal actually gives us.
    env.setdefault("NIMBUS_ENGINE__N_THREADS", str(max(1, math.ceil(deploy.cpu))))
    if deploy.gpu:
        env.setdefault("NIMBUS_ENGINE__N_GPU_LAYERS", "-1")
    return env


def max_inputs(settings: Settings) -> int:
    """What one container can hold: ``slots`` generating requests plus ``max_queue`` waiting.
    More would only earn 503s from the engine; Modal routes the excess to another container."""
    return settings.engine.slots + settings.limits.max_queue


def concurrency(settings: Settings) -> dict[str, int]:
    most = max_inputs(settings)
    return {"max_inputs": most, "target_inputs": min(settings.modal.target_inputs, most)}


def check_model_source(settings: Settings) -> None:
    """Fail at deploy time, not in a container, when the model can't be where it is expected."""
    deploy = settings.modal
    if deploy.volume is None:
        return
    mount = deploy.volume_mount.rstrip("/") + "/"
    if not settings.model.startswith((mount, "hf://")):
        raise ValueError(
            f"NIMBUS_MODAL__VOLUME={deploy.volume} is mounted at {deploy.volume_mount}: set "
            f"NIMBUS_MODEL to a GGUF path under it, e.g. {mount}model.gguf "
            f"(upload with `modal volume put {deploy.volume} model.gguf /model.gguf`), or to an "
            "hf:// model pulled with `modal run modal_app.py::pull --model hf://...`"
        )


def cls_options(settings: Settings, image: Any = None) -> dict[str, Any]:
    """Keyword arguments for ``@app.cls``."""
    import modal

    deploy = settings.modal
    check_model_source(settings)
    options: dict[str, Any] = {
        "image": image if image is not None else build_image(settings),
        # An hf:// model is read from the Volume's Hub cache (volume.py).
        "env": {**container_env(deploy), **serving_env(settings)},
        "min_containers": deploy.min_containers,
        "max_containers": max(deploy.max_containers, deploy.min_containers),
        "scaledown_window": deploy.scaledown_window,
        "cpu": deploy.cpu,
        "memory": deploy.memory_mb,
        "timeout": deploy.timeout_s,
        "enable_memory_snapshot": deploy.memory_snapshot,
        "secrets": [modal.Secret.from_name(deploy.secret_name)] if deploy.secret_name else [],
    }
    if deploy.gpu:
        options["gpu"] = deploy.gpu
    if deploy.volume:
        # Not created on the fly: an empty volume would only fail later, in every container.
        volume = modal.Volume.from_name(deploy.volume)
        options["volumes"] = {deploy.volume_mount: volume.read_only()}
    return options
