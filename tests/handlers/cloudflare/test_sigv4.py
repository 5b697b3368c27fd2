"""SigV4 (WebCrypto, handlers/cloudflare/sigv4.js) against AWS's published test vector and against
botocore, directly and as sent by the worker in workerd."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
from typing import Any
from unittest import mock

import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.handlers.cloudflare.conftest import AWS, EDGE_KEYS, ORIGIN_KEY, WORKER_DIR, Edge

RUNNER = """
import { sign, lambdaUrlRegion } from "SIGV4_URL";
const cases = JSON.parse(process.argv[1]);
const out = [];
for (const c of cases) {
  const body = c.body === null ? null : new TextEncoder().encode(c.body);
  out.push(await sign({ ...c, headers: new Headers(c.headers), body, date: new Date(c.date) }));
}
out.push(["abc.lambda-url.eu-west-1.on.aws", "example.com"].map(lambdaUrlRegion));
console.log(JSON.stringify(out));
""".replace("SIGV4_URL", (WORKER_DIR / "sigv4.js").as_uri())


def sign_in_js(cases: list[dict[str, Any]]) -> list[Any]:
    proc = subprocess.run(
        ["node", "--input-type=module", "-e", RUNNER, json.dumps(cases)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    result: list[Any] = json.loads(proc.stdout)
    return result


def sign_with_botocore(
    method: str,
    url: str,
    headers: dict[str, str],
    body: bytes,
    stamp: str,
    region: str,
    service: str,
    token: str | None,
) -> str:
    request = AWSRequest(method=method, url=url, data=body, headers=headers)
    when = dt.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ")
    credentials = Credentials(AWS["AWS_ACCESS_KEY_ID"], AWS["AWS_SECRET_ACCESS_KEY"], token)
    with mock.patch("botocore.auth.get_current_datetime", return_value=when):
        SigV4Auth(credentials, service, region).add_auth(request)
    return str(request.headers["Authorization"])


def test_aws_published_vector_get_vanilla() -> None:
    # aws-sig-v4-test-suite/get-vanilla: GET / on example.amazonaws.com, 20150830T123600Z.
    (signed, _) = sign_in_js(
        [
            {
                "method": "GET",
                "url": "https://example.amazonaws.com/",
                "headers": {},
                "body": None,
                "date": "2015-08-30T12:36:00Z",
                "region": "us-east-1",
                "service": "service",
                "accessKeyId": AWS["AWS_ACCESS_KEY_ID"],
                "secretAccessKey": AWS["AWS_SECRET_ACCESS_KEY"],
            }
        ]
    )
    assert signed["authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
        "SignedHeaders=host;x-amz-date, "
        "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
    )
    assert signed["x-amz-date"] == "20150830T123600Z"


CASES = [
    (
        "POST",
        "https://abcdef.lambda-url.eu-west-1.on.aws/v1/chat/completions",
        '{"messages": []}',
        "token-1",
    ),
    ("GET", "https://abcdef.lambda-url.us-east-2.on.aws/api/health", None, None),
    ("POST", "http://127.0.0.1:9000/api/generate?b=2&a=1", '{"prompt": "é 😀"}', None),
    ("POST", "https://abcdef.lambda-url.eu-west-1.on.aws/v1/a%20b/c:d", "", "token-2"),
]


@pytest.mark.parametrize(("method", "url", "body", "token"), CASES)
def test_signature_matches_botocore(
    method: str, url: str, body: str | None, token: str | None
) -> None:
    region = re.search(r"lambda-url\.([a-z0-9-]+)\.", url)
    region_name = region.group(1) if region else "eu-west-1"
    headers = {"content-type": "application/json"} if body is not None else {}
    (signed, regions) = sign_in_js(
        [
            {
                "method": method,
                "url": url,
                "headers": headers,
                "body": body,
                "date": "2026-03-04T05:06:07Z",
                "region": region_name,
                "service": "lambda",
                "accessKeyId": AWS["AWS_ACCESS_KEY_ID"],
                "secretAccessKey": AWS["AWS_SECRET_ACCESS_KEY"],
                "sessionToken": token,
            }
        ]
    )
    expected = sign_with_botocore(
        method,
        url,
        headers,
        (body or "").encode(),
        "20260304T050607Z",
        region_name,
        "lambda",
        token,
    )
    assert signed["authorization"] == expected
    assert signed.get("x-amz-security-token") == token
    assert regions == ["eu-west-1", None]


@pytest.mark.integration
def test_worker_signs_origin_requests_in_workerd(edge: Edge) -> None:
    """The capture origin checks what workerd actually sent, with botocore as the verifier."""
    r = httpx.post(
        edge.urls["capture"] + "/v1/chat/completions?x=1",
        json={"messages": [{"role": "user", "content": "sign me"}]},
        headers={"authorization": f"Bearer {EDGE_KEYS[0]}", "x-test-id": "sigv4"},
        timeout=30,
    )
    assert r.status_code == 200
    (seen,) = edge.origins.capture.requests_with("x-test-id", "sigv4")
    auth = seen.headers["authorization"]
    match = re.fullmatch(
        r"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/(\d{8})/eu-west-1/lambda/aws4_request, "
        r"SignedHeaders=([a-z0-9;-]+), Signature=[0-9a-f]{64}",
        auth,
    )
    assert match, auth
    signed_headers = match.group(2).split(";")
    assert {"host", "x-amz-date", "x-amz-security-token", "content-type"} <= set(signed_headers)
    assert seen.headers["x-amz-security-token"] == AWS["AWS_SESSION_TOKEN"]
    assert (
        seen.headers["x-api-key"] == ORIGIN_KEY
    )  # the origin's own key rides beside the signature
    expected = sign_with_botocore(
        seen.method,
        f"http://{seen.headers['host']}{seen.path}",
        {name: seen.headers[name] for name in signed_headers},
        seen.body,
        seen.headers["x-amz-date"],
        AWS["AWS_REGION"],
        "lambda",
        AWS["AWS_SESSION_TOKEN"],
    )
    assert auth == expected


@pytest.mark.integration
def test_signing_without_credentials_fails_closed(edge: Edge) -> None:
    r = httpx.post(
        edge.urls["sigv4-without-credentials"] + "/api/generate",
        json={"prompt": "hi"},
        headers={"authorization": f"Bearer {EDGE_KEYS[0]}", "x-test-id": "unsigned"},
        timeout=30,
    )
    assert r.status_code == 500 and r.json()["error"]["code"] == "edge_misconfigured"
    assert not edge.origins.capture.requests_with("x-test-id", "unsigned"), "sent unsigned"
