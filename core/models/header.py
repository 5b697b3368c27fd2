"""Read what a GGUF file says about its model (metadata and tensor table), without llama.cpp."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import ModelLoadError
from core.sources.gguf_files import local_parts


@dataclass(frozen=True)
class ModelHeader:
    path: Path
    file_size: int  # every part of a split model together
    architecture: str
    name: str | None
    parameters: int
    quantization: str  # general.file_type, e.g. Q4_K_M (or the most common tensor type)
    tensor_types: dict[str, int]  # tensor type -> number of tensors
    tensor_bytes: int
    context_length: int | None  # the context the model was trained for
    layers: int
    heads: int
    kv_heads: tuple[int, ...]  # per layer (grouped-query attention: fewer than heads)
    embedding: int
    feed_forward: int
    key_length: int
    value_length: int
    vocab_size: int
    sliding_window: int | None
    chat_template: str | None
    parts: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def has_chat_template(self) -> bool:
        return bool(self.chat_template)


def read_header(path: Path) -> ModelHeader:
    """The header of the GGUF at ``path`` (the first part of a split model). ModelLoadError if
    it cannot be read."""
    from gguf import GGUFReader, LlamaFileType

    parts = local_parts(path)
    try:
        readers = [GGUFReader(p) for p in parts]
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{path}: cannot read the GGUF header: {exc}") from exc
    first = readers[0]
    meta = {name: _value(f) for name, f in first.fields.items() if not name.startswith("GGUF.")}
    arch = str(meta.get("general.architecture") or "unknown")

    def arch_key(key: str) -> Any:
        return meta.get(f"{arch}.{key}")

    tensors = [t for r in readers for t in r.tensors]
    types = Counter(t.tensor_type.name for t in tensors)
    layers = int(arch_key("block_count") or 0)
    heads = _first_int(arch_key("attention.head_count"), 0)
    kv = arch_key("attention.head_count_kv")
    kv_heads = _per_layer(kv if kv is not None else heads, layers)
    embedding = int(arch_key("embedding_length") or 0)
    head_dim = embedding // heads if heads else 0
    file_type = meta.get("general.file_type")
    try:
        quant = LlamaFileType(int(file_type)).name.removeprefix("MOSTLY_")  # type: ignore[arg-type]
    except (TypeError, ValueError):
        quant = types.most_common(1)[0][0] if types else "unknown"
    tokens = meta.get("tokenizer.ggml.tokens")
    window = arch_key("attention.sliding_window")
    return ModelHeader(
        path=path,
        file_size=sum(p.stat().st_size for p in parts),
        architecture=arch,
        name=_str_or_none(meta.get("general.name")),
        parameters=sum(int(t.n_elements) for t in tensors),
        quantization=quant,
        tensor_types=dict(types.most_common()),
        tensor_bytes=sum(int(t.n_bytes) for t in tensors),
        context_length=_int_or_none(arch_key("context_length")),
        layers=layers,
        heads=heads,
        kv_heads=kv_heads,
        embedding=embedding,
        feed_forward=_first_int(arch_key("feed_forward_length"), 4 * embedding),
        key_length=int(arch_key("attention.key_length") or head_dim),
        value_length=int(arch_key("attention.value_length") or head_dim),
        vocab_size=len(tokens) if isinstance(tokens, list) else int(arch_key("vocab_size") or 0),
        sliding_window=_int_or_none(window),
        chat_template=_str_or_none(meta.get("tokenizer.chat_template")),
        parts=len(parts),
    )


def _value(f: Any) -> Any:
    try:
        return f.contents()
    except Exception:  # a type this gguf version cannot decode: not needed for inspection
        return None


def _per_layer(value: Any, layers: int) -> tuple[int, ...]:
    if isinstance(value, Sequence) and not isinstance(value, str):
        return tuple(int(v) for v in value)
    return (int(value),) * layers


def _first_int(value: Any, default: int) -> int:
    if isinstance(value, Sequence) and not isinstance(value, str):
        return int(max(value)) if value else default
    return int(value) if value is not None else default


def _int_or_none(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) else None


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
