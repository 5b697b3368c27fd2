"""Size and shape checks at the edge give exactly the origin's answers, without reaching it."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from core.settings import LimitSettings
from tests.handlers.cloudflare.conftest import EDGE_KEYS, Edge

pytestmark = pytest.mark.integration

LIMITS = LimitSettings.model_validate({})
AUTH = {"authorization": f"Bearer {EDGE_KEYS[0]}", "content-type": "application/json"}
LONG = "é" * (LIMITS.max_prompt_chars + 1)  # counted in code points, as Python's len() does
ASTRAL = "😀" * (LIMITS.max_prompt_chars // 2 + 1)  # 2 UTF-16 units each: under the limit in Python
USER = {"role": "user", "content": "hi"}


def raw(data: Any) -> bytes:
    return json.dumps(data).encode()


REFUSED: list[tuple[str, str, bytes]] = [
    ("body-too-large", "/v1/completions", raw({"prompt": "a" * LIMITS.max_body_bytes})),
    ("invalid-json", "/api/generate", b'{"prompt": '),
    ("empty-body", "/api/generate", b""),
    ("not-an-object", "/v1/chat/completions", b"[1, 2]"),
    ("null-body", "/api/generate", b"null"),
    ("generate-no-prompt", "/api/generate", raw({"maxTokens": 4})),
    ("generate-empty-prompt", "/api/generate", raw({"prompt": ""})),
    ("generate-long-prompt", "/api/generate", raw({"prompt": LONG})),
    (
        "generate-max-tokens",
        "/api/generate",
        raw({"prompt": "hi", "maxTokens": LIMITS.max_tokens_cap + 1}),
    ),
    (
        "generate-max-tokens-name",
        "/api/generate",
        raw({"prompt": "hi", "max_tokens": LIMITS.max_tokens_cap + 1}),
    ),
    ("chat-no-messages", "/v1/chat/completions", raw({"model": "m"})),
    ("chat-empty-messages", "/v1/chat/completions", raw({"messages": []})),
    (
        "chat-too-many",
        "/v1/chat/completions",
        raw({"messages": [USER] * (LIMITS.max_messages + 1)}),
    ),
    (
        "chat-long-message",
        "/v1/chat/completions",
        raw({"messages": [USER, {"role": "user", "content": LONG}]}),
    ),
    (
        "chat-long-parts",
        "/v1/chat/completions",
        raw(
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": LONG[:20000]},
                            {"type": "text", "text": LONG[20000:]},
                        ],
                    }
                ]
            }
        ),
    ),
    (
        "chat-max-tokens",
        "/v1/chat/completions",
        raw({"messages": [USER], "max_tokens": LIMITS.max_tokens_cap + 1}),
    ),
    (
        "chat-max-completion-tokens",
        "/v1/chat/completions",
        raw({"messages": [USER], "max_completion_tokens": LIMITS.max_tokens_cap + 1}),
    ),
    (
        "chat-stops",
        "/v1/chat/completions",
        raw({"messages": [USER], "stop": ["a"] * (LIMITS.max_stop_sequences + 1)}),
    ),
    ("completion-no-prompt", "/v1/completions", raw({"max_tokens": 3})),
    ("completion-two-prompts", "/v1/completions", raw({"prompt": ["a", "b"]})),
    ("completion-long-prompt", "/v1/completions", raw({"prompt": [LONG]})),
    (
        "completion-max-tokens",
        "/v1/completions",
        raw({"prompt": "a", "max_tokens": LIMITS.max_tokens_cap + 1}),
    ),
    (
        "completion-stops",
        "/v1/completions",
        raw({"prompt": "a", "stop": ["x"] * (LIMITS.max_stop_sequences + 1)}),
    ),
]


@pytest.mark.parametrize(
    ("path", "body"), [(p, b) for _, p, b in REFUSED], ids=[i for i, _, _ in REFUSED]
)
def test_edge_refuses_exactly_as_the_origin_does(edge: Edge, path: str, body: bytes) -> None:
    origin = httpx.post(edge.origins.live.base_url + path, content=body, headers=AUTH, timeout=60)
    at_edge = httpx.post(edge.urls["direct"] + path, content=body, headers=AUTH, timeout=60)
    assert origin.status_code >= 400, origin.text
    assert "x-nimbus-origin" not in at_edge.headers, "the edge forwarded a request it should refuse"
    assert (at_edge.status_code, at_edge.json()) == (origin.status_code, origin.json())


def test_chunked_body_over_the_limit_is_cut_off_at_the_edge(edge: Edge) -> None:
    def chunks():  # no content-length: the edge must count while reading
        for _ in range(LIMITS.max_body_bytes // 65536 + 2):
            yield b" " * 65536

    r = httpx.post(
        edge.urls["capture"] + "/api/generate", content=chunks(), headers=AUTH, timeout=60
    )
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
    assert "x-nimbus-origin" not in r.headers


# Bodies the edge cannot judge as core would (types, ranges it does not check, non-JSON content
# types, code points beyond the BMP) go on to the origin: the edge is never stricter than core.
FORWARDED: list[tuple[str, str, bytes, str]] = [
    ("astral-prompt-fits", "/api/generate", raw({"prompt": ASTRAL}), "application/json"),
    ("prompt-wrong-type", "/api/generate", raw({"prompt": 5}), "application/json"),
    (
        "max-tokens-as-string",
        "/v1/completions",
        raw({"prompt": "a", "max_tokens": "4096"}),
        "application/json",
    ),
    (
        "temperature-out-of-range",
        "/v1/completions",
        raw({"prompt": "a", "temperature": 9}),
        "application/json",
    ),
    ("text-plain", "/api/generate", b"not json at all", "text/plain"),
    (
        "at-the-limits",
        "/v1/chat/completions",
        raw(
            {
                "messages": [USER] * LIMITS.max_messages,
                "max_tokens": LIMITS.max_tokens_cap,
                "stop": ["x"] * LIMITS.max_stop_sequences,
            }
        ),
        "application/json",
    ),
]


@pytest.mark.parametrize(
    ("path", "body", "content_type"), [f[1:] for f in FORWARDED], ids=[f[0] for f in FORWARDED]
)
def test_edge_forwards_what_it_cannot_judge(
    edge: Edge, path: str, body: bytes, content_type: str
) -> None:
    marker = f"forward-{path}-{hash(body)}"
    r = httpx.post(
        edge.urls["capture"] + path,
        content=body,
        headers={**AUTH, "content-type": content_type, "x-test-id": marker},
        timeout=60,
    )
    assert r.status_code == 200 and r.headers["x-nimbus-origin"] == "0"
    (seen,) = edge.origins.capture.requests_with("x-test-id", marker)
    assert seen.body == body
