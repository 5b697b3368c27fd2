"""Output redaction: whole texts, streams, and the property that both agree."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.security.output import OutputFilter, card_span, luhn_ok
from core.settings import OutputSettings

FILTER = OutputFilter(OutputSettings())
R = "[REDACTED]"


def stream_all(f: OutputFilter, pieces: list[str]) -> tuple[str, int]:
    redactor = f.stream()
    out = "".join(redactor.feed(p) for p in pieces) + redactor.flush()
    return out, redactor.redactions


@pytest.mark.parametrize(
    ("text", "expected", "count"),
    [
        ("ssn 123-45-6789.", f"ssn {R}.", 1),
        ("visa 4111111111111111 ok", f"visa {R} ok", 1),
        ("visa 4111 1111 1111 1111 ok", f"visa {R} ok", 1),
        ("visa 4111-1111-1111-1111 ok", f"visa {R} ok", 1),
        ("amex 3782 822463 10005", f"amex {R}", 1),
        ("password: hunter2 and more", f"{R} and more", 1),
        ('{"password": "s3cr3t!"}', f'{{"{R}"}}', 1),
        ("PWD=abc123", R, 1),
        # Luhn-invalid 16 digits, an order number, a phone-like and a date stay.
        ("order 4111111111111112", "order 4111111111111112", 0),
        ("call 555-123-4567 on 2024-01-15", "call 555-123-4567 on 2024-01-15", 0),
        # A card followed by an unrelated number is still found.
        ("card 4111 1111 1111 1111 2024", f"card {R} 2024", 1),
        ("no secrets here", "no secrets here", 0),
        ("", "", 0),
    ],
)
def test_whole_text_redaction(text: str, expected: str, count: int) -> None:
    assert FILTER.filter(text) == (expected, count)


def test_luhn() -> None:
    assert luhn_ok("4111111111111111") and luhn_ok("378282246310005")
    assert not luhn_ok("4111111111111112")
    assert card_span("12 4111 1111 1111 1111") == (3, 22)
    assert card_span("1234 5678") is None


def test_number_split_across_tokens_is_redacted() -> None:
    pieces = [
        "Card",
        ": 41",
        "11 11",
        "11 1",
        "111 11",
        "11",
        ". Done",
        " password",
        ":",
        " x",
        "y",
    ]
    out, n = stream_all(FILTER, pieces)
    assert out == f"Card: {R}. Done {R}" and n == 2


def test_stream_holds_back_only_what_could_be_a_match() -> None:
    redactor = FILTER.stream()
    # Ordinary words go out at once.
    assert redactor.feed("Hello there, ") == "Hello there, "
    # Digits could start a card number: held until decided.
    assert redactor.feed("4111 1111") == ""
    assert redactor.feed(" is not a card") == "4111 1111 is not a card"
    # A finished match waits at most for the longest match plus the lookaround margin.
    out = redactor.feed("4111111111111111" + " filler" * 20)
    assert out.startswith(R) and "4111" not in out
    assert redactor.flush() == ""


def test_configured_patterns_and_replacement() -> None:
    f = OutputFilter(OutputSettings(extra_patterns=[r"sk-[A-Za-z0-9]{20,48}"], replacement="***"))
    text = "key sk-abcdefghijklmnopqrstuvwx and ssn 123-45-6789"
    assert f.filter(text) == ("key *** and ssn ***", 2)
    assert stream_all(f, list(text)) == ("key *** and ssn ***", 2)


def test_disabled_filter_passes_text_through() -> None:
    f = OutputFilter(OutputSettings(enabled=False))
    assert f.filter("123-45-6789") == ("123-45-6789", 0)
    assert stream_all(f, ["123-", "45-6789"]) == ("123-45-6789", 0)


SECRETS = st.sampled_from(
    [
        "123-45-6789",
        "4111111111111111",
        "4111 1111 1111 1111",
        "5500-0000-0000-0004",
        "378282246310005",
        "password: hunter2",
        "pwd=abc",
        "4111111111111112",
        "2024",
        "555-12-3456",
    ]
)
FILLER = st.text(alphabet=st.sampled_from(list("ab 1-9:=.\n\"'pw")), max_size=12)


@st.composite
def text_and_splits(draw: st.DrawFn) -> tuple[str, list[str]]:
    parts = draw(st.lists(st.one_of(SECRETS, FILLER), min_size=1, max_size=12))
    text = "".join(parts)
    cuts = sorted(draw(st.sets(st.integers(0, len(text)), max_size=max(1, len(text) // 2))))
    bounds = [0, *cuts, len(text)]
    return text, [text[a:b] for a, b in itertools.pairwise(bounds)]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text_and_splits())
def test_streamed_output_equals_whole_text_output(case: tuple[str, list[str]]) -> None:
    text, pieces = case
    assert stream_all(FILTER, pieces) == FILTER.filter(text)
