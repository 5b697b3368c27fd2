"""The embeddings use-case: model check -> prompt checks -> engine.embed -> charge -> payload."""

from __future__ import annotations

import base64
import struct
from typing import Any

from core.api.protocol import EmbeddingRequest
from core.api.service import GenerationService
from core.errors import InvalidParameterError, NimbusError
from core.security import RequestSecurity
from core.settings import EmbeddingSettings


async def create_embeddings(
    service: GenerationService,
    sec: RequestSecurity,
    body: EmbeddingRequest,
    settings: EmbeddingSettings,
) -> dict[str, Any]:
    service.check_model(body.model, embeddings=True)
    raw = body.input
    # One input (a text or one token array) is named 'input'; one of several 'input.<i>'.
    if not raw:
        raise InvalidParameterError("input must not be empty", param="input")
    inputs: list[str | list[int]] = []
    single = isinstance(raw, str) or isinstance(raw[0], int)
    if isinstance(raw, str):
        inputs.append(raw)
    else:
        ints = [t for t in raw if isinstance(t, int)]
        inputs = [ints] if single else [t for t in raw if not isinstance(t, int)]
    if len(inputs) > settings.max_inputs:
        raise InvalidParameterError(
            f"at most {settings.max_inputs} inputs are allowed", param="input"
        )
    checked: list[str | list[int]] = []
    for i, item in enumerate(inputs):
        param = "input" if single else f"input.{i}"
        if isinstance(item, str):
            service.check_text(item, param)
            item = sec.text(item, param)
        checked.append(item)
    sec.finish_prompt()
    try:
        result = await service.engine.embed(checked)
    except NimbusError as exc:
        if single and exc.param == "input.0":
            exc.param = "input"
        raise
    if body.dimensions is not None and body.dimensions != result.dimensions:
        raise InvalidParameterError(
            f"dimensions must be {result.dimensions} (this model's size): vectors are not "
            "shortened",
            param="dimensions",
        )
    await sec.charge(result.prompt_tokens, 0)
    data = [
        {"object": "embedding", "index": i, "embedding": _encoded(v, body.encoding_format)}
        for i, v in enumerate(result.vectors)
    ]
    payload: dict[str, Any] = {
        "object": "list",
        "data": data,
        "model": result.model,
        "usage": {"prompt_tokens": result.prompt_tokens, "total_tokens": result.prompt_tokens},
    }
    info = sec.body_fields()
    return {**payload, "nimbus": info} if info else payload


def _encoded(vector: bytes, encoding: str) -> list[float] | str:
    """base64: the little-endian float32 bytes (what OpenAI sends); float: the same values."""
    if encoding == "base64":
        return base64.b64encode(vector).decode("ascii")
    return list(struct.unpack(f"<{len(vector) // 4}f", vector))
