"""The Lambda handler run by the real runtime interface client (awslambdaric) against a Runtime API
on loopback, fed function URL / HTTP API v2 / REST v1 events, on the real bundled model."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import lambda_events as ev
from tests.support.lambda_runtime import Invocation, LambdaProcess, lambda_function
from tests.support.metrics import emf_units, emf_values

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SECRET_PROMPT = "zebra-violet-4417"  # a marker that must never reach the logs by default


@pytest.fixture(scope="module")
def fn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LambdaProcess]:
    with lambda_function(tmp_path_factory.mktemp("lambda")) as process:
        yield process


def body_of(inv: Invocation) -> Any:
    assert inv.error is None, inv.error
    raw = inv.response["body"]
    if inv.response.get("isBase64Encoded"):
        raw = base64.b64decode(raw).decode()
    return json.loads(raw) if raw and raw.lstrip().startswith("{") else raw


def emf_for(fn: LambdaProcess, metric: str) -> list[dict[str, Any]]:
    return [doc for doc in fn.metrics() if metric in doc]


def test_cold_start_then_warm_invocations_reuse_the_model(fn: LambdaProcess) -> None:
    first = fn.api.invoke(ev.function_url("GET", "/api/health"))
    assert first.response["statusCode"] == 200, first.response
    assert body_of(first)["status"] == "ready"
    for _ in range(3):
        warm = fn.api.invoke(ev.function_url("GET", "/v1/models"))
        assert warm.response["statusCode"] == 200
        assert body_of(warm)["data"][0]["id"] == "smollm2-135m-instruct"
    # One process, one model load, one init, however many invocations.
    assert fn.proc.poll() is None
    assert len(fn.logs("model loaded")) == 1
    assert len(fn.logs("init done")) == 1
    # Powertools' ColdStart metric is emitted by the first invocation only, and so is the
    # model's load time (measured at init, sent with the first invocation's metrics).
    assert [doc["ColdStart"] for doc in emf_for(fn, "ColdStart")] == [[1.0]]
    (load,) = emf_values(fn.metrics(), "ModelLoad")
    assert 0 < load < 120
    requests = fn.logs("request")
    assert [r["cold_start"] for r in requests[:4]] == [True, False, False, False]


def test_generate_through_a_function_url(fn: LambdaProcess) -> None:
    inv = fn.api.invoke(
        ev.function_url(
            "POST", "/api/generate", {"prompt": "Say hello.", "maxTokens": 8, "temperature": 0}
        )
    )
    assert inv.response["statusCode"] == 200
    assert inv.response["headers"]["content-type"] == "application/json"
    body = body_of(inv)
    assert body["text"] and 1 <= body["tokens"] <= 8 and body["latencyMs"] > 0


def test_chat_completions_through_http_api_v2(fn: LambdaProcess) -> None:
    inv = fn.api.invoke(
        ev.http_api_v2(
            "POST",
            "/v1/chat/completions",
            {
                "model": "smollm2-135m-instruct",
                "messages": [{"role": "user", "content": "Name a colour."}],
                "max_tokens": 12,
                "temperature": 0,
            },
        )
    )
    assert inv.response["statusCode"] == 200
    body = body_of(inv)
    assert body["object"] == "chat.completion"
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant" and choice["message"]["content"]
    assert choice["finish_reason"] in {"stop", "length"}
    assert body["usage"]["completion_tokens"] <= 12
    assert body["usage"]["total_tokens"] == (
        body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]
    )


def test_rest_v1_generate_and_health(fn: LambdaProcess) -> None:
    health = fn.api.invoke(ev.rest_v1("GET", "/api/health"))
    assert health.response["statusCode"] == 200
    assert body_of(health)["model"] == "smollm2-135m-instruct"
    inv = fn.api.invoke(ev.rest_v1("POST", "/api/generate", {"prompt": "Hi", "maxTokens": 4}))
    assert inv.response["statusCode"] == 200
    assert 1 <= body_of(inv)["tokens"] <= 4


def test_non_streaming_generation_is_not_cancelled_by_the_adapter(fn: LambdaProcess) -> None:
    # complete() watches request.receive() for a client disconnect. Mangum only sends
    # http.disconnect after the response is complete, so generation must run to max_tokens.
    inv = fn.api.invoke(
        ev.function_url(
            "POST",
            "/v1/completions",
            {"prompt": "1, 2, 3, 4, 5, 6, 7,", "max_tokens": 24, "temperature": 0},
        )
    )
    body = body_of(inv)
    assert body["usage"]["completion_tokens"] == 24
    assert body["choices"][0]["finish_reason"] == "length"


@pytest.mark.parametrize("make", [ev.function_url, ev.http_api_v2, ev.rest_v1])
def test_base64_encoded_bodies_are_decoded(fn: LambdaProcess, make: Any) -> None:
    inv = fn.api.invoke(
        make("POST", "/api/generate", {"prompt": "Hello", "maxTokens": 3}, b64=True)
    )
    assert inv.response["statusCode"] == 200, inv.response
    assert 1 <= body_of(inv)["tokens"] <= 3


@pytest.mark.parametrize(
    ("event", "status", "code"),
    [
        (ev.function_url("POST", "/api/generate", {"maxTokens": 3}), 400, "invalid_request"),
        (ev.function_url("POST", "/api/generate", "{not json"), 422, "invalid_json"),
        (
            ev.http_api_v2(
                "POST",
                "/v1/chat/completions",
                {"messages": [{"role": "user", "content": "x"}], "max_tokens": 10**6},
            ),
            400,
            "invalid_parameter",
        ),
        (ev.rest_v1("GET", "/nope"), 404, "not_found"),
    ],
)
def test_bad_requests_get_openai_shaped_errors(
    fn: LambdaProcess, event: dict[str, Any], status: int, code: str
) -> None:
    inv = fn.api.invoke(event)
    assert inv.response["statusCode"] == status, inv.response
    error = body_of(inv)["error"]
    assert error["code"] == code and error["message"] and error["type"]
    assert fn.proc.poll() is None  # the function keeps serving


def test_streaming_request_is_buffered_into_one_sse_body(fn: LambdaProcess) -> None:
    inv = fn.api.invoke(
        ev.function_url(
            "POST",
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5, "stream": True},
        )
    )
    assert inv.response["statusCode"] == 200
    assert inv.response["headers"]["content-type"].startswith("text/event-stream")
    events = [line for line in body_of(inv).split("\n\n") if line]
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-1]]
    assert chunks[-1]["choices"][0]["finish_reason"] in {"stop", "length"}


def test_generation_stops_before_the_invocation_deadline(fn: LambdaProcess) -> None:
    # 2 s left with the default 2 s margin: the deadline is now, so the engine ends the request
    # before its first token with finish_reason "length" instead of generating 400 tokens.
    inv = fn.api.invoke(
        ev.function_url(
            "POST",
            "/v1/completions",
            {"prompt": "1, 2, 3, 4, 5,", "max_tokens": 400, "temperature": 0},
        ),
        remaining_ms=2000,
    )
    body = body_of(inv)
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 0


def test_generation_with_some_time_left_ends_early_and_still_answers(
    fn: LambdaProcess,
) -> None:
    # 3 s of generation after the 2 s margin; 2000 tokens take far longer on any CPU here.
    # (No wall-clock assertion: this shared box's speed varies too much; the past-deadline test
    # above pins the mechanism down exactly.)
    inv = fn.api.invoke(
        ev.function_url(
            "POST",
            "/v1/completions",
            {"prompt": "1, 2, 3, 4, 5,", "max_tokens": 2000, "temperature": 0},
        ),
        remaining_ms=5000,
    )
    body = body_of(inv)
    assert body["choices"][0]["finish_reason"] == "length"
    assert 1 <= body["usage"]["completion_tokens"] < 2000
    assert inv.error is None and fn.proc.poll() is None


def test_logs_are_json_with_request_id_and_no_prompt_text(fn: LambdaProcess) -> None:
    inv = fn.api.invoke(
        ev.function_url(
            "POST",
            "/api/generate",
            {"prompt": f"Repeat: {SECRET_PROMPT}", "maxTokens": 4},
            request_id="req-correlation-1",
        )
    )
    assert inv.response["statusCode"] == 200
    assert inv.response["headers"]["x-request-id"] == "req-correlation-1"
    line = next(r for r in fn.logs("request") if r.get("correlation_id") == "req-correlation-1")
    assert line["function_request_id"] == inv.request_id
    # The same fields as every platform's request log line, the correlation id as its id.
    assert line["request_id"] == "req-correlation-1" and line["route"] == "/api/generate"
    assert line["method"] == "POST" and line["path"] == "/api/generate"
    assert line["status"] == 200 and line["completion_tokens"] == body_of(inv)["tokens"]
    assert line["prompt_tokens"] > 0 and line["duration_ms"] > 0 and line["ttft_ms"] > 0
    assert line["model"] == "smollm2-135m-instruct" and line["finish_reason"] == "length"
    assert SECRET_PROMPT not in fn.output()
    assert "request_body" not in line and "completion_text" not in line


def test_emf_metrics_per_generation(fn: LambdaProcess) -> None:
    inv = fn.api.invoke(
        ev.function_url(
            "POST",
            "/v1/completions",
            {"prompt": "1, 2, 3,", "max_tokens": 6, "temperature": 0},
        )
    )
    usage = body_of(inv)["usage"]
    doc = emf_for(fn, "CompletionTokens")[-1]  # one document per invocation
    # The names and units of core.metrics.catalog, the same as /metrics serves.
    assert emf_units([doc]) == {
        "Requests": "Count",
        "RequestDuration": "Seconds",
        "PromptTokens": "Count",
        "CompletionTokens": "Count",
        "TimeToFirstToken": "Seconds",
        "InterTokenLatency": "Seconds",
        "QueueWait": "Seconds",
        "TokensPerSecond": "Count/Second",
    }
    assert doc["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "nimbus"
    value = {name: emf_values([doc], name) for name in emf_units([doc])}
    assert value["CompletionTokens"] == [usage["completion_tokens"]] == [6]
    assert value["PromptTokens"] == [usage["prompt_tokens"]] and value["Requests"] == [1]
    (duration,) = value["RequestDuration"]
    assert 0 < value["TimeToFirstToken"][0] < duration < 60
    assert 0 < value["InterTokenLatency"][0] < duration and value["QueueWait"][0] >= 0
    # Requests without a generation still report theirs.
    fn.api.invoke(ev.function_url("GET", "/api/health"))
    last = fn.metrics()[-1]
    assert "RequestDuration" in last and "CompletionTokens" not in last
    # A refusal: its own document, the reason as a dimension.
    big = ev.function_url("POST", "/api/generate", {"prompt": "x" * 1_100_000})
    assert fn.api.invoke(big).response["statusCode"] == 413
    refusal = emf_for(fn, "Refusals")[-1]
    assert refusal["reason"] == "too_large" and refusal["Refusals"] == [1.0]


def test_prompt_logging_when_enabled(tmp_path: Path) -> None:
    with lambda_function(tmp_path, NIMBUS_AWS_LAMBDA__LOG_PROMPTS="true") as fn:
        inv = fn.api.invoke(
            ev.function_url("POST", "/api/generate", {"prompt": SECRET_PROMPT, "maxTokens": 3})
        )
        assert inv.response["statusCode"] == 200
        line = fn.logs("request")[-1]
        assert SECRET_PROMPT in line["request_body"]
        assert line["completion_text"] == body_of(inv)["text"]


def test_a_model_that_cannot_load_is_an_init_error(tmp_path: Path) -> None:
    missing = tmp_path / "absent.gguf"
    with lambda_function(tmp_path, NIMBUS_MODEL=str(missing)) as fn:
        fn.proc.wait(timeout=120)
        assert fn.proc.returncode != 0
        assert len(fn.api.init_errors) == 1
        error_type, error = fn.api.init_errors[0]
        assert "ModelLoadError" in (error_type or "") + error["errorType"]
        assert str(missing) in error["errorMessage"]


def test_model_from_s3_is_downloaded_to_tmp_once_at_cold_start(tmp_path: Path) -> None:
    import boto3
    from moto.server import ThreadedMotoServer

    from core.sources.resolve import bundled_model_path

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        s3.create_bucket(Bucket="nimbus-models")
        s3.upload_file(str(bundled_model_path()), "nimbus-models", "smollm2/model.gguf")
        cache = tmp_path / "models"
        with lambda_function(
            tmp_path,
            NIMBUS_MODEL="s3://nimbus-models/smollm2/model.gguf",
            NIMBUS_SOURCE__CACHE_DIR=str(cache),
            AWS_ENDPOINT_URL_S3=endpoint,
        ) as fn:
            for _ in range(2):
                inv = fn.api.invoke(
                    ev.function_url("POST", "/api/generate", {"prompt": "Hi", "maxTokens": 3})
                )
                assert inv.response["statusCode"] == 200, inv.response
            loaded = fn.logs("model loaded")
            assert len(loaded) == 1
            assert loaded[0]["model_source"] == "s3://nimbus-models/smollm2/model.gguf"
            assert Path(loaded[0]["model_path"]).parent == cache
            assert loaded[0]["model"] == "model"  # from the key, not the cache file name
        files = list(cache.iterdir())
        assert len(files) == 1 and files[0].stat().st_size == bundled_model_path().stat().st_size
    finally:
        server.stop()


def test_tracing_sends_xray_segments_when_enabled(tmp_path: Path) -> None:
    import socket

    daemon = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    daemon.bind(("127.0.0.1", 0))
    daemon.settimeout(60)
    port = daemon.getsockname()[1]
    try:
        with lambda_function(
            tmp_path,
            NIMBUS_AWS_LAMBDA__TRACING="true",
            AWS_XRAY_DAEMON_ADDRESS=f"127.0.0.1:{port}",
        ) as fn:
            inv = fn.api.invoke(
                ev.function_url("POST", "/api/generate", {"prompt": "Hi", "maxTokens": 2})
            )
            assert inv.response["statusCode"] == 200
            packet = daemon.recv(65536).decode()
        header, _, document = packet.partition("\n")
        assert json.loads(header)["format"] == "json"
        segment = json.loads(document)
        assert segment["trace_id"] == "1-5bef4de7-ad49b0e87f6ef6c87fc2e700"  # from the invoke
        assert segment["name"] == "## _handle"
        assert segment["annotations"]["ColdStart"] is True
    finally:
        daemon.close()
