"""AWS calls on the request path are bounded: a stalled endpoint (it accepts the connection and
never answers) fails within the configured timeouts, and the limiter's fail-open/closed choice
and the key store's 503 then apply."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from core.errors import AuthUnavailableError
from core.security.aws import client_config
from core.security.dynamo import DynamoRateLimiter
from core.security.keys import KeyRing
from core.settings import AuthSettings, AwsClientSettings, RateLimitSettings

FAST = AwsClientSettings(connect_timeout_s=0.3, read_timeout_s=0.3, max_attempts=1)
# One attempt of at most connect + read, plus botocore's own work on the first call (endpoint
# and credential resolution) on a busy machine. botocore's defaults would take 60 s per read
# and retry. A second attempt adds one more read timeout and a jittered backoff (up to 1 s).
BOUND_S = 0.3 + 0.3 + 2.0


@pytest.fixture()
def stalled() -> Iterator[str]:
    """A loopback endpoint that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(conn)  # read nothing, answer nothing

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in held:
            conn.close()
        server.close()


@pytest.fixture()
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


def test_client_config_carries_the_settings() -> None:
    config = client_config(FAST)
    assert config.connect_timeout == 0.3 and config.read_timeout == 0.3
    assert config.retries == {"max_attempts": 1, "mode": "standard"}
    defaults = client_config(AwsClientSettings.model_validate({}))
    assert (defaults.connect_timeout, defaults.read_timeout) == (1.0, 2.0)


@pytest.mark.parametrize(("policy", "allowed"), [("allow", True), ("deny", False)])
async def test_a_stalled_rate_limit_table_fails_open_or_closed_in_bounded_time(
    stalled: str, credentials: None, policy: str, allowed: bool
) -> None:
    limiter = DynamoRateLimiter(
        RateLimitSettings(
            backend="dynamodb",
            dynamodb_table="limits",
            dynamodb_endpoint_url=stalled,
            dynamodb_region="us-east-1",
            on_backend_error=policy,  # type: ignore[arg-type]
        ),
        aws=FAST,
    )
    started = time.perf_counter()
    decision = await limiter.hit("key:abc")
    elapsed = time.perf_counter() - started
    assert decision.allowed is allowed
    assert 0.3 <= elapsed < BOUND_S, elapsed
    await limiter.refund("key:abc", decision)  # nothing was counted: no call, no error


async def test_a_stalled_secrets_manager_gives_503_in_bounded_time(
    stalled: str, credentials: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", stalled)
    ring = KeyRing(AuthSettings(aws_secret_id="nimbus/keys", aws_region="us-east-1"), aws=FAST)
    started = time.perf_counter()
    with pytest.raises(AuthUnavailableError):
        await ring.current()
    assert time.perf_counter() - started < BOUND_S
