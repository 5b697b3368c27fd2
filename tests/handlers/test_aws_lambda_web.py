"""The streaming image's entry point: uvicorn serving handlers.aws_lambda:web_app, called the way
the Lambda Web Adapter calls it (x-amzn-request-context / x-amzn-lambda-context headers)."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import free_port
from tests.support.eventually import eventually
from tests.support.lambda_runtime import ROOT, lambda_env
from tests.support.metrics import Scrape, delta, emf_units, emf_values

pytestmark = [pytest.mark.integration, pytest.mark.slow]


class WebAdapterTarget:
    def __init__(self, base_url: str, log_path: Path) -> None:
        self.base_url = base_url
        self.log_path = log_path

    def json_lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    out.append(json.loads(line))
        return out


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebAdapterTarget]:
    tmp = tmp_path_factory.mktemp("lwa")
    port = free_port()
    log_path = tmp / "uvicorn.log"
    with log_path.open("wb") as log:
        # The Dockerfile's streaming ENTRYPOINT, on a free port.
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "handlers.aws_lambda:web_app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-access-log",
            ],
            cwd=ROOT,
            # /metrics on too: the same app serves it in this test (scraping a function is unusual, but
            # it shows the Prometheus and EMF numbers agree).
            env=lambda_env(
                tmp, AWS_LWA_INVOKE_MODE="response_stream", NIMBUS_METRICS__ENABLED="true"
            ),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while True:  # what the adapter's readiness check does
                try:
                    if httpx.get(f"{base}/api/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert proc.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, "uvicorn did not become ready"
                time.sleep(0.2)
            yield WebAdapterTarget(base, log_path)
        finally:
            proc.terminate()
            proc.wait(timeout=15)


def lwa_headers(request_id: str, remaining_ms: int) -> dict[str, str]:
    request_context = {
        "accountId": "anonymous",
        "apiId": "abcdefghijklmnopqrstuvwxyz123456",
        "domainName": "abcdefghijklmnopqrstuvwxyz123456.lambda-url.us-east-1.on.aws",
        "http": {"method": "POST", "path": "/", "protocol": "HTTP/1.1", "sourceIp": "203.0.113.7"},
        "requestId": request_id,
        "routeKey": "$default",
        "stage": "$default",
        "timeEpoch": int(time.time() * 1000),
    }
    lambda_context = {
        "request_id": "5f3c-invocation",
        "deadline": int(time.time() * 1000) + remaining_ms,
        "invoked_function_arn": "arn:aws:lambda:us-east-1:123456789012:function:nimbus",
        "xray_trace_id": None,
        "env_config": {"function_name": "nimbus", "memory": 3008, "version": "$LATEST"},
    }
    return {
        "x-amzn-request-context": json.dumps(request_context),
        "x-amzn-lambda-context": json.dumps(lambda_context),
    }


def test_streams_tokens_as_they_are_generated(web: WebAdapterTarget) -> None:
    body = {
        "messages": [{"role": "user", "content": "Count to ten."}],
        "max_tokens": 24,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    events = []
    with httpx.stream(
        "POST",
        f"{web.base_url}/v1/chat/completions",
        json=body,
        headers=lwa_headers("lwa-stream-1", 120_000),
        timeout=120,
    ) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        for line in resp.iter_lines():
            if line:
                events.append(line)
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-1]]
    assert len(chunks) >= 4  # role, several deltas, finish, usage: not one buffered blob
    assert chunks[-1]["usage"]["completion_tokens"] >= 1


def test_deadline_from_the_adapter_header(web: WebAdapterTarget) -> None:
    resp = httpx.post(
        f"{web.base_url}/v1/completions",
        json={"prompt": "1, 2, 3, 4, 5,", "max_tokens": 400, "temperature": 0},
        headers=lwa_headers("lwa-deadline-1", 2000),  # = the 2 s margin: stop at once
        timeout=120,
    )
    body = resp.json()
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 0
    # Without the header (not behind the adapter) there is no deadline.
    resp = httpx.post(
        f"{web.base_url}/v1/completions",
        json={"prompt": "1, 2, 3, 4, 5,", "max_tokens": 12, "temperature": 0},
        timeout=120,
    )
    assert resp.json()["usage"]["completion_tokens"] == 12


def test_request_logs_and_metrics_per_request(web: WebAdapterTarget) -> None:
    resp = httpx.post(
        f"{web.base_url}/api/generate",
        json={"prompt": "Hello", "maxTokens": 5},
        headers=lwa_headers("lwa-log-1", 120_000),
        timeout=120,
    )
    assert resp.status_code == 200

    def is_the_request(r: dict[str, Any]) -> bool:
        return r.get("message") == "request" and r.get("correlation_id") == "lwa-log-1"

    lines = eventually(web.json_lines, lambda lines: any(map(is_the_request, lines)))
    request = next(r for r in lines if is_the_request(r))
    assert request["status"] == 200 and request["path"] == "/api/generate"
    assert request["request_id"] == "lwa-log-1" == resp.headers["x-request-id"]
    assert request["completion_tokens"] == resp.json()["tokens"]
    emf = [r for r in lines if "_aws" in r]
    assert any("CompletionTokens" in r and "RequestDuration" in r for r in emf)
    assert sum(1 for r in emf if "ColdStart" in r) == 1
    assert len(emf_values(emf, "ModelLoad")) == 1
    assert len([r for r in lines if r.get("message") == "model loaded"]) == 1


def test_metrics_scraped_and_emf_agree(web: WebAdapterTarget) -> None:
    before = Scrape(httpx.get(f"{web.base_url}/metrics", timeout=60).text)
    resp = httpx.post(
        f"{web.base_url}/v1/completions",
        json={"prompt": "1, 2, 3,", "max_tokens": 7, "temperature": 0},
        headers=lwa_headers("lwa-metrics-1", 120_000),
        timeout=120,
    )
    usage = resp.json()["usage"]
    after = eventually(
        lambda: Scrape(httpx.get(f"{web.base_url}/metrics", timeout=60).text),
        lambda after: delta(before, after, "nimbus_requests_total", route="/v1/completions") > 0,
    )
    assert delta(before, after, "nimbus_completion_tokens_total") == usage["completion_tokens"]
    assert delta(before, after, "nimbus_prompt_tokens_total") == usage["prompt_tokens"]
    assert delta(before, after, "nimbus_requests_total", route="/v1/completions", status="200") == 1
    assert delta(before, after, "nimbus_time_to_first_token_seconds_count") == 1

    # The invocation's EMF document (flushed when it ended) has the same numbers.
    def this_request(r: dict[str, Any]) -> bool:
        return (
            "_aws" in r
            and emf_values([r], "CompletionTokens") == [usage["completion_tokens"]]
            and emf_values([r], "PromptTokens") == [usage["prompt_tokens"]]
        )

    lines = eventually(web.json_lines, lambda lines: any(map(this_request, lines)))
    docs = [r for r in lines if this_request(r)]
    assert docs, "no EMF document with this request's token counts"
    doc = docs[-1]
    assert emf_units([doc])["TimeToFirstToken"] == "Seconds"
    ttft_sum = delta(before, after, "nimbus_time_to_first_token_seconds_sum")
    assert emf_values([doc], "TimeToFirstToken") == [pytest.approx(ttft_sum)]
