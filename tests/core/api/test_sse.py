"""SSE framing: the per-token template encodes exactly what a full json.dumps would."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.api.events import TextEvent, sse_event


def _chat_chunk(text: str) -> dict[str, object]:
    return {
        "id": "chatcmpl-1",
        "created": 1,
        "model": "m",
        "object": "chat.completion.chunk",
        "choices": [
            {"index": 0, "delta": {"content": text}, "logprobs": None, "finish_reason": None}
        ],
    }


@given(st.text())
def test_text_event_matches_a_full_encode(text: str) -> None:
    event = TextEvent(_chat_chunk(TextEvent.MARK))
    assert event(text) == sse_event(_chat_chunk(text))
    assert json.loads(event(text)[6:])["choices"][0]["delta"]["content"] == text


@pytest.mark.parametrize("text", ['"quoted"', "line\nbreak", "é ☃ 𝄞", "\\", "\x00\x1f", ""])
def test_text_event_escapes(text: str) -> None:
    event = TextEvent({"token": TextEvent.MARK})
    assert event(text) == sse_event({"token": text})


def test_text_event_needs_the_mark_once() -> None:
    with pytest.raises(ValueError):
        TextEvent({"token": "no mark"})
    with pytest.raises(ValueError):
        TextEvent({"a": TextEvent.MARK, "b": TextEvent.MARK})
