"""The Modal `pull` function, run with ``.local()`` against the stand-in Hub, a temporary
directory standing in for the Volume; then a serving container loading from it offline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from core.errors import ModelLoadError
from handlers import modal_server as ms
from tests.conftest import SMOL_FILE, SMOL_REPO
from tests.handlers.test_modal_app import TEST_KEY, load_modal_app
from tests.support.hub_standin import HubFile, StandInHub
from tests.support.modal_introspect import _closure, _impl

SPEC = f"hf://{SMOL_REPO}:Q4_1"


def tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` with its size and modification time."""
    return {
        str(p.relative_to(root)): (p.lstat().st_size, p.lstat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
    }


def pull_definition(module: Any) -> dict[str, Any]:
    return _closure(_impl(module.pull)._load)


def test_pull_function_mounts_the_volume_read_write_with_the_hf_secret(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    module = load_modal_app(
        monkeypatch,
        NIMBUS_MODEL=SPEC,
        NIMBUS_MODAL__VOLUME="nimbus-models",
        NIMBUS_MODAL__HF_SECRET="huggingface",
    )
    d = pull_definition(module)
    ((mount, volume),) = d["validated_volumes_no_cloud_buckets"]
    assert mount == "/models" and "read_only" not in repr(volume).lower()
    assert any("huggingface" in repr(s) for s in d["secrets"])
    assert d["timeout"] == 3600
    # The serving class mounts the same Volume read-only and reads the Hub cache offline.
    cls = _closure(_impl(module.Model._get_class_service_function())._load)
    env_secret = next(s for s in cls["secrets"] if "from_dict" in repr(s))
    assert "HF_HUB_CACHE" in repr(env_secret) and "HF_HUB_OFFLINE" in repr(env_secret)
    assert ms.serving_env(module.settings) == {
        "HF_HUB_CACHE": "/models/hub",
        "HF_HUB_OFFLINE": "1",
    }


def test_no_hf_secret_and_no_volume_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    d = pull_definition(load_modal_app(monkeypatch))
    assert d["secrets"] == [] or all("huggingface" not in repr(s) for s in d["secrets"])
    assert d["validated_volumes_no_cloud_buckets"] == []
    with pytest.raises(ModelLoadError, match="NIMBUS_MODAL__VOLUME is not set"):
        load_modal_app(monkeypatch).pull.local(model=SPEC)


def test_a_volume_accepts_an_hf_model_and_still_refuses_others(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    load_modal_app(monkeypatch, NIMBUS_MODAL__VOLUME="v", NIMBUS_MODEL=SPEC)
    with pytest.raises(ValueError, match=r"or to an hf:// model pulled with `modal run"):
        load_modal_app(monkeypatch, NIMBUS_MODAL__VOLUME="v", NIMBUS_MODEL="s3://b/m.gguf")


@pytest.mark.integration
def test_pull_into_the_volume_then_serve_from_it_offline(
    hub: StandInHub,
    smol_hub_file: HubFile,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    volume = tmp_path / "volume"
    env = {
        "NIMBUS_MODEL": SPEC,
        "NIMBUS_MODAL__VOLUME": "nimbus-models",
        "NIMBUS_MODAL__VOLUME_MOUNT": str(volume),
        "NIMBUS_ENGINE__N_CTX": "1024",
        "NIMBUS_ENGINE__N_THREADS": "2",
        "NIMBUS_SECURITY__AUTH__KEYS": TEST_KEY,
    }
    module = load_modal_app(monkeypatch, **env)
    with pytest.raises(ModelLoadError, match="fetches hf:// models"):
        module.pull.local(model="/models/x.gguf")
    result = module.pull.local(model=SPEC)
    commit = hub.repos[SMOL_REPO].refs["main"]
    snapshot = volume / "hub" / "models--nimbus-test--SmolLM2-135M-Instruct-GGUF" / "snapshots"
    assert result["path"] == str(snapshot / commit / SMOL_FILE)
    assert result["files"] == [
        {"path": result["path"], "size": smol_hub_file.size, "sha256": smol_hub_file.sha256}
    ]
    assert result["serve_with"] == {"NIMBUS_MODEL": SPEC, "NIMBUS_MODAL__VOLUME": "nimbus-models"}
    assert hub.gets == [f"{SMOL_REPO}/{SMOL_FILE}"]
    # A second pull finds the model in the Volume: nothing is downloaded again.
    module.pull.local(model=SPEC)
    assert len(hub.gets) == 1

    # A serving container: the Volume's Hub cache, offline. No request reaches the Hub, and
    # nothing in the Volume changes (it is mounted read-only there).
    before, requests = tree(volume), len(hub.requests)
    for key, value in ms.serving_env(module.settings).items():
        monkeypatch.setenv(key, value)
    serving = load_modal_app(monkeypatch, **env, **ms.serving_env(module.settings))
    obj = serving.Model()
    try:
        obj.web.local()  # prepare + load, as in a container
        reply = obj.generate.local("Say hi.", max_tokens=4, temperature=0.0)
        assert reply["tokens"] >= 1
    finally:
        from modal._utils.async_utils import synchronizer

        synchronizer._translate_in(obj)._cached_user_cls_instance().runtime.close()
    assert len(hub.requests) == requests
    assert tree(volume) == before
