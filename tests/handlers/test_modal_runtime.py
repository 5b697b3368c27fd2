"""The Modal class run locally on the real bundled model: its @modal.enter lifecycle,
``generate.local(...)``, and the ASGI app its ``web`` method returns, served by uvicorn over
real loopback HTTP and called with httpx and the official openai client."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from openai import OpenAI

from core.api.protocol import GenerateResponse
from core.errors import InvalidParameterError
from tests.conftest import free_port, start_server
from tests.handlers.test_modal_app import ROOT, TEST_KEY, load_modal_app
from tests.support.metrics import Scrape, delta

pytestmark = pytest.mark.integration

# NIMBUS_SECURITY__AUTH__KEYS is what the class's modal.Secret puts in a container's environment.
TEST_ENV = {
    "NIMBUS_ENGINE__N_CTX": "1024",
    "NIMBUS_ENGINE__N_THREADS": "2",
    "NIMBUS_SECURITY__AUTH__KEYS": TEST_KEY,
    "NIMBUS_METRICS__ENABLED": "true",
}
AUTH = {"Authorization": f"Bearer {TEST_KEY}"}


@dataclass
class Deployed:
    obj: Any  # modal_app.Model() as a caller holds it
    user: Any  # the class instance Modal created behind it (runs the @modal.enter hooks)
    app: Any
    base_url: str


def _user_instance(obj: Any) -> Any:
    from modal._utils.async_utils import synchronizer

    return synchronizer._translate_in(obj)._cached_user_cls_instance()


@pytest.fixture(scope="module")
def deployed() -> Iterator[Deployed]:
    with pytest.MonkeyPatch.context() as mp:
        module = load_modal_app(mp, **TEST_ENV)
        obj = module.Model()
        app = obj.web.local()  # runs prepare (snap=True) then load (snap=False), as in a container
        server, thread = start_server(app, port := free_port())
        try:
            yield Deployed(obj, _user_instance(obj), app, f"http://127.0.0.1:{port}")
        finally:
            server.should_exit = True
            thread.join(timeout=15)
            _user_instance(obj).runtime.close()


def test_lifecycle_prepares_in_snapshot_then_loads_after_restore(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    user = load_modal_app(monkeypatch, **TEST_ENV).Model._get_user_cls()()
    user.prepare()
    runtime = user.runtime
    # Snapshot half: libllama imported, GGUF found and checked, app built; no weights yet.
    assert "llama_cpp" in sys.modules
    assert runtime.engine.state == "loading"
    assert runtime.engine.model_path is not None and runtime.engine.model_path.is_file()
    assert runtime.app.state.service.engine is runtime.engine
    user.load()
    assert runtime.engine.state == "ready"
    assert set(runtime.timings) == {"prepare_s", "load_s", "warmup_s"}  # warm-up on by default
    user.close()
    assert runtime.engine.state == "stopped"


def test_prepare_for_cuda_builds_leaves_libllama_unloaded() -> None:
    # A CUDA build must not initialise its backend before the GPU is attached (after restore).
    code = (
        "import sys; from handlers.modal_server import ModalRuntime;"
        "r = ModalRuntime.prepare(import_native=False);"
        "print(r.engine.state, 'llama_cpp' in sys.modules)"
    )
    env = {**os.environ, "NIMBUS_SECURITY__AUTH__KEYS": TEST_KEY}
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["loading", "False"]


def test_generate_local_runs_on_the_loaded_engine(deployed: Deployed) -> None:
    reply = deployed.obj.generate.local(
        "What is the capital of France?", max_tokens=16, temperature=0.0
    )
    assert set(reply) == {"text", "tokens", "latencyMs"}
    assert reply["text"].strip() and 0 < reply["tokens"] <= 16
    assert "paris" in reply["text"].lower()
    raw = deployed.obj.generate.local("The sky is", max_tokens=4, raw=True)
    assert 0 < raw["tokens"] <= 4


async def test_generate_works_when_called_inside_an_event_loop(deployed: Deployed) -> None:
    # Modal may call sync code from a thread that runs a loop; asyncio.run would refuse there.
    reply = deployed.user.runtime.generate("Say yes.", max_tokens=3)
    assert 0 < reply["tokens"] <= 3


def test_generate_local_applies_the_prompt_checks(deployed: Deployed) -> None:
    # Same security pipeline as /api/generate: control characters stripped and reported.
    reply = deployed.obj.generate.local("Say\x00 hi.", max_tokens=2)
    assert reply["warnings"] == ["prompt: removed 1 control character(s)"]
    assert "warnings" not in deployed.obj.generate.local("Say hi.", max_tokens=2)


def test_generate_local_refuses_bad_arguments(deployed: Deployed) -> None:
    with pytest.raises(InvalidParameterError, match="maxTokens"):
        deployed.obj.generate.local("hi", max_tokens=10**6)
    with pytest.raises(InvalidParameterError, match="prompt"):
        deployed.obj.generate.local("")


def test_engine_is_built_once_per_container(deployed: Deployed) -> None:
    engine = deployed.user.runtime.engine
    deployed.obj.generate.local("Say hi.", max_tokens=2)
    assert deployed.obj.web.local() is deployed.app  # no second enter, no second app
    assert deployed.app.state.service.engine is engine
    assert deployed.user.runtime.engine is engine and engine.state == "ready"


def test_web_app_serves_the_native_api_over_http(deployed: Deployed) -> None:
    with httpx.Client(base_url=deployed.base_url, headers=AUTH, timeout=120) as http:
        health = http.get("/api/health")
        assert health.status_code == 200 and health.json()["status"] == "ready"
        stats = deployed.app.state.service.engine.stats()
        assert health.json()["queue"] == {
            "active": stats.active,
            "waiting": stats.waiting,
            "capacity": stats.capacity,
            "admitting": stats.capacity,  # nothing refused: the whole queue is open
        }

        reply = http.post("/api/generate", json={"prompt": "Name a fruit.", "maxTokens": 8})
        assert reply.status_code == 200
        body = reply.json()
        assert body["text"] and 0 < body["tokens"] <= 8 and body["latencyMs"] > 0

        with http.stream(
            "POST",
            "/api/generate",
            json={"prompt": "Count to three.", "maxTokens": 8, "stream": True},
        ) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            events = [
                line.removeprefix("data: ")
                for line in stream.iter_lines()
                if line.startswith("data: ")
            ]
        assert events[-1] == "[DONE]"
        tokens = [json.loads(e)["token"] for e in events[:-1]]
        assert 0 < len(tokens) <= 8 and "".join(tokens).strip()

        bad = http.post("/api/generate", json={"prompt": "hi", "maxTokens": 10**6})
        assert bad.status_code == 400
        assert bad.json()["error"]["code"] == "invalid_parameter"


def test_web_app_requires_an_api_key_by_default(deployed: Deployed) -> None:
    import openai

    with httpx.Client(base_url=deployed.base_url, timeout=120) as http:
        assert http.get("/api/health").status_code == 200  # health stays open for probes
        for headers in ({}, {"Authorization": "Bearer sk-wrong-key-0123456789"}):
            reply = http.post(
                "/api/generate", json={"prompt": "hi", "maxTokens": 2}, headers=headers
            )
            assert reply.status_code == 401
            assert reply.json()["error"]["code"] == "invalid_api_key"
        assert (
            http.post(
                "/api/generate",
                json={"prompt": "hi", "maxTokens": 2},
                headers={"x-api-key": TEST_KEY},
            ).status_code
            == 200
        )
    client = OpenAI(
        base_url=f"{deployed.base_url}/v1", api_key="sk-wrong-key-0123456789", max_retries=0
    )
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}], max_tokens=2
        )


def test_web_app_speaks_openai_to_the_official_client(deployed: Deployed) -> None:
    client = OpenAI(base_url=f"{deployed.base_url}/v1", api_key=TEST_KEY, max_retries=0)
    [model] = client.models.list().data
    assert model.id == "smollm2-135m-instruct"
    chat = client.chat.completions.create(
        model=model.id,
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=12,
        temperature=0,
    )
    assert chat.choices[0].message.content and chat.usage and 0 < chat.usage.completion_tokens <= 12
    pieces = [
        chunk.choices[0].delta.content or ""
        for chunk in client.chat.completions.create(
            model=model.id,
            messages=[{"role": "user", "content": "Say hello."}],
            max_tokens=8,
            stream=True,
        )
        if chunk.choices
    ]
    assert "".join(pieces).strip()


def test_metrics_count_web_requests_and_method_calls(deployed: Deployed) -> None:
    with httpx.Client(base_url=deployed.base_url, timeout=120) as http:
        assert http.get("/metrics").status_code == 401  # API keys are on: scrapers need one

        def scrape() -> Scrape:
            reply = http.get("/metrics", headers=AUTH)
            assert reply.status_code == 200
            return Scrape(reply.text)

        before = scrape()
        client = OpenAI(base_url=f"{deployed.base_url}/v1", api_key=TEST_KEY, max_retries=0)
        chat = client.chat.completions.create(
            model="smollm2-135m-instruct",
            messages=[{"role": "user", "content": "Name a river."}],
            max_tokens=6,
            temperature=0,
        )
        method = deployed.obj.generate.local("Name a mountain.", max_tokens=5, temperature=0.0)
        after = scrape()
    assert chat.usage is not None
    generated = chat.usage.completion_tokens + method["tokens"]
    assert delta(before, after, "nimbus_completion_tokens_total") == generated
    # Only the web request is an HTTP request; the method call is a generation all the same.
    route = "/v1/chat/completions"
    assert delta(before, after, "nimbus_requests_total", route=route, status="200") == 1
    assert delta(before, after, "nimbus_time_to_first_token_seconds_count") == 2
    assert after.value("nimbus_model_load_seconds") > 0
    assert after.value("nimbus_slots") == deployed.user.runtime.settings.engine.slots


def test_runtime_generate_matches_the_native_route_contract() -> None:
    # The helper's output is GenerateResponse, the /api/generate body (aliases included).
    fields = {f.alias or name for name, f in GenerateResponse.model_fields.items()}
    assert fields == {"text", "tokens", "latencyMs"}


def test_deploy_smoke_script_passes_against_the_served_class(deployed: Deployed) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "deploy" / "modal" / "smoke.py"),
            deployed.base_url,
            "--wait",
            "30",
            "--api-key",
            TEST_KEY,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert [line.split()[1] for line in lines[:4]] == ["health", "generate", "generate", "openai"]
    assert all(line.startswith("ok ") for line in lines[:4]) and lines[-1] == "smoke test passed"


def test_smoke_script_without_the_key_fails_at_generate(deployed: Deployed) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "deploy" / "modal" / "smoke.py"),
            deployed.base_url,
            "--wait",
            "30",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={k: v for k, v in os.environ.items() if k != "NIMBUS_API_KEY"},
    )
    assert proc.returncode == 1
    assert proc.stdout.splitlines()[0].startswith("ok   health")
    assert proc.stdout.splitlines()[1].startswith("FAIL generate: HTTPStatusError")
    assert "401" in proc.stdout


def test_smoke_script_fails_loudly_on_a_broken_endpoint() -> None:
    port = free_port()  # nothing listens here
    proc = subprocess.run(
        [sys.executable, str(ROOT / "deploy" / "modal" / "smoke.py"), f"http://127.0.0.1:{port}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert proc.stdout.startswith("FAIL health: ConnectError")
