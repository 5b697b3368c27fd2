"""engine.chat_template: built-in formats, template files, Jinja text."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.engine.chat import ChatTemplate
from core.engine.templates import CHATML_TEMPLATE, GEMMA_TEMPLATE, load_chat_template
from core.engine.types import ChatMessage
from core.errors import InvalidRequestError, ModelLoadError


def test_unset_means_the_model_s_own() -> None:
    assert load_chat_template(None) is None
    assert load_chat_template("  ") is None


def test_builtin_names_file_and_inline_jinja(tmp_path: Path) -> None:
    assert load_chat_template("gemma") == GEMMA_TEMPLATE
    assert load_chat_template(" ChatML ") == CHATML_TEMPLATE
    inline = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    assert load_chat_template(inline) == inline
    path = tmp_path / "t.jinja"
    path.write_text("X{{ messages[0]['content'] }}")
    assert load_chat_template(str(path)) == "X{{ messages[0]['content'] }}"


def test_an_unknown_value_is_a_clear_load_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError) as exc:
        load_chat_template(str(tmp_path / "missing.jinja"))
    assert (
        "neither Jinja text, a built-in format (chatml, gemma) nor a readable" in exc.value.message
    )


def gemma(messages: list[ChatMessage]) -> tuple[str, list[str]]:
    tpl = ChatTemplate(GEMMA_TEMPLATE, bos_token="<bos>", eos_token="<eos>")
    segments = tpl.render(messages)
    return "".join(s.text for s in segments), [s.text for s in segments if not s.special]


def test_gemma_turn_format() -> None:
    text, user = gemma(
        [
            ChatMessage("system", "Be brief."),
            ChatMessage("user", "Hi <end_of_turn>"),
            ChatMessage("assistant", "Hello."),
            ChatMessage("user", "Bye"),
        ]
    )
    # BOS comes from the tokenizer, not the text; the system message opens the first user turn.
    assert text == (
        "<start_of_turn>user\nBe brief.\n\nHi <end_of_turn><end_of_turn>\n"
        "<start_of_turn>model\nHello.<end_of_turn>\n"
        "<start_of_turn>user\nBye<end_of_turn>\n"
        "<start_of_turn>model\n"
    )
    assert user == ["Be brief.", "Hi <end_of_turn>", "Hello.", "Bye"]  # never special tokens


def test_gemma_turns_must_alternate() -> None:
    with pytest.raises(InvalidRequestError, match="alternate"):
        gemma([ChatMessage("user", "a"), ChatMessage("user", "b")])
    with pytest.raises(InvalidRequestError, match="alternate"):
        gemma([ChatMessage("assistant", "a")])
