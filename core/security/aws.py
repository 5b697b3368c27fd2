"""AWS clients for calls made while serving requests (rate-limit table, key store): explicit
connect/read timeouts and bounded retries, so a slow or unreachable endpoint holds a request for
at most about attempts x (connect + read) seconds instead of botocore's 60 s reads and retries.
boto3 is imported in this module only, inside the function, by the backends that need it."""

from __future__ import annotations

from typing import Any

from core.settings import AwsClientSettings


def client_config(settings: AwsClientSettings) -> Any:
    """A botocore ``Config`` with the settings' timeouts and attempts (standard retry mode)."""
    from botocore.config import Config

    return Config(
        connect_timeout=settings.connect_timeout_s,
        read_timeout=settings.read_timeout_s,
        retries={"max_attempts": settings.max_attempts, "mode": "standard"},
    )


def aws_client(
    service: str,
    settings: AwsClientSettings,
    *,
    region: str | None = None,
    endpoint_url: str | None = None,
) -> Any:
    import boto3  # only deployments that keep keys or limits in AWS need boto3

    return boto3.client(  # type: ignore[call-overload]
        service,
        region_name=region,
        endpoint_url=endpoint_url,
        config=client_config(settings),
    )
