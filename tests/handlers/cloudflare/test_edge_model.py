"""The edge's own model in real workerd: llama.cpp as WebAssembly in the Worker's isolate, the
bundled GGUF read from (Miniflare's local) R2. It answers when every origin is down, when the
client asks for it, or always; one generation at a time, a bounded queue, then 503."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import httpx
import pytest
from openai import OpenAI

from tests.handlers.cloudflare.conftest import EDGE_KEYS, Edge

pytestmark = pytest.mark.integration

AUTH = {"authorization": f"Bearer {EDGE_KEYS[0]}"}
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def chat(edge: Edge, instance: str, **body: Any) -> httpx.Response:
    return httpx.post(
        edge.urls[instance] + "/v1/chat/completions",
        json={"messages": QUESTION, "max_tokens": 12, "temperature": 0, **body},
        headers=AUTH,
        timeout=300,
    )


def sse_data(response: httpx.Response) -> list[str]:
    return [
        line.removeprefix("data: ") for line in response.iter_lines() if line.startswith("data: ")
    ]


def test_with_every_origin_down_the_edge_answers_from_its_model(edge: Edge) -> None:
    r = chat(edge, "edge-failover")
    assert r.status_code == 200, r.text
    assert r.headers["x-nimbus-answered-by"] == "edge"
    assert "x-nimbus-origin" not in r.headers
    body = r.json()
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    assert body["model"] == "SmolLM2-135M-Instruct.Q4_1"
    (choice,) = body["choices"]
    assert choice["message"]["role"] == "assistant"
    # The real model knows this one; a fixture or an echo would not.
    assert "Paris" in choice["message"]["content"]
    usage = body["usage"]
    assert usage["prompt_tokens"] > 10 and 1 <= usage["completion_tokens"] <= 12
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert choice["finish_reason"] in {"stop", "length"}
