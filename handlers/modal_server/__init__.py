"""The Modal adapter behind ``modal_app.py`` (repository root), which only declares the App and
its class with what this package derives:

- ``settings``: the class's options (resources, warm containers, concurrency, forwarded
  environment, secrets, volume) from ``Settings.modal`` (``NIMBUS_MODAL__*``) and the engine;
- ``image``: the container image (CPU or CUDA llama-cpp-python, pyproject dependencies, code);
- ``runtime``: the per-container engine and app, built by the class's enter hooks;
- ``volume``: the pull function that downloads an hf:// model into the Volume once.

Everything but the image builders runs without a Modal account, so the tests exercise it offline.
"""

from __future__ import annotations

from handlers.modal_server.image import (
    BUNDLED_MODEL_WHEEL,
    build_image,
    project_dependencies,
    requirement_for,
)
from handlers.modal_server.runtime import ModalRuntime
from handlers.modal_server.settings import (
    check_model_source,
    cls_options,
    concurrency,
    container_env,
    max_inputs,
)
from handlers.modal_server.volume import pull, pull_options, serving_env

__all__ = [
    "BUNDLED_MODEL_WHEEL",
    "ModalRuntime",
    "build_image",
    "check_model_source",
    "cls_options",
    "concurrency",
    "container_env",
    "max_inputs",
    "project_dependencies",
    "pull",
    "pull_options",
    "requirement_for",
    "serving_env",
]
