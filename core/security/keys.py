"""API keys: where they come from and how a presented key is checked.

Only SHA-256 digests are kept in memory; a key is named in logs by ``key_id`` (the first 12
hex digits of its digest). Sources: settings, a file, AWS Secrets Manager, SSM Parameter Store
(boto3 is imported inside those two loaders only). Remote/file sources are cached for
``refresh_s`` and re-read after that; a failed refresh keeps the last good set.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from core.errors import AuthUnavailableError, SecurityConfigError
from core.security.aws import aws_client
from core.settings import AuthSettings, AwsClientSettings

log = logging.getLogger("nimbus.security")

MIN_KEY_CHARS = 16
_DIGEST_PREFIX = "sha256:"

Loader = Callable[[], list[str]]


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


def key_id(key_digest: bytes) -> str:
    """A short, non-secret name for a key (safe to log and to use as a rate-limit identity)."""
    return key_digest.hex()[:12]


def parse_entries(entries: Iterable[str], origin: str) -> list[bytes]:
    """Raw keys or 'sha256:<hex>' digests -> digests; short or malformed entries are skipped
    (logged by position, never by value)."""
    digests: list[bytes] = []
    for n, raw in enumerate(entries, 1):
        entry = raw.strip()
        if not entry or entry.startswith("#"):
            continue
        if entry.startswith(_DIGEST_PREFIX):
            try:
                value = bytes.fromhex(entry[len(_DIGEST_PREFIX) :])
            except ValueError:
                value = b""
            if len(value) != 32:
                log.warning("%s: entry %d is not a valid sha256 digest; ignored", origin, n)
                continue
            digests.append(value)
        elif len(entry) < MIN_KEY_CHARS:
            log.warning("%s: entry %d is shorter than %d chars; ignored", origin, n, MIN_KEY_CHARS)
        else:
            digests.append(digest(entry))
    return digests


def split_keys(text: str) -> list[str]:
    """A JSON list, {"keys": [...]}, or keys separated by newlines / commas."""
    stripped = text.strip()
    if stripped.startswith(("[", "{")):
        try:
            data: Any = json.loads(stripped)
        except ValueError:
            data = None
        if isinstance(data, dict):
            data = data.get("keys")
        if isinstance(data, list):
            return [str(k) for k in data]
    return [k for line in stripped.splitlines() for k in line.split(",")]


def _file_loader(path: Path) -> Loader:
    def load() -> list[str]:
        return path.read_text(encoding="utf-8").splitlines()

    return load


def _secret_loader(secret_id: str, region: str | None, aws: AwsClientSettings) -> Loader:
    def load() -> list[str]:
        client = aws_client("secretsmanager", aws, region=region)
        value = client.get_secret_value(SecretId=secret_id)
        return split_keys(str(value.get("SecretString") or ""))

    return load


def _ssm_loader(name: str, region: str | None, aws: AwsClientSettings) -> Loader:
    def load() -> list[str]:
        value = aws_client("ssm", aws, region=region).get_parameter(Name=name, WithDecryption=True)
        return split_keys(str(value["Parameter"]["Value"]))

    return load


class KeyRing:
    """The accepted key digests, refreshed from the configured sources."""

    def __init__(
        self,
        settings: AuthSettings,
        clock: Callable[[], float] = time.monotonic,
        *,
        aws: AwsClientSettings | None = None,
    ) -> None:
        aws = aws or AwsClientSettings.model_validate({})
        self._clock = clock
        self._refresh_s = settings.refresh_s
        self._static: list[bytes] = []
        if settings.keys is not None:
            self._static = parse_entries(
                settings.keys.get_secret_value().split(","), "security.auth.keys"
            )
        self._loaders: list[tuple[str, Loader]] = []
        if settings.keys_file is not None:
            self._loaders.append(
                (f"keys file {settings.keys_file}", _file_loader(settings.keys_file))
            )
        if settings.aws_secret_id:
            self._loaders.append(
                (
                    f"secret {settings.aws_secret_id}",
                    _secret_loader(settings.aws_secret_id, settings.aws_region, aws),
                )
            )
        if settings.aws_ssm_parameter:
            self._loaders.append(
                (
                    f"parameter {settings.aws_ssm_parameter}",
                    _ssm_loader(settings.aws_ssm_parameter, settings.aws_region, aws),
                )
            )
        self._loaded: dict[str, list[bytes]] = {}
        self._loaded_at: float | None = None
        self._lock = threading.Lock()

    @property
    def configured(self) -> bool:
        return bool(self._static or self._loaders)

    def refresh(self) -> None:
        """Re-read every source (blocking I/O); a source that fails keeps its last good keys."""
        failures = 0
        for origin, load in self._loaders:
            try:
                self._loaded[origin] = parse_entries(load(), origin)
            except Exception as exc:  # any I/O or AWS error: keep serving with what we have
                failures += 1
                log.error("could not load API keys from %s: %s", origin, type(exc).__name__)
        self._loaded_at = self._clock()
        if failures and not self.digests() and not self._static:
            self._loaded_at = None  # nothing usable: try again on the next request

    def digests(self) -> list[bytes]:
        return self._static + [d for ds in self._loaded.values() for d in ds]

    def _stale(self) -> bool:
        return self._loaded_at is None or self._clock() - self._loaded_at >= self._refresh_s

    def _refresh_if_stale(self) -> None:
        with self._lock:  # one reload at a time; the others wait and then see fresh keys
            if self._stale():
                self.refresh()

    async def current(self) -> list[bytes]:
        if self._loaders and self._stale():
            await asyncio.to_thread(self._refresh_if_stale)
        keys = self.digests()
        if not keys and self._loaders and self._loaded_at is None:
            raise AuthUnavailableError("the API key store is unavailable; try again later")
        return keys

    async def match(self, presented: str) -> str | None:
        """The key_id of ``presented`` when it is an accepted key, else None. Every stored
        digest is compared (constant time each) so timing does not reveal which one matched."""
        candidate = digest(presented)
        found: bytes | None = None
        for known in await self.current():
            if hmac.compare_digest(candidate, known):
                found = known
        return key_id(found) if found is not None else None


def require_configured(ring: KeyRing) -> None:
    if not ring.configured:
        raise SecurityConfigError(
            "API keys are required (security.auth.mode) but none are configured: set "
            "NIMBUS_SECURITY__AUTH__KEYS, __KEYS_FILE, __AWS_SECRET_ID or __AWS_SSM_PARAMETER, "
            "or NIMBUS_SECURITY__AUTH__MODE=off"
        )
