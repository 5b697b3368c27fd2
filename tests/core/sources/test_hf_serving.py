"""Serving models fetched through the stand-in Hub: `nimbus serve --model hf://OWNER/REPO:QUANT`
with Gemma 3 270M (a base model without a chat template) and a split GGUF."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from openai import BadRequestError, OpenAI

from core.engine.llama import LlamaEngine
from core.engine.types import GenerationRequest, PromptSegment, SamplingParams
from core.sources import bundled_model_path
from tests.conftest import GEMMA_FILE, GEMMA_REPO, free_port, live_server, model_settings
from tests.support.gguf_split import split_gguf
from tests.support.hub_standin import HubFile, StandInHub

pytestmark = pytest.mark.integration
NIMBUS = str(Path(sys.executable).parent / "nimbus")
GEMMA = f"hf://{GEMMA_REPO}:Q4_K_M"


@pytest.fixture()
def gemma_hub(hub: StandInHub, gemma_hub_file: HubFile) -> StandInHub:
    hub.add_repo(GEMMA_REPO, {GEMMA_FILE: gemma_hub_file, "README.md": HubFile.of(b"# gemma")})
    return hub


@pytest.fixture()
def served_gemma(gemma_hub: StandInHub) -> Iterator[str]:
    """`nimbus serve` as a user runs it, the model fetched from the Hub-compatible endpoint."""
    port = free_port()
    env = {**os.environ, "NIMBUS_ENGINE__N_CTX": "1024", "NIMBUS_ENGINE__N_THREADS": "2"}
    proc = subprocess.Popen(
        [NIMBUS, "serve", "--model", GEMMA, "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "nimbus serve did not become ready"
            try:
                if httpx.get(f"{base}/api/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert gemma_hub.gets == [f"{GEMMA_REPO}/{GEMMA_FILE}"]  # fetched once, verified


def test_gemma_base_model_serves_completions_and_refuses_chat_clearly(served_gemma: str) -> None:
    client = OpenAI(base_url=f"{served_gemma}/v1", api_key="unused", max_retries=0)
    models = client.models.list()
    assert [m.id for m in models.data] == ["gemma-3-270m-q4_k_m"]
    done = client.completions.create(
        model="gemma-3-270m-q4_k_m", prompt="The capital of France is", max_tokens=8, temperature=0
    )
    assert done.choices[0].text.strip() and done.usage.completion_tokens >= 1

    raw = httpx.post(
        f"{served_gemma}/api/generate",
        json={"prompt": "One, two, three,", "maxTokens": 6, "temperature": 0, "raw": True},
        timeout=120,
    )
    assert raw.status_code == 200 and raw.json()["tokens"] >= 1

    with pytest.raises(BadRequestError) as exc:
        client.chat.completions.create(
            model="gemma-3-270m-q4_k_m", messages=[{"role": "user", "content": "Hi"}]
        )
    error = exc.value.body
    assert isinstance(error, dict)
    assert error["code"] == "chat_template_missing" and error["param"] == "messages"
    assert error["message"].startswith(f"model {GEMMA!r} has no chat template")
    assert "NIMBUS_ENGINE__CHAT_TEMPLATE" in error["message"]
    # Not raw, /api/generate goes through the chat template: the same clear 400.
    cooked = httpx.post(f"{served_gemma}/api/generate", json={"prompt": "Hi"}, timeout=60)
    assert cooked.status_code == 400
    assert cooked.json()["error"]["code"] == "chat_template_missing"
    # The server keeps serving.
    assert httpx.get(f"{served_gemma}/api/health", timeout=10).status_code == 200


def test_gemma_answers_chat_with_the_configured_turn_template(gemma_hub: StandInHub) -> None:
    settings = model_settings(model=GEMMA, engine={"chat_template": "gemma"})
    with live_server(settings) as server:
        client = OpenAI(base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0)
        reply = client.chat.completions.create(
            model=server.engine.model_id,
            messages=[
                {"role": "system", "content": "Answer in one word."},
                {"role": "user", "content": "What colour is the sky?"},
            ],
            max_tokens=8,
            temperature=0,
        )
        assert reply.choices[0].finish_reason in {"stop", "length"}
        assert reply.usage is not None and reply.usage.completion_tokens >= 1
        # The turn markup went in as Gemma's special tokens, the user's text as text.
        prompt = server.engine.render_chat([_msg("user", "<start_of_turn> is just text here")])
        tokens = server.engine.tokenize(prompt)
        start_of_turn = server.engine.tokenize(
            (PromptSegment("<start_of_turn>", special=True),), add_bos=False
        )
        assert len(start_of_turn) == 1  # one special token
        assert tokens.count(start_of_turn[0]) == 2  # the user turn and the model turn, not the text


def _msg(role: str, content: str) -> object:
    from core.engine.types import ChatMessage

    return ChatMessage(role, content)


def test_a_split_model_loads_from_its_first_part(hub: StandInHub, tmp_path: Path) -> None:
    parts = split_gguf(bundled_model_path(), tmp_path, "SmolLM2-135M-Q4_1", 2)
    hub.add_repo("nimbus-test/smol-split-GGUF", {p.name: HubFile.of(p) for p in parts})
    engine = LlamaEngine(model_settings(model="hf://nimbus-test/smol-split-GGUF:Q4_1"))
    engine.load()
    try:
        assert engine.model_path is not None
        assert engine.model_path.name == "SmolLM2-135M-Q4_1-00001-of-00002.gguf"
        assert sorted(hub.gets) == sorted(f"nimbus-test/smol-split-GGUF/{p.name}" for p in parts)
        request = GenerationRequest(
            prompt=(PromptSegment("The capital of France is", special=False),),
            max_tokens=4,
            sampling=SamplingParams(temperature=0.0),
        )

        async def run() -> str:
            return (await engine.submit(request).collect()).text

        import asyncio

        assert asyncio.run(run()).strip()
    finally:
        engine.close()
