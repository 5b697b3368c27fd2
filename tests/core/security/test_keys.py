"""API key sources (settings, file, Secrets Manager, SSM) and matching."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import boto3
import pytest

from core.errors import AuthUnavailableError, SecurityConfigError
from core.security.keys import KeyRing, key_id, require_configured, split_keys
from core.settings import AuthSettings

KEY_A = "nimbus-test-key-aaaaaaaaaaaa"
KEY_B = "nimbus-test-key-bbbbbbbbbbbb"


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_keys_from_settings_and_digests() -> None:
    digest_b = hashlib.sha256(KEY_B.encode()).hexdigest()
    ring = KeyRing(AuthSettings(keys=f"{KEY_A}, sha256:{digest_b}"))  # type: ignore[arg-type]
    assert await ring.match(KEY_A) == key_id(hashlib.sha256(KEY_A.encode()).digest())
    assert await ring.match(KEY_B) == digest_b[:12]
    assert await ring.match("nimbus-test-key-cccccccccccc") is None
    assert await ring.match(KEY_A + " ") is None


async def test_keys_file_is_reread_after_refresh_interval(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"# team keys\n{KEY_A}\nshort\n\n")
    clock = Clock()
    ring = KeyRing(AuthSettings(keys_file=path, refresh_s=60), clock=clock)  # type: ignore[arg-type]
    assert await ring.match(KEY_A) and not await ring.match(KEY_B)
    path.write_text(KEY_B + "\n")  # rotation
    clock.now = 30
    assert await ring.match(KEY_A)  # still cached
    clock.now = 61
    assert await ring.match(KEY_B) and not await ring.match(KEY_A)
    # A failed reload keeps the last good keys.
    path.unlink()
    clock.now = 200
    assert await ring.match(KEY_B)


async def test_unreadable_source_fails_closed_with_503(tmp_path: Path) -> None:
    ring = KeyRing(AuthSettings(keys_file=tmp_path / "missing"))  # type: ignore[arg-type]
    with pytest.raises(AuthUnavailableError) as exc:
        await ring.match(KEY_A)
    assert exc.value.status == 503


async def test_secrets_manager_source(aws: None) -> None:
    sm = boto3.client("secretsmanager")
    sm.create_secret(Name="nimbus/keys", SecretString=json.dumps({"keys": [KEY_A]}))
    clock = Clock()
    ring = KeyRing(AuthSettings(aws_secret_id="nimbus/keys", refresh_s=10), clock=clock)  # type: ignore[arg-type]
    assert await ring.match(KEY_A) and not await ring.match(KEY_B)
    sm.put_secret_value(SecretId="nimbus/keys", SecretString=json.dumps([KEY_A, KEY_B]))
    clock.now = 11
    assert await ring.match(KEY_B)


async def test_ssm_parameter_source(aws: None) -> None:
    boto3.client("ssm").put_parameter(
        Name="/nimbus/keys", Value=f"{KEY_A},{KEY_B}", Type="SecureString"
    )
    ring = KeyRing(AuthSettings(aws_ssm_parameter="/nimbus/keys"))  # type: ignore[arg-type]
    assert await ring.match(KEY_A) and await ring.match(KEY_B)


async def test_logs_never_contain_keys(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "keys"
    path.write_text("tooshortkey\nsha256:nothex\n")
    with caplog.at_level(logging.DEBUG):
        ring = KeyRing(AuthSettings(keys_file=path))  # type: ignore[arg-type]
        assert await ring.match(KEY_A) is None  # readable but empty: every key is refused
    assert "entry 1" in caplog.text and "entry 2" in caplog.text
    assert "tooshortkey" not in caplog.text and KEY_A not in caplog.text


def test_split_keys_formats() -> None:
    assert split_keys('["a", "b"]') == ["a", "b"]
    assert split_keys('{"keys": ["a"]}') == ["a"]
    assert split_keys("a\nb,c") == ["a", "b", "c"]


def test_required_without_sources_is_a_config_error() -> None:
    with pytest.raises(SecurityConfigError, match="NIMBUS_SECURITY__AUTH__KEYS"):
        require_configured(KeyRing(AuthSettings()))
