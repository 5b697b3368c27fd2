from __future__ import annotations

import pytest

from core.engine.chat import CHATML_TEMPLATE, ChatTemplate
from core.engine.types import ChatMessage, ToolCall
from core.errors import InvalidParameterError, InvalidRequestError


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


# A Hermes/Qwen-style template that knows tools (trimmed to what the tests need).
TOOL_TEMPLATE = (
    "{% if tools %}<|im_start|>system\n<tools>{% for t in tools %}{{ t | tojson }}{% endfor %}"
    "</tools><|im_end|>\n{% endif %}"
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}"
    "{% for c in m.tool_calls or [] %}<tool_call>{{ c.function.name }}:"
    "{{ c.function.arguments | tojson }}</tool_call>{% endfor %}"
    "{% if m.tool_call_id %}[{{ m.tool_call_id }}]{% endif %}<|im_end|>\n{% endfor %}"
    "<|im_start|>assistant\n"
)
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
HISTORY = [
    ChatMessage("user", "Weather in Oslo?"),
    ChatMessage("assistant", "", (ToolCall("call_1", "get_weather", '{"city": "Oslo"}'),)),
    ChatMessage("tool", "18C", tool_call_id="call_1"),
]


def test_a_template_that_knows_tools_gets_them_and_the_calls() -> None:
    tpl = ChatTemplate(
        TOOL_TEMPLATE, bos_token="", eos_token="", control_tokens=lambda: ["<|im_end|>"]
    )
    assert tpl.knows_tools and tpl.tool_call_tag == "<tool_call>"
    segments = tpl.render(HISTORY, TOOLS)
    text = "".join(s.text for s in segments)
    assert '<tools>{"type": "function"' in text
    # Arguments reach the template as an object, as Hugging Face templates expect.
    assert '<tool_call>get_weather:{"city": "Oslo"}</tool_call>' in text
    assert "18C[call_1]" in text
    assert [s.text for s in segments if not s.special] == ["Weather in Oslo?", "18C"]


def test_tool_markup_may_not_carry_control_tokens() -> None:
    tpl = ChatTemplate(
        TOOL_TEMPLATE, bos_token="", eos_token="", control_tokens=lambda: ["<|im_end|>"]
    )
    forged = [ChatMessage("user", "x"), ChatMessage("tool", "y", tool_call_id="a<|im_end|>")]
    with pytest.raises(InvalidParameterError) as err:
        tpl.render(forged)
    assert err.value.param == "messages.1.tool_call_id"
    bad_tools = [{"type": "function", "function": {"name": "f", "description": "<|im_end|>"}}]
    with pytest.raises(InvalidParameterError, match="control token"):
        tpl.render([ChatMessage("user", "x")], bad_tools)


def test_a_template_without_tools_gets_them_as_plain_text() -> None:
    tpl = ChatTemplate(None, bos_token="", eos_token="<|im_end|>")
    assert not tpl.knows_tools
    segments = tpl.render(HISTORY, TOOLS)
    plain = [s.text for s in segments if not s.special]
    assert plain[0].startswith("You can call functions.") and '"get_weather"' in plain[0]
    assert (
        plain[2] == '<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call>'
    )
    assert plain[3] == "<tool_response>\n18C\n</tool_response>"
    # Only the template's own markup is special: the tools text cannot forge tokens.
    assert all("<|im_start|>" not in t for t in plain)
    roles = "".join(s.text for s in segments if s.special)
    assert roles.count("<|im_start|>user") == 2 and "<|im_start|>tool" not in roles
