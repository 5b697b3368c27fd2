"""DynamoDB rate limiter: one counter item per (client, window), shared by every container.

Admission is a single conditional ``UpdateItem`` (``ADD requests 1`` only if ``requests`` is
below the limit and ``tokens`` below the token limit), so concurrent containers can never admit
more than the limit between them. Windows are fixed (aligned to ``window_s``): exact and one
write per request, at the price of allowing up to twice the limit across a window boundary.
Items carry ``expires_at`` (epoch seconds) for DynamoDB TTL, so old windows delete themselves.

Table: partition key ``pk`` (string), TTL enabled on ``expires_at``. boto3 is imported here
only, when this backend is built.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from core.security.aws import aws_client
from core.security.ratelimit import Decision
from core.settings import AwsClientSettings, RateLimitSettings

log = logging.getLogger("nimbus.security")

KEY_ATTRIBUTE = "pk"
TTL_ATTRIBUTE = "expires_at"


class DynamoRateLimiter:
    def __init__(
        self,
        settings: RateLimitSettings,
        client: Any = None,
        clock: Callable[[], float] = time.time,
        aws: AwsClientSettings | None = None,
    ) -> None:
        assert settings.dynamodb_table
        self.table = settings.dynamodb_table
        self.window = settings.window_s
        self.limit = settings.requests_per_window
        self.token_limit = settings.tokens_per_window
        self.fail_open = settings.on_backend_error == "allow"
        self._clock = clock
        if client is None:
            client = aws_client(
                "dynamodb",
                aws or AwsClientSettings.model_validate({}),
                region=settings.dynamodb_region,
                endpoint_url=settings.dynamodb_endpoint_url,
            )
        self._client: Any = client

    def _window(self, now: float) -> tuple[int, int]:
        start = int(now // self.window) * self.window
        return start, start + self.window

    def _key(self, client: str, start: int) -> dict[str, Any]:
        return {KEY_ATTRIBUTE: {"S": f"rl#{client}#{start}"}}

    def hit_sync(self, client: str) -> Decision:
        from botocore.exceptions import BotoCoreError, ClientError

        now = self._clock()
        start, end = self._window(now)
        reset = end - now
        condition = "(attribute_not_exists(#r) OR #r < :rlimit)"
        values: dict[str, Any] = {
            ":one": {"N": "1"},
            ":rlimit": {"N": str(self.limit)},
            ":exp": {"N": str(end + self.window)},
        }
        if self.token_limit:
            condition += " AND (attribute_not_exists(#t) OR #t < :tlimit)"
            values[":tlimit"] = {"N": str(self.token_limit)}
        try:
            result = self._client.update_item(
                TableName=self.table,
                Key=self._key(client, start),
                UpdateExpression="ADD #r :one SET #e = if_not_exists(#e, :exp)",
                ConditionExpression=condition,
                ExpressionAttributeNames={"#r": "requests", "#e": TTL_ATTRIBUTE}
                | ({"#t": "tokens"} if self.token_limit else {}),
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return Decision(False, self.limit, 0, reset, self.token_limit, 0, reset)
            return self._backend_failed(exc, reset)
        except BotoCoreError as exc:
            return self._backend_failed(exc, reset)
        item = result.get("Attributes", {})
        used = int(item.get("requests", {}).get("N", "1"))
        tokens = int(item.get("tokens", {}).get("N", "0"))
        tokens_left = self.token_limit - tokens if self.token_limit else 0
        return Decision(
            True, self.limit, self.limit - used, reset, self.token_limit, tokens_left, stamp=now
        )

    def _backend_failed(self, exc: Exception, reset: float) -> Decision:
        log.error("rate-limit table %s failed: %s", self.table, type(exc).__name__)
        return Decision(self.fail_open, self.limit, 0, reset, self.token_limit, 0, reset)

    def charge_sync(self, client: str, tokens: int) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        if tokens <= 0 or not self.token_limit:
            return
        start, end = self._window(self._clock())
        try:
            self._client.update_item(
                TableName=self.table,
                Key=self._key(client, start),
                UpdateExpression="ADD #t :n SET #e = if_not_exists(#e, :exp)",
                ExpressionAttributeNames={"#t": "tokens", "#e": TTL_ATTRIBUTE},
                ExpressionAttributeValues={
                    ":n": {"N": str(tokens)},
                    ":exp": {"N": str(end + self.window)},
                },
            )
        except (ClientError, BotoCoreError) as exc:
            log.error("rate-limit table %s: charging tokens failed: %s", self.table, exc)

    def refund_sync(self, client: str, decision: Decision) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        if not decision.allowed or not decision.stamp:
            return  # refused, or admitted without the table (fail-open): nothing was counted
        start, _ = self._window(decision.stamp)
        try:
            self._client.update_item(
                TableName=self.table,
                Key=self._key(client, start),
                UpdateExpression="ADD #r :minus",
                ConditionExpression="attribute_exists(#r) AND #r > :zero",
                ExpressionAttributeNames={"#r": "requests"},
                ExpressionAttributeValues={":minus": {"N": "-1"}, ":zero": {"N": "0"}},
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                log.error("rate-limit table %s: refund failed: %s", self.table, exc)
        except BotoCoreError as exc:
            log.error("rate-limit table %s: refund failed: %s", self.table, exc)

    async def hit(self, client: str) -> Decision:
        return await asyncio.to_thread(self.hit_sync, client)

    async def refund(self, client: str, decision: Decision) -> None:
        await asyncio.to_thread(self.refund_sync, client, decision)

    async def charge(self, client: str, tokens: int) -> None:
        await asyncio.to_thread(self.charge_sync, client, tokens)


def create_table(client: Any, table: str) -> None:
    """Create a rate-limit table with TTL on (for tests, DynamoDB Local and first deploys)."""
    client.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": KEY_ATTRIBUTE, "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": KEY_ATTRIBUTE, "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    client.get_waiter("table_exists").wait(TableName=table)
    client.update_time_to_live(
        TableName=table,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE},
    )
