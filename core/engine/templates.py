"""Chat templates nimbus ships, and reading ``engine.chat_template`` (a built-in format's name,
a template file, or Jinja text)."""

from __future__ import annotations

from pathlib import Path

from core.errors import ModelLoadError

# ChatML (<|im_start|>role ... <|im_end|>): SmolLM2, Qwen and many small models.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Gemma's turn format (<start_of_turn>user|model ... <end_of_turn>). Gemma has no system role:
# a system message opens the first user turn. Turns must alternate, starting with the user.
GEMMA_TEMPLATE = (
    "{{ bos_token }}"
    "{% if messages and messages[0]['role'] == 'system' %}"
    "{% set system = messages[0]['content'] %}{% set turns = messages[1:] %}"
    "{% else %}{% set system = none %}{% set turns = messages %}{% endif %}"
    "{% for message in turns %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('the gemma format needs user and assistant turns to alternate, "
    "starting with the user') }}"
    "{% endif %}"
    "{{ '<start_of_turn>' + ('model' if message['role'] == 'assistant' else 'user') + '\n' }}"
    "{% if loop.first and system is not none %}{{ system + '\n\n' }}{% endif %}"
    "{{ message['content'] + '<end_of_turn>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)

_BUILTIN = {"chatml": CHATML_TEMPLATE, "gemma": GEMMA_TEMPLATE}
MAX_TEMPLATE_BYTES = 1 << 20


def builtin_names() -> list[str]:
    return sorted(_BUILTIN)


def load_chat_template(value: str | None) -> str | None:
    """The Jinja text ``engine.chat_template`` names, or None when it is unset.

    Jinja text (it holds ``{{`` or ``{%``) is used as it is; a built-in name (``chatml``,
    ``gemma``) gives that format; anything else must be a readable template file."""
    if value is None or not value.strip():
        return None
    if "{{" in value or "{%" in value:
        return value
    name = value.strip()
    if name.lower() in _BUILTIN:
        return _BUILTIN[name.lower()]
    path = Path(name).expanduser()
    try:
        if path.stat().st_size > MAX_TEMPLATE_BYTES:
            raise ModelLoadError(f"chat template file {path} is larger than 1 MiB")
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelLoadError(
            f"engine.chat_template {name!r} is neither Jinja text, a built-in format "
            f"({', '.join(builtin_names())}) nor a readable template file ({exc})"
        ) from exc
