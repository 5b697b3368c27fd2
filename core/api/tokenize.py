"""llama-server's /tokenize and /detokenize: the served model's tokenizer over HTTP."""

from __future__ import annotations

from typing import Any

from core.api.protocol import DetokenizeRequest, TokenizeRequest
from core.api.service import GenerationService
from core.engine.types import PromptSegment


def tokenize(service: GenerationService, body: TokenizeRequest) -> dict[str, Any]:
    service.check_text(body.content, "content")
    engine = service.engine
    tokens = engine.tokenize(
        (PromptSegment(body.content, special=body.parse_special),), add_bos=body.add_special
    )
    if not body.with_pieces:
        return {"tokens": tokens}
    return {"tokens": [{"id": t, "piece": _piece(engine.token_piece(t))} for t in tokens]}


def detokenize(service: GenerationService, body: DetokenizeRequest) -> dict[str, Any]:
    pieces = b"".join(service.engine.token_piece(t) for t in body.tokens)
    return {"content": pieces.decode("utf-8", "replace")}


def _piece(piece: bytes) -> str | list[int]:
    """The text, or (as llama-server) the byte values when the token is not whole UTF-8."""
    try:
        return piece.decode("utf-8")
    except UnicodeDecodeError:
        return list(piece)
