"""GGUF file names: split models (``*-00001-of-00003.gguf``), quantization tags, and picking the
one model among the GGUF files of a repository or a directory."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from core.errors import ModelLoadError

# llama.cpp's split naming (gguf-split): PREFIX-00001-of-00003.gguf; it loads every part when
# given the first one.
_SPLIT = re.compile(r"^(?P<prefix>.+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)
# Vision projectors and similar companions ship as GGUF too but are not a language model.
_COMPANION = re.compile(r"(^|/)(mmproj|imatrix)[^/]*$", re.IGNORECASE)


def split_parts(name: str) -> list[str] | None:
    """Every part's name, first first, when ``name`` is one part of a split GGUF; else None."""
    match = _SPLIT.match(name)
    if match is None:
        return None
    count = int(match["count"])
    if count < 1 or int(match["index"]) > count:
        return None
    return [f"{match['prefix']}-{i:05d}-of-{count:05d}.gguf" for i in range(1, count + 1)]


def model_groups(names: Iterable[str]) -> list[list[str]]:
    """The GGUF models among ``names`` (repository paths): one list of file names per model,
    a split model's parts in order. A split model with a part missing is left out."""
    present = {n for n in names if n.lower().endswith(".gguf") and not _COMPANION.search(n)}
    groups: list[list[str]] = []
    seen: set[str] = set()
    for name in sorted(present):
        if name in seen:
            continue
        parts = split_parts(name)
        if parts is None:
            groups.append([name])
            seen.add(name)
        elif all(p in present for p in parts):
            groups.append(parts)
            seen.update(parts)
    return groups


def quant_matches(path: str, quant: str) -> bool:
    """Does ``path`` carry the quantization tag ``quant`` (case-insensitive, as a whole tag:
    Q4_K does not match Q4_K_M, F16 does not match BF16)?"""
    pattern = rf"(?<![A-Za-z0-9]){re.escape(quant)}(?![A-Za-z0-9_])"
    return re.search(pattern, path, re.IGNORECASE) is not None


def describe(groups: Sequence[Sequence[str]]) -> str:
    if not groups:
        return "no GGUF files"
    return ", ".join(g[0] if len(g) == 1 else f"{g[0]} (+{len(g) - 1} parts)" for g in groups)


def pick_model(
    names: Iterable[str], *, source: str, quant: str | None = None, where: str = "the repository"
) -> list[str]:
    """The one model among ``names`` (optionally the one tagged ``quant``): its file names, the
    first to load first. A clear error listing what is there when none or several match."""
    groups = model_groups(names)
    if quant is not None:
        chosen = [g for g in groups if quant_matches(g[0], quant)]
        if not chosen:
            raise ModelLoadError(
                f"model {source!r}: no GGUF in {where} carries the quantization tag "
                f"{quant!r}; it has: {describe(groups)}"
            )
    else:
        chosen = groups
        if not chosen:
            raise ModelLoadError(f"model {source!r}: {where} holds no GGUF model")
    if len(chosen) > 1:
        hint = "a more specific tag" if quant else "a quantization (:Q4_K_M) or a file path"
        raise ModelLoadError(
            f"model {source!r}: {len(chosen)} GGUF models in {where} match ({describe(chosen)}); "
            f"name {hint}"
        )
    return chosen[0]


def pick_in_directory(directory: Path, *, source: str) -> Path:
    """The first file of the one GGUF model in ``directory`` (a baked image holds exactly one)."""
    names = [p.relative_to(directory).as_posix() for p in directory.rglob("*.gguf") if p.is_file()]
    parts = pick_model(names, source=source, where=f"directory {directory}")
    return directory / parts[0]


def local_parts(first: Path) -> list[Path]:
    """The files a local model consists of: itself, or every part of a split model."""
    names = split_parts(first.name)
    if names is None:
        return [first]
    return [first.with_name(n) for n in names]
