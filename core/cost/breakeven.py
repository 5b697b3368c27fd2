"""The reference chapter's break-even formula, from its own inputs.

API cost grows with tokens at the API's price; self-hosted cost is a monthly base plus a cost
per invocation. They are equal where ``tokens / 1M * api_price = base + tokens / tokens_per_call
* cost_per_call``, i.e. ``tokens = base / (api_price / 1M - cost_per_call / tokens_per_call)``."""

from __future__ import annotations

import math
from dataclasses import dataclass

from core.errors import InvalidParameterError


@dataclass(frozen=True)
class BreakEven:
    api_monthly: float
    serverless_monthly: float
    savings: float
    invocations: float
    break_even_tokens: float | None
    """Monthly tokens where both cost the same; None when self-hosting never catches up (its
    cost per token is not below the API's)."""


def break_even(
    tokens_per_month: float,
    api_price_per_m: float,
    cost_per_invocation: float,
    tokens_per_invocation: float,
    base_monthly: float,
) -> BreakEven:
    for name, value in (
        ("tokens-per-month", tokens_per_month),
        ("api-price-per-m", api_price_per_m),
        ("cost-per-invocation", cost_per_invocation),
        ("base-monthly", base_monthly),
    ):
        if not math.isfinite(value) or value < 0:
            raise InvalidParameterError(f"--{name} must be a number >= 0", param=name)
    if not math.isfinite(tokens_per_invocation) or tokens_per_invocation <= 0:
        raise InvalidParameterError(
            "--tokens-per-invocation must be a number > 0", param="tokens-per-invocation"
        )
    api = tokens_per_month / 1_000_000 * api_price_per_m
    invocations = tokens_per_month / tokens_per_invocation
    serverless = base_monthly + invocations * cost_per_invocation
    margin = api_price_per_m / 1_000_000 - cost_per_invocation / tokens_per_invocation
    tokens = base_monthly / margin if margin > 0 else None
    return BreakEven(api, serverless, api - serverless, invocations, tokens)
