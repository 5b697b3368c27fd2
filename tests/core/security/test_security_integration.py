"""The security layer on the real bundled model over real loopback HTTP."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.conftest import LiveServer, live_server, model_settings

pytestmark = pytest.mark.integration

KEY_CHAT = "nimbus-int-key-chat-000000"
KEY_LIMIT = "nimbus-int-key-limit-00000"
KEY_MISC = "nimbus-int-key-misc-000000"
CARD = "4111 1111 1111 1111"
# A grammar makes the real model print a card number, which its tokenizer splits into pieces.
CARD_FORMAT = {
    "type": "json_schema",
    "json_schema": {
        "name": "card",
        "schema": {
            "type": "object",
            "properties": {"card": {"const": CARD}},
            "required": ["card"],
        },
    },
}


@pytest.fixture(scope="module")
def secured() -> Iterator[LiveServer]:
    settings = model_settings(
        security={
            "auth": {"mode": "on", "keys": f"{KEY_CHAT},{KEY_LIMIT},{KEY_MISC}"},
            "rate_limit": {"requests_per_window": 4, "window_s": 600},
        }
    )
    with live_server(settings) as server:
        yield server


def test_openai_client_with_and_without_a_key(secured: LiveServer) -> None:
    good = openai.OpenAI(base_url=secured.base_url + "/v1", api_key=KEY_CHAT, max_retries=0)
    reply = good.chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": "Say hi."}], max_tokens=4
    )
    assert reply.choices[0].message.content is not None
    bad = openai.OpenAI(base_url=secured.base_url + "/v1", api_key="wrong-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as exc:
        bad.models.list()
    assert exc.value.status_code == 401
    assert httpx.get(secured.base_url + "/api/health").status_code == 200


def test_rate_limit_over_http(secured: LiveServer) -> None:
    client = openai.OpenAI(base_url=secured.base_url + "/v1", api_key=KEY_LIMIT, max_retries=0)
    for _ in range(4):
        client.models.list()
    with pytest.raises(openai.RateLimitError) as exc:
        client.completions.create(model="smollm2", prompt="1, 2,", max_tokens=2)
    assert int(exc.value.response.headers["Retry-After"]) >= 1


def test_real_model_output_is_redacted_whole_and_streamed(secured: LiveServer) -> None:
    headers = {"Authorization": f"Bearer {KEY_CHAT}"}
    body = {
        "messages": [{"role": "user", "content": "Give me a card number as JSON."}],
        "response_format": CARD_FORMAT,
        "max_tokens": 40,
        "temperature": 0,
    }
    with httpx.Client(base_url=secured.base_url, headers=headers, timeout=120) as http:
        whole = http.post("/v1/chat/completions", json=body).json()
        content = whole["choices"][0]["message"]["content"]
        assert "[REDACTED]" in content and "4111" not in content
        assert whole["nimbus"]["redactions"] == 1
        deltas: list[str] = []
        final: dict[str, object] = {}
        with http.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as r:
            for line in r.iter_lines():
                if line.startswith("data: {"):
                    event = json.loads(line[len("data: ") :])
                    deltas.append(event["choices"][0]["delta"].get("content", ""))
                    if event["choices"][0]["finish_reason"]:
                        final = event
    assert "".join(deltas) == content  # the stream equals the whole (filtered) answer
    assert len([d for d in deltas if d]) > 1
    assert final["nimbus"] == {"redactions": 1}


def raw_request(server: LiveServer, data: bytes) -> bytes:
    host, port = server.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(data)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize(
    "request_bytes",
    [
        # A header value with a control character (request smuggling / log injection attempt).
        b"GET /api/health HTTP/1.1\r\nHost: x\r\nX-Evil: a\x00b\r\nConnection: close\r\n\r\n",
        b"GET /api/health HTTP/1.1\r\nHost: x\r\nX-Evil: a\x1b[31mb\r\nConnection: close\r\n\r\n",
        # A header name with a space and one with a bare CR.
        b"GET /api/health HTTP/1.1\r\nHost: x\r\nBad Name: v\r\nConnection: close\r\n\r\n",
        b"GET /api/health HTTP/1.1\r\nHost: x\r\nX-A: v\rX-B: w\r\nConnection: close\r\n\r\n",
    ],
)
def test_malformed_headers_are_refused_and_the_server_keeps_serving(
    secured: LiveServer, request_bytes: bytes
) -> None:
    answer = raw_request(secured, request_bytes)
    assert answer.startswith(b"HTTP/1.1 400"), answer[:80]
    assert httpx.get(secured.base_url + "/api/health").status_code == 200


def test_bad_bodies_over_http(secured: LiveServer) -> None:
    headers = {"x-api-key": KEY_MISC, "content-type": "application/json"}
    with httpx.Client(base_url=secured.base_url, headers=headers, timeout=120) as http:
        huge = http.post("/api/generate", content=b"x" * 5_000_000)
        assert huge.status_code == 413
        assert huge.json()["error"]["code"] == "payload_too_large"
        utf8 = http.post("/api/generate", content=b'{"prompt": "\xc3\x28"}')
        assert utf8.status_code == 422 and "UTF-8" in utf8.json()["error"]["message"]
        nested = http.post("/api/generate", content=b"[" * 50_000 + b"]" * 50_000)
        assert nested.status_code == 400 and "nesting" in nested.json()["error"]["message"]
    with httpx.Client(base_url=secured.base_url, timeout=120) as http:
        ok = http.post(
            "/api/generate",
            json={"prompt": "Say hi.\x00", "maxTokens": 3},
            headers={"x-api-key": KEY_MISC},
        )
    assert ok.status_code == 200
    assert ok.headers["X-Nimbus-Prompt-Warnings"] == "prompt: removed 1 control character(s)"
