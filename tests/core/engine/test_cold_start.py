"""Cold start: importing the app (or the engine module) must not load llama.cpp or numpy;
only loading a model does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from core.engine.llama import LlamaEngine

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


def test_validating_settings_does_not_import_the_web_stack() -> None:
    # Output patterns are validated with core.patterns; settings must not drag FastAPI in with
    # them, or `nimbus serve` starts the model load ~0.4 s later.
    probe = (
        "import sys; from core.settings import Settings;"
        "Settings(security={'output': {'extra_patterns': [r'secret-\\d{4}']}});"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in {'fastapi', 'starlette'}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


@pytest.mark.integration
def test_model_load_logs_stay_in_c_and_the_python_sink_comes_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import ctypes

    import llama_cpp
    from llama_cpp import _logger

    from core.engine import lowlevel
    from tests.conftest import model_settings

    path = LlamaEngine(model_settings()).resolve()
    lines: list[bytes] = []

    @llama_cpp.llama_log_callback  # type: ignore[untyped-decorator]
    def counting(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        lines.append(text)

    python_sink = _logger.llama_log_callback
    monkeypatch.setattr(_logger, "llama_log_callback", counting)
    llama_cpp.llama_log_set(counting, ctypes.c_void_p(0))
    try:
        with lowlevel.quiet_native_logs():
            model = lowlevel.Model(str(path), n_gpu_layers=0, use_mmap=True)
        model.close()
        assert lines == []  # ~1,000 lines went to the C sink, none took the GIL
        model = lowlevel.Model(str(path), n_gpu_layers=0, use_mmap=True)
        model.close()
        assert len(lines) > 100  # the Python sink is back once loading is over
    finally:  # `counting` is freed after the test: C must not keep pointing at it
        llama_cpp.llama_log_set(python_sink, ctypes.c_void_p(0))


@pytest.mark.integration
def test_warm_up_leaves_the_kv_cache_empty() -> None:
    import llama_cpp

    from core.engine import lowlevel
    from tests.conftest import model_settings

    path = LlamaEngine(model_settings()).resolve()
    model = lowlevel.Model(str(path), n_gpu_layers=0, use_mmap=True)
    ctx = lowlevel.Context(
        model, lowlevel.ContextConfig(n_ctx=256, n_batch=64, n_seq=2, n_threads=1)
    )
    try:
        ctx.warm_up(model.bos)
        assert llama_cpp.llama_memory_seq_pos_max(ctx.memory, 0) == -1
        assert ctx.batch_size == 0
    finally:
        ctx.close()
        model.close()


@pytest.mark.integration
def test_only_the_engine_thread_decodes_warm_up_included(monkeypatch: pytest.MonkeyPatch) -> None:
    # llama.cpp's OpenMP build gives each decoding thread its own worker team; with more workers
    # than cores libgomp stops spinning at barriers and decoding ran 3x slower in-process.
    import asyncio
    import threading

    from core.engine import lowlevel
    from core.engine.types import GenerationRequest, PromptSegment, SamplingParams
    from tests.conftest import model_settings

    callers: list[str] = []
    decode = lowlevel.Context.decode

    def recording(self: lowlevel.Context) -> int:
        callers.append(threading.current_thread().name)
        return decode(self)

    monkeypatch.setattr(lowlevel.Context, "decode", recording)
    engine = LlamaEngine(model_settings(engine={"slots": 2}))
    engine.load()

    async def generate() -> None:
        request = GenerationRequest(
            prompt=(PromptSegment("Hello", special=True),),
            max_tokens=4,
            sampling=SamplingParams(temperature=0),
        )
        async for _ in engine.submit(request):
            pass

    try:
        asyncio.run(generate())
    finally:
        engine.close()
    assert len(callers) >= 2  # the warm-up and the request's steps
    assert set(callers) == {"nimbus-engine"}


def test_a_failed_quiet_load_is_retried_with_llama_cpp_logs_on() -> None:
    from core.engine import lowlevel

    quiet_depths: list[int] = []

    def failing() -> int:
        quiet_depths.append(lowlevel._quiet_depth)
        raise ValueError("bad gguf")

    with pytest.raises(ValueError):
        lowlevel.load_quietly(failing)
    assert quiet_depths == [1, 0]  # first in the C sink, then with the Python sink (stderr)

    quiet_depths.clear()
    assert lowlevel.load_quietly(lambda: quiet_depths.append(lowlevel._quiet_depth) or 7) == 7
    assert quiet_depths == [1]
