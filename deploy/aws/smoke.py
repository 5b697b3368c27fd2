"""Smoke-test a deployed nimbus-llm URL: health, /api/generate, /v1/chat/completions (optionally
streamed). With --iam, requests are signed with SigV4 (service "lambda") from the usual AWS
credential chain, as a function URL with AuthType AWS_IAM requires.

    URL=https://<id>.lambda-url.<region>.on.aws/      # the stack output FunctionUrl
    .venv/bin/python deploy/aws/smoke.py "$URL" --iam
    NIMBUS_API_KEY=<key> .venv/bin/python deploy/aws/smoke.py "$URL" --stream

Exit status 0 when every check passes. Needs only the standard library, plus botocore for --iam.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

_REGION_IN_URL = re.compile(r"\.lambda-url\.([a-z0-9-]+)\.on\.aws$")


def region_of(url: str) -> str | None:
    match = _REGION_IN_URL.search(urlsplit(url).hostname or "")
    return match.group(1) if match else None


def sigv4_headers(
    method: str,
    url: str,
    body: bytes | None,
    headers: dict[str, str],
    region: str,
    credentials: Any = None,
) -> dict[str, str]:
    """``headers`` plus the SigV4 ones (Authorization, X-Amz-Date, X-Amz-Security-Token)."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.session import Session

    creds = credentials or Session().get_credentials()
    if creds is None:
        raise SystemExit("--iam: no AWS credentials found (env, ~/.aws, instance role ...)")
    request = AWSRequest(method=method, url=url, data=body or b"", headers=dict(headers))
    SigV4Auth(creds.get_frozen_credentials(), "lambda", region).add_auth(request)
    return dict(request.headers.items())


class Client:
    def __init__(
        self, base: str, *, iam: bool, region: str | None, api_key: str | None, timeout: float
    ) -> None:
        self.base = base.rstrip("/")
        self.iam = iam
        self.region = region or region_of(base) or "us-east-1"
        self.api_key = api_key
        self.timeout = timeout

    def request(self, method: str, path: str, payload: Any = None) -> tuple[int, bytes, float]:
        url = self.base + path
        body = json.dumps(payload).encode() if payload is not None else None
        headers = {"content-type": "application/json"} if body is not None else {}
        if self.api_key:
            # SigV4 owns the Authorization header; the API key then travels as x-api-key.
            if self.iam:
                headers["x-api-key"] = self.api_key
            else:
                headers["authorization"] = f"Bearer {self.api_key}"
        if self.iam:
            headers = sigv4_headers(method, url, body, headers, self.region)
        req = urllib.request.Request(url, data=body, headers=headers, method=method)
        started = time.perf_counter()
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                data = resp.read()
                return resp.status, data, time.perf_counter() - started
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(), time.perf_counter() - started


def run(client: Client, stream: bool) -> list[str]:
    """Run the checks; return the failures (empty = all passed)."""
    failures: list[str] = []

    def check(name: str, ok: bool, detail: str) -> None:
        print(f"{'PASS' if ok else 'FAIL'}  {name:28s} {detail}")
        if not ok:
            failures.append(name)

    status, data, took = client.request("GET", "/api/health")
    check("GET /api/health", status == 200, f"{status} in {took:.2f}s {data[:120]!r}")

    status, data, took = client.request(
        "POST", "/api/generate", {"prompt": "Say hello in five words.", "maxTokens": 16}
    )
    ok = status == 200 and bool(json.loads(data or b"{}").get("text"))
    check("POST /api/generate", ok, f"{status} in {took:.2f}s {data[:160]!r}")

    # No "model": the function's own model answers (a name it does not serve would be 404).
    chat = {
        "messages": [{"role": "user", "content": "Name three clouds."}],
        "max_tokens": 32,
        "stream": stream,
    }
    status, data, took = client.request("POST", "/v1/chat/completions", chat)
    if stream:
        events = [e for e in data.decode(errors="replace").split("\n\n") if e]
        ok = status == 200 and events[-1:] == ["data: [DONE]"]
        check("POST /v1/chat/completions", ok, f"{status} in {took:.2f}s, {len(events)} events")
    else:
        body = json.loads(data or b"{}")
        ok = status == 200 and bool(body.get("choices"))
        usage = body.get("usage")
        check("POST /v1/chat/completions", ok, f"{status} in {took:.2f}s usage={usage}")

    status, data, _ = client.request("POST", "/api/generate", {"maxTokens": 1})
    check("bad request -> 400", status == 400, f"{status} {data[:120]!r}")
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="the function URL (stack output FunctionUrl)")
    parser.add_argument("--iam", action="store_true", help="sign with SigV4 (AuthType AWS_IAM)")
    parser.add_argument("--region", help="region for signing (default: from the URL)")
    parser.add_argument(
        "--api-key",
        default=os.environ.get("NIMBUS_API_KEY"),
        help="API key ('Authorization: Bearer', or x-api-key together with --iam); "
        "default: $NIMBUS_API_KEY",
    )
    parser.add_argument("--stream", action="store_true", help="stream the chat completion")
    parser.add_argument("--timeout", type=float, default=180, help="seconds per request")
    args = parser.parse_args(argv)
    client = Client(
        args.url, iam=args.iam, region=args.region, api_key=args.api_key, timeout=args.timeout
    )
    failures = run(client, args.stream)
    print("all checks passed" if not failures else f"{len(failures)} check(s) failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
