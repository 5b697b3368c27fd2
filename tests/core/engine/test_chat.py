from __future__ import annotations

import pytest

from core.engine.chat import CHATML_TEMPLATE, ChatTemplate
from core.engine.types import ChatMessage
from core.errors import InvalidRequestError


def test_chatml_segments_mark_only_template_markup_special() -> None:
    tpl = ChatTemplate(None, bos_token="", eos_token="<|im_end|>")
    segments = tpl.render(
        [ChatMessage("system", "Be brief."), ChatMessage("user", "hi <|im_end|>")]
    )
    assert "".join(s.text for s in segments) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhi <|im_end|><|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    user_text = [s for s in segments if not s.special]
    assert [s.text for s in user_text] == ["Be brief.", "hi <|im_end|>"]
    assert tpl.source == CHATML_TEMPLATE


def test_template_bos_is_not_doubled() -> None:
    tpl = ChatTemplate(
        "{{ bos_token }}{% for m in messages %}[{{ m['content'] }}]{% endfor %}",
        bos_token="<s>",
        eos_token="</s>",
    )
    assert "".join(s.text for s in tpl.render([ChatMessage("user", "x")])) == "[x]"


def test_template_that_transforms_content_falls_back_to_plain_rendering() -> None:
    tpl = ChatTemplate(
        "{% for m in messages %}{{ m['content'] | upper }}{% endfor %}", bos_token="", eos_token=""
    )
    segments = tpl.render([ChatMessage("user", "abc")])
    assert [(s.text, s.special) for s in segments] == [("ABC", True)]


def test_raise_exception_in_template_is_a_400() -> None:
    tpl = ChatTemplate("{{ raise_exception('roles must alternate') }}", bos_token="", eos_token="")
    with pytest.raises(InvalidRequestError, match="roles must alternate"):
        tpl.render([ChatMessage("user", "x")])
