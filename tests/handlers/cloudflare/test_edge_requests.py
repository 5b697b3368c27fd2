"""The edge's own model checks request bodies as core does: the same status, type, code, param and
message for each bad body, taken from core's app itself (fake engine, no model), and core's
defaults for what a good body leaves out. Runs the worker's module in Node, no workerd."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import httpx
import pytest

from core.app import create_app
from core.settings import LimitSettings, Settings
from tests.handlers.cloudflare.conftest import WORKER_DIR
from tests.support.fakes import FakeEngine

LIMITS = LimitSettings.model_validate({})
EDGE_CAP = 48
USER = {"role": "user", "content": "hi"}


def parse_at_edge(cases: list[tuple[str, Any]]) -> list[dict[str, Any]]:
    code = f"""
import {{ parseRequest }} from "{(WORKER_DIR / "model" / "requests.js").as_uri()}";
import {{ EdgeError, errorBody }} from "{(WORKER_DIR / "errors.js").as_uri()}";
const cases = JSON.parse(await new Response(process.stdin).text());
const out = cases.map(([path, body]) => {{
  try {{
    return {{ ok: parseRequest(path, body, {EDGE_CAP}) }};
  }} catch (error) {{
    if (!(error instanceof EdgeError)) throw error;
    return {{ status: error.status, body: errorBody(error) }};
  }}
}});
console.log(JSON.stringify(out));
"""
    proc = subprocess.run(
        ["node", "--input-type=module", "-e", code],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    results: list[dict[str, Any]] = json.loads(proc.stdout)
    return results


async def at_origin(cases: list[tuple[str, Any]]) -> list[tuple[int, Any]]:
    app = create_app(Settings(), FakeEngine())  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://origin") as client:
        answers = []
        for path, body in cases:
            r = await client.post(path, json=body)
            answers.append((r.status_code, r.json()))
        return answers


def chat(**fields: Any) -> tuple[str, Any]:
    return ("/v1/chat/completions", {"messages": [USER], **fields})


BAD: list[tuple[str, Any]] = [
    chat(temperature=9),
    chat(temperature="hot"),
    chat(top_p=0),
    chat(top_k=1001),
    chat(top_k=2.5),
    chat(min_p=-1),
    chat(repeat_penalty=11),
    chat(presence_penalty=-3),
    chat(frequency_penalty=2.5),
    chat(seed=-1),
    chat(n=2),
    chat(max_tokens=0),
    chat(max_tokens="many"),
    chat(max_tokens=4.5),
    chat(max_completion_tokens=0),
    chat(stream="maybe"),
    chat(stream=[]),
    chat(stream_options="yes"),
    chat(stream_options={"include_usage": "perhaps"}),
    chat(stop=5),
    chat(stop=["a", 5]),
    chat(model=5),
    chat(user=7),
    chat(response_format={"type": "xml"}),
    chat(response_format="json"),
    ("/v1/chat/completions", {"messages": "hi"}),
    ("/v1/chat/completions", {"messages": ["hi"]}),
    ("/v1/chat/completions", {"messages": [{"content": "hi"}]}),
    ("/v1/chat/completions", {"messages": [{"role": "wizard", "content": "hi"}]}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": 5}]}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": [{"type": "image"}]}]}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x", "name": 1}]}),
    ("/v1/completions", {"prompt": 5}),
    ("/v1/completions", {"prompt": ["a", 5]}),
    ("/v1/completions", {"prompt": "a", "echo": "loud"}),
    ("/v1/completions", {"prompt": "a", "max_tokens": 0}),
    ("/api/generate", {"prompt": 5}),
    ("/api/generate", {"prompt": "a", "maxTokens": 0}),
    ("/api/generate", {"prompt": "a", "maxTokens": None}),
    ("/api/generate", {"prompt": "a", "temperature": 2.5}),
    ("/api/generate", {"prompt": "a", "raw": "unsure"}),
    ("/api/generate", {"prompt": "a", "stream": 2}),
]


async def test_bad_bodies_are_refused_exactly_as_core_refuses_them() -> None:
    edge = parse_at_edge(BAD)
    origin = await at_origin(BAD)
    for case, answer, (status, body) in zip(BAD, edge, origin, strict=True):
        assert status == 400, (case, body)
        assert (answer.get("status"), answer.get("body")) == (status, body), case


GOOD: list[tuple[str, Any]] = [
    chat(),
    chat(max_tokens="12", temperature="0.5", stream="yes", top_k=3.0, seed=7),
    chat(max_completion_tokens=5, max_tokens=40, stop="END"),
    chat(stop=[], stream_options={"include_usage": True}),
    (
        "/v1/chat/completions",
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
                }
            ]
        },
    ),
    ("/v1/completions", {"prompt": "a"}),
    ("/v1/completions", {"prompt": ["a"], "max_tokens": None, "echo": True}),
    ("/api/generate", {"prompt": "a"}),
    ("/api/generate", {"prompt": "a", "max_tokens": 3, "maxTokens": 5, "raw": True}),
]


def test_good_bodies_get_cores_defaults_and_the_edge_cap() -> None:
    chat_default, coerced, completion_tokens, usage, parts, *rest = parse_at_edge(GOOD)
    body = chat_default["ok"]["body"]
    # Core's sampling defaults, sent explicitly; the default max_tokens lowered to the edge cap.
    assert body["messages"] == [USER]
    assert (body["temperature"], body["top_p"], body["top_k"], body["min_p"]) == (
        1.0,
        1.0,
        40,
        0.05,
    )
    assert (body["repeat_penalty"], body["presence_penalty"], body["frequency_penalty"]) == (
        1,
        0,
        0,
    )
    assert body["max_tokens"] == min(LIMITS.max_tokens_default, EDGE_CAP)
    assert "seed" not in body and body["stop"] == []
    assert chat_default["ok"]["stream"] is False and chat_default["ok"]["isChat"] is True
    # pydantic's lax coercions: numeric strings, "yes", integral floats.
    assert coerced["ok"]["body"]["max_tokens"] == 12 and coerced["ok"]["body"]["temperature"] == 0.5
    assert coerced["ok"]["stream"] is True and coerced["ok"]["body"]["top_k"] == 3
    assert coerced["ok"]["body"]["seed"] == 7
    assert completion_tokens["ok"]["body"]["max_tokens"] == 5
    assert completion_tokens["ok"]["body"]["stop"] == ["END"]
    assert usage["ok"]["includeUsage"] is True
    assert parts["ok"]["body"]["messages"] == [{"role": "user", "content": "ab"}]
    completion, completion_null, generate, generate_raw = rest
    assert completion["ok"]["body"] == {**completion["ok"]["body"], "prompt": "a", "max_tokens": 16}
    assert completion["ok"]["isChat"] is False
    # An explicit null asks for the server default (256), lowered to the edge cap.
    assert completion_null["ok"]["body"]["max_tokens"] == EDGE_CAP
    assert completion_null["ok"]["echo"] == "a"
    assert generate["ok"]["body"]["messages"] == [{"role": "user", "content": "a"}]
    assert generate["ok"]["body"]["temperature"] == 0.7
    # The alias wins over the field name, as in pydantic; raw sends the prompt as is.
    assert generate_raw["ok"]["body"]["max_tokens"] == 5
    assert generate_raw["ok"]["body"]["prompt"] == "a" and generate_raw["ok"]["isChat"] is False


@pytest.mark.parametrize(
    ("case", "param"),
    [
        (chat(max_tokens=EDGE_CAP + 1), "max_tokens"),
        (chat(max_completion_tokens=EDGE_CAP + 1), "max_completion_tokens"),
        (("/v1/completions", {"prompt": "a", "max_tokens": EDGE_CAP + 1}), "max_tokens"),
        (("/api/generate", {"prompt": "a", "maxTokens": EDGE_CAP + 1}), "maxTokens"),
    ],
)
def test_more_tokens_than_the_edge_cap_are_refused_naming_the_parameter(
    case: tuple[str, Any], param: str
) -> None:
    (answer,) = parse_at_edge([case])
    assert answer["status"] == 400
    assert answer["body"]["error"] == {
        "message": f"{param} must be at most {EDGE_CAP} when the edge's model answers",
        "type": "invalid_request_error",
        "code": "invalid_parameter",
        "param": param,
    }


def test_core_limits_still_come_first() -> None:
    (answer,) = parse_at_edge([chat(max_tokens=LIMITS.max_tokens_cap + 1)])
    assert (
        answer["body"]["error"]["message"] == f"max_tokens must be at most {LIMITS.max_tokens_cap}"
    )
    (stops,) = parse_at_edge([chat(stop=["a"] * (LIMITS.max_stop_sequences + 1))])
    assert stops["body"]["error"]["param"] == "stop"
