"""API keys and rate limits on Lambda, through the real runtime client: keys from Secrets
Manager and counters in DynamoDB, both served by moto's server on loopback."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from tests.support import lambda_events as ev
from tests.support.lambda_runtime import LambdaProcess, lambda_function

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KEY = "nimbus-test-key-0123456789abcdef"
OTHER_KEY = "nimbus-other-key-9876543210fedcba"
TABLE = "nimbus-rate-limits"
SECRET = "nimbus/api-keys"
LIMIT = 4
WINDOW_S = 86400


@pytest.fixture(scope="module")
def aws() -> Iterator[dict[str, Any]]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    common = {
        "endpoint_url": endpoint,
        "region_name": "us-east-1",
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }
    secrets = boto3.client("secretsmanager", **common)
    secrets.create_secret(Name=SECRET, SecretString=json.dumps([KEY, OTHER_KEY]))
    dynamo = boto3.client("dynamodb", **common)
    # The table exactly as deploy/aws/template.yaml declares it.
    dynamo.create_table(
        TableName=TABLE,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
    )
    dynamo.update_time_to_live(
        TableName=TABLE,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"},
    )
    try:
        yield {"endpoint": endpoint, "dynamo": dynamo}
    finally:
        server.stop()


@pytest.fixture(scope="module")
def fn(aws: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[LambdaProcess]:
    # DynamoDB windows are fixed (aligned to multiples of the window): a test that straddles a
    # boundary would see its count reset. Start well clear of one.
    to_boundary = WINDOW_S - time.time() % WINDOW_S
    if to_boundary < 300:
        time.sleep(to_boundary + 1)
    # What template.yaml sets, with no NIMBUS_SECURITY__AUTH__MODE: the adapter turns keys on.
    env = {
        "NIMBUS_SECURITY__AUTH__AWS_SECRET_ID": SECRET,
        "NIMBUS_SECURITY__RATE_LIMIT__BACKEND": "dynamodb",
        "NIMBUS_SECURITY__RATE_LIMIT__DYNAMODB_TABLE": TABLE,
        "NIMBUS_SECURITY__RATE_LIMIT__REQUESTS_PER_WINDOW": str(LIMIT),
        "NIMBUS_SECURITY__RATE_LIMIT__WINDOW_S": str(WINDOW_S),
        "AWS_ENDPOINT_URL_SECRETS_MANAGER": aws["endpoint"],
        "AWS_ENDPOINT_URL_DYNAMODB": aws["endpoint"],
    }
    with lambda_function(tmp_path_factory.mktemp("secured"), keys_required=True, **env) as process:
        yield process


def generate(key: str | None = None, header: str = "authorization") -> dict[str, Any]:
    headers = {}
    if key is not None:
        headers[header] = f"Bearer {key}" if header == "authorization" else key
    return ev.function_url(
        "POST", "/api/generate", {"prompt": "Hi", "maxTokens": 2}, headers=headers
    )


def error_of(response: dict[str, Any]) -> dict[str, Any]:
    return json.loads(response["body"])["error"]


def test_keys_are_required_by_default_on_lambda(fn: LambdaProcess) -> None:
    missing = fn.api.invoke(generate()).response
    assert missing["statusCode"] == 401
    assert error_of(missing)["code"] == "invalid_api_key"
    wrong = fn.api.invoke(generate("not-a-valid-key-at-all-000000")).response
    assert wrong["statusCode"] == 401
    # Each refusal is an EMF document of its own, with its reason as a dimension.
    refusals = [doc for doc in fn.metrics() if "Refusals" in doc]
    assert [doc["reason"] for doc in refusals] == ["auth", "auth"]
    assert refusals[0]["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["service", "reason"]]
    # Health stays open for load balancers and the Web Adapter's readiness check.
    assert fn.api.invoke(ev.function_url("GET", "/api/health")).response["statusCode"] == 200


def test_keys_from_secrets_manager_are_accepted(fn: LambdaProcess) -> None:
    ok = fn.api.invoke(generate(OTHER_KEY)).response
    assert ok["statusCode"] == 200, ok
    ok = fn.api.invoke(generate(OTHER_KEY, header="x-api-key")).response
    assert ok["statusCode"] == 200, ok


def test_rate_limit_in_dynamodb_answers_429(fn: LambdaProcess, aws: dict[str, Any]) -> None:
    statuses = [fn.api.invoke(generate(KEY)).response for _ in range(LIMIT + 1)]
    assert [r["statusCode"] for r in statuses[:LIMIT]] == [200] * LIMIT
    limited = statuses[LIMIT]
    assert limited["statusCode"] == 429
    assert error_of(limited)["code"] == "rate_limit_exceeded"
    assert int(limited["headers"]["retry-after"]) > 0
    assert any(doc.get("reason") == "rate_limit" and "Refusals" in doc for doc in fn.metrics())
    items = aws["dynamo"].scan(TableName=TABLE)["Items"]
    assert items and all("expires_at" in item for item in items)


def test_without_any_key_source_the_function_refuses_to_start(tmp_path: Path) -> None:
    with lambda_function(tmp_path, keys_required=True) as fn:
        fn.proc.wait(timeout=120)
        assert fn.proc.returncode != 0
        ((error_type, error),) = fn.api.init_errors
        assert "SecurityConfigError" in (error_type or "") + error["errorType"]
        assert "API keys are required" in error["errorMessage"]
