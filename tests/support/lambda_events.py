"""Lambda HTTP events in the shapes AWS documents them:

- function URL: payload format 2.0 (docs.aws.amazon.com/lambda/latest/dg/urls-invocation.html)
- API Gateway HTTP API, payload format 2.0 (apigateway/latest/developerguide/
  http-api-develop-integrations-lambda.html)
- API Gateway REST API proxy integration, format 1.0 (set-up-lambda-proxy-integrations.html)
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

ACCOUNT = "123456789012"


def _body(body: Any, b64: bool) -> tuple[str | None, bool]:
    if body is None:
        return None, False
    raw = body if isinstance(body, (bytes, str)) else json.dumps(body)
    data = raw.encode() if isinstance(raw, str) else raw
    if b64:
        return base64.b64encode(data).decode(), True
    return data.decode(), False


def function_url(
    method: str,
    path: str,
    body: Any = None,
    *,
    headers: dict[str, str] | None = None,
    b64: bool = False,
    query: str = "",
    request_id: str | None = None,
) -> dict[str, Any]:
    url_id = "abcdefghijklmnopqrstuvwxyz123456"
    domain = f"{url_id}.lambda-url.us-east-1.on.aws"
    text, encoded = _body(body, b64)
    hdrs = {
        "accept": "*/*",
        "host": domain,
        "user-agent": "curl/8.5.0",
        "x-amzn-trace-id": "Root=1-65f1a2b3-0123456789abcdef01234567",
        "x-forwarded-for": "203.0.113.7",
        "x-forwarded-port": "443",
        "x-forwarded-proto": "https",
    }
    if text is not None:
        hdrs["content-type"] = "application/json"
    hdrs.update({k.lower(): v for k, v in (headers or {}).items()})
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": hdrs,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": url_id,
            "domainName": domain,
            "domainPrefix": url_id,
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.7",
                "userAgent": "curl/8.5.0",
            },
            "requestId": request_id or str(uuid.uuid4()),
            "routeKey": "$default",
            "stage": "$default",
            "time": "24/Nov/2026:16:00:00 +0000",
            "timeEpoch": 1795536000000,
        },
        "isBase64Encoded": encoded,
    }
    if text is not None:
        event["body"] = text
    return event


def http_api_v2(
    method: str,
    path: str,
    body: Any = None,
    *,
    headers: dict[str, str] | None = None,
    b64: bool = False,
    request_id: str | None = None,
) -> dict[str, Any]:
    api_id = "r3pmxmplak"
    domain = f"{api_id}.execute-api.us-east-1.amazonaws.com"
    text, encoded = _body(body, b64)
    hdrs = {
        "accept": "*/*",
        "content-length": str(len(text or "")),
        "host": domain,
        "user-agent": "python-requests/2.32.3",
        "x-amzn-trace-id": "Root=1-5e6722a7-cc56xmpl46db7ae02d4da47e",
        "x-forwarded-for": "205.255.255.176",
        "x-forwarded-port": "443",
        "x-forwarded-proto": "https",
    }
    if text is not None:
        hdrs["content-type"] = "application/json"
    hdrs.update({k.lower(): v for k, v in (headers or {}).items()})
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": hdrs,
        "requestContext": {
            "accountId": ACCOUNT,
            "apiId": api_id,
            "domainName": domain,
            "domainPrefix": api_id,
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "205.255.255.176",
                "userAgent": "python-requests/2.32.3",
            },
            "requestId": request_id or "JKJaXmPLvHcESHA=",
            "routeKey": "$default",
            "stage": "$default",
            "time": "10/Mar/2020:05:16:23 +0000",
            "timeEpoch": 1583817383220,
        },
        "isBase64Encoded": encoded,
    }
    if text is not None:
        event["body"] = text
    return event


def rest_v1(
    method: str,
    path: str,
    body: Any = None,
    *,
    headers: dict[str, str] | None = None,
    b64: bool = False,
    request_id: str | None = None,
) -> dict[str, Any]:
    domain = "1234567890.execute-api.us-east-1.amazonaws.com"
    text, encoded = _body(body, b64)
    hdrs = {
        "Accept": "*/*",
        "Host": domain,
        "User-Agent": "curl/8.5.0",
        "X-Amzn-Trace-Id": "Root=1-5e66d96f-7491f09xmpl79d18acf3d050",
        "X-Forwarded-For": "203.0.113.7",
        "X-Forwarded-Port": "443",
        "X-Forwarded-Proto": "https",
    }
    if text is not None:
        hdrs["Content-Type"] = "application/json"
    hdrs.update(headers or {})
    rid = request_id or str(uuid.uuid4())
    return {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": hdrs,
        "multiValueHeaders": {k: [v] for k, v in hdrs.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": {"proxy": path.lstrip("/")},
        "stageVariables": None,
        "requestContext": {
            "accountId": ACCOUNT,
            "apiId": "1234567890",
            "domainName": domain,
            "extendedRequestId": "BQGojGkcoAMFL3A=",
            "httpMethod": method,
            "identity": {"sourceIp": "203.0.113.7", "userAgent": "curl/8.5.0"},
            "path": f"/prod{path}",
            "protocol": "HTTP/1.1",
            "requestId": rid,
            "requestTime": "24/Nov/2026:16:00:00 +0000",
            "requestTimeEpoch": 1795536000000,
            "resourceId": "abc123",
            "resourcePath": "/{proxy+}",
            "stage": "prod",
        },
        "body": text,
        "isBase64Encoded": encoded,
    }
