from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from core.engine.stops import StopMatcher


def run(pieces: list[str], stops: tuple[str, ...]) -> tuple[str, bool]:
    matcher = StopMatcher(stops)
    out = ""
    for piece in pieces:
        text, hit = matcher.push(piece)
        out += text
        if hit:
            return out, True
    return out + matcher.flush(), False


def test_stop_split_across_tokens_is_cut_and_not_emitted() -> None:
    assert run(["Hello", " wor", "ld<", "|en", "d|>", "more"], ("<|end|>",)) == (
        "Hello world",
        True,
    )


def test_partial_prefix_is_released_when_it_does_not_complete() -> None:
    matcher = StopMatcher(("STOP",))
    assert matcher.push("abc ST") == ("abc ", False)
    assert matcher.push("x") == ("STx", False)


def test_earliest_of_several_stops_wins() -> None:
    assert run(["a b c"], ("c", "b")) == ("a ", True)


@given(
    text=st.text(alphabet="abcXY\n ", max_size=60),
    stop=st.text(alphabet="abcXY\n ", min_size=1, max_size=4),
    cuts=st.lists(st.integers(min_value=0, max_value=60), max_size=10),
)
def test_any_split_gives_the_same_result_as_whole_text(
    text: str, stop: str, cuts: list[int]
) -> None:
    bounds = sorted({0, len(text), *(c for c in cuts if c <= len(text))})
    pieces = [text[a:b] for a, b in itertools.pairwise(bounds)]
    index = text.find(stop)
    expected = (text[:index], True) if index >= 0 else (text, False)
    assert run(pieces, (stop,)) == expected
