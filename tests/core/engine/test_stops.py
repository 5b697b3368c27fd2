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


@given(
    text=st.text(alphabet="abXY<|>", max_size=80),
    stops=st.lists(st.text(alphabet="abXY<|>", min_size=1, max_size=6), min_size=1, max_size=4),
    cuts=st.lists(st.integers(min_value=0, max_value=80), max_size=20),
)
def test_several_stops_any_split_cuts_at_the_earliest(
    text: str, stops: list[str], cuts: list[int]
) -> None:
    bounds = sorted({0, len(text), *(c for c in cuts if c <= len(text))})
    pieces = [text[a:b] for a, b in itertools.pairwise(bounds)]
    found = [i for i in (text.find(s) for s in stops) if i >= 0]
    expected = (text[: min(found)], True) if found else (text, False)
    assert run(pieces, tuple(stops)) == expected


def test_only_a_possible_stop_start_is_held_so_no_token_rescans_the_text() -> None:
    """Whatever has been generated, the matcher keeps at most len(longest stop) - 1
    characters: each token is searched together with that short tail, not with the whole text."""
    matcher = StopMatcher(("</tool_call>", "\n\nUser:"))
    emitted = []
    for i in range(2000):
        text, hit = matcher.push(f"word{i} <" if i % 3 else "\n\nUse")
        assert not hit
        emitted.append(text)
        assert len(matcher.held) <= len("</tool_call>") - 1
    assert matcher.held in ("<", "\n\nUse")
    assert "".join(emitted) + matcher.flush() == "".join(
        f"word{i} <" if i % 3 else "\n\nUse" for i in range(2000)
    )
