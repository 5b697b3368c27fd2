"""deploy/aws/smoke.py: SigV4 signing for AWS_IAM function URLs, and its checks against the real
app over loopback (what it would run against a deployed URL)."""

from __future__ import annotations

import importlib.util
import urllib.request
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from botocore.credentials import Credentials

from tests.conftest import LiveServer

SMOKE = Path(__file__).resolve().parents[3] / "deploy" / "aws" / "smoke.py"


def load_smoke() -> ModuleType:
    spec = importlib.util.spec_from_file_location("nimbus_smoke", SMOKE)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


smoke = load_smoke()
URL = "https://abcdefghijklmnop.lambda-url.eu-west-1.on.aws/api/generate"


def test_region_comes_from_the_function_url() -> None:
    assert smoke.region_of(URL) == "eu-west-1"
    assert smoke.region_of("http://127.0.0.1:8000/") is None


def test_sigv4_signs_for_lambda_in_the_url_region() -> None:
    creds = Credentials("AKIDEXAMPLE", "secret", "session-token")
    body = b'{"prompt": "hi"}'
    headers = smoke.sigv4_headers(
        "POST", URL, body, {"content-type": "application/json"}, "eu-west-1", creds
    )
    auth = headers["Authorization"]
    assert auth.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "/eu-west-1/lambda/aws4_request" in auth
    signed = auth.split("SignedHeaders=")[1].split(",")[0].split(";")
    assert {"host", "x-amz-date", "x-amz-security-token", "content-type"} <= set(signed)
    assert headers["X-Amz-Security-Token"] == "session-token"
    other = smoke.sigv4_headers(
        "POST", URL, b'{"prompt": "bye"}', {"content-type": "application/json"}, "eu-west-1", creds
    )
    assert other["Authorization"] != auth  # the body is part of the signature


@pytest.mark.integration
@pytest.mark.parametrize("stream", [False, True])
def test_smoke_checks_pass_against_the_real_app(
    real_server: LiveServer,
    stream: bool,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    sent: list[dict[str, str]] = []
    real_urlopen = urllib.request.urlopen

    def recording_urlopen(req: Any, *args: Any, **kwargs: Any) -> Any:
        sent.append(dict(req.header_items()))
        return real_urlopen(req, *args, **kwargs)

    monkeypatch.setattr(urllib.request, "urlopen", recording_urlopen)
    argv = [real_server.base_url, "--iam", "--region", "us-east-1"]
    assert smoke.main([*argv, "--stream"] if stream else argv) == 0
    out = capsys.readouterr().out
    assert "all checks passed" in out and "FAIL" not in out
    assert len(sent) == 4
    assert all("/us-east-1/lambda/aws4_request" in h["Authorization"] for h in sent)
