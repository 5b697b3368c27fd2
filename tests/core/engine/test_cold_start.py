"""Cold start: importing the app (or the engine module) must not load llama.cpp or numpy;
only loading a model does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def _loaded_after(code: str) -> list[str]:
    probe = (
        f"{code}; import sys;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in {'llama_cpp', 'numpy'}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return eval(out.stdout.strip())  # a printed list of module names


def test_importing_the_app_and_engine_does_not_load_llama_cpp() -> None:
    assert _loaded_after("import core.app, core.cli, core.engine.llama") == []


def test_building_an_engine_without_loading_does_not_load_llama_cpp() -> None:
    code = (
        "from core.engine.llama import LlamaEngine; from core.settings import Settings;"
        "e = LlamaEngine(Settings()); e.stats()"
    )
    assert _loaded_after(code) == []
