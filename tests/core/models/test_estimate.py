"""The memory estimate against reality: the peak resident memory of `nimbus serve` after
concurrent requests, for the bundled model and Gemma 3 270M, at two context/slot settings."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from core.models.estimate import MB, estimate_memory, kv_cache_bytes
from core.models.header import read_header
from core.sources import bundled_model_path
from tests.conftest import free_port

NIMBUS = str(Path(sys.executable).parent / "nimbus")
PROMPT = " ".join(f"Item {i} of the list is a short line of text." for i in range(5))


def test_kv_cache_follows_llama_cpp_for_both_models(gemma_gguf: Path) -> None:
    # llama.cpp's own report for these models at n_ctx 2048: "KV buffer size = 45.00 MiB"
    # (SmolLM2: 30 layers x 3 KV heads x 64) and 6.00 + 30.00 MiB (Gemma 3: 18 layers, one KV
    # head of 256, sliding-window layers at full size).
    assert kv_cache_bytes(read_header(bundled_model_path()), 2048) == 45 * MB
    assert kv_cache_bytes(read_header(gemma_gguf), 2048) == 36 * MB


@contextmanager
def serving(model: Path, n_ctx: int, slots: int) -> Iterator[tuple[str, int]]:
    port = free_port()
    env = {
        **os.environ,
        "NIMBUS_ENGINE__N_CTX": str(n_ctx),
        "NIMBUS_ENGINE__SLOTS": str(slots),
        "NIMBUS_ENGINE__N_THREADS": "2",
        "NIMBUS_SERVER__LOG_LEVEL": "warning",
    }
    proc = subprocess.Popen(
        [NIMBUS, "serve", "--model", str(model), "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            try:
                if httpx.get(f"{base}/api/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        yield base, proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize(("n_ctx", "slots"), [(2048, 4), (8192, 8)])
@pytest.mark.parametrize("which", ["bundled", "gemma"])
def test_estimate_is_within_20_percent_of_measured_rss(
    which: str, n_ctx: int, slots: int, gemma_gguf: Path
) -> None:
    model = bundled_model_path() if which == "bundled" else gemma_gguf
    header = read_header(model)
    estimate = estimate_memory(header, n_ctx=n_ctx, slots=slots)
    with serving(model, n_ctx, slots) as (base, pid):
        # Every slot busy at once: prompts prefilled together, then decoded together.
        def complete(i: int) -> int:
            body = {"prompt": f"{PROMPT} {i}", "max_tokens": 4, "temperature": 0}
            return httpx.post(f"{base}/v1/completions", json=body, timeout=300).status_code

        with ThreadPoolExecutor(slots) as pool:
            assert set(pool.map(complete, range(slots))) == {200}
        measured = peak_rss(pid)
    error = (estimate.total - measured) / measured
    print(
        f"{which} ctx={n_ctx} slots={slots}: estimate {estimate.total / MB:.0f} MiB, "
        f"measured {measured / MB:.0f} MiB ({error:+.1%})"
    )
    assert abs(error) <= 0.20
