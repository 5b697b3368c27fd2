"""What a pull produced: the local files of one model, with their sizes and sha256."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PulledFile:
    path: Path
    size: int
    sha256: str | None  # None only where nothing was hashed (a non-LFS Hub file)


@dataclass(frozen=True)
class PulledModel:
    """A verified local model: one file, or every part of a split GGUF (the first loads)."""

    source: str
    files: tuple[PulledFile, ...]
    revision: str | None = None  # the Hub commit it came from

    @property
    def path(self) -> Path:
        return self.files[0].path

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)
