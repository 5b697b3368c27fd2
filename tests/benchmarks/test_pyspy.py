"""benchmarks.pyspy: py-spy's raw samples grouped by thread role and where they were."""

from __future__ import annotations

import math
from pathlib import Path

from benchmarks.http_load import StreamRun, decode_phase_rate
from benchmarks.pyspy import GIL, IDLE, markdown, summarise

ENGINE = (
    "thread (101): nimbus-engine;thread_run (libpython3.11.so.1.0);_bootstrap (threading.py:1002)"
    ";_loop (core/engine/batched.py:170);_step (core/engine/batched.py:305)"
)
LOOP = "thread (100): MainThread;run (asyncio/runners.py:118);run_until_complete (loop.c:35410)"
RAW = "\n".join(
    [
        f"{ENGINE};decode (core/engine/lowlevel.py:223);PyCFuncPtr_call (_ctypes.c:4201)"
        ";llama_decode (libllama.so);ggml_graph_compute (libggml-cpu.so) 60",
        f"{ENGINE};_on_token (core/engine/batched.py:350);piece (core/engine/lowlevel.py:128) 7",
        f"{ENGINE};sample (core/engine/lowlevel.py:290);llama_sampler_sample (libllama.so) 5",
        f"{LOOP};uv_run (core.c:464);uv__io_poll (linux.c:1452);epoll_pwait (libc.so.6) 50",
        f"{LOOP};send (uvicorn/protocols/http/httptools_impl.py:544);write (libc.so.6) 20",
        f"{LOOP};send (uvicorn/protocols/http/httptools_impl.py:544)"
        ";pthread_cond_wait (libc.so.6);0x7f77a68a3f16 (libc.so.6) 8",
        "thread (555): AnyIO worker thread;run (threading.py:982);sum_it (x.py:3) 0",
    ]
)


def test_samples_are_grouped_by_thread_role_and_bucket(tmp_path: Path) -> None:
    raw = tmp_path / "raw.txt"
    raw.write_text(RAW + "\n")
    summary = summarise(raw, {"101": "engine", "100": "event loop"})
    engine, loop = summary["engine"], summary["event loop"]
    assert engine["llama_decode (C)"] == 60
    assert engine["sampler chain (C)"] == 5
    assert engine["piece (core/engine/lowlevel.py)"] == 7  # native calls count to the caller
    assert loop[IDLE] == 50 and loop[GIL] == 8
    assert loop["send (uvicorn/protocols/http/httptools_impl.py)"] == 20
    table = markdown(summary)
    # Shares of running samples: idle ones left out (60 + 7 + 5 + 20 + 8 = 100).
    assert "| **engine** | (all) | 72.0% |" in table
    assert "| event loop | `waiting for the GIL` | 8.0% |" in table
    assert IDLE not in table


def test_decode_phase_is_the_window_where_every_stream_decodes() -> None:
    a = StreamRun(0.0, [1.0, 2.0, 3.0, 4.0, 5.0])
    b = StreamRun(0.0, [2.0, 2.5, 3.0, 3.5, 4.0, 9.0])
    # From b's first token to a's last, (2, 5]: a 3, 4, 5; b 2.5, 3, 3.5, 4 -> 7 tokens in 3 s.
    assert decode_phase_rate([a, b]) == 7 / 3
    # A stream that never decoded: no window in which all did.
    assert math.isnan(decode_phase_rate([a, StreamRun(0.0, [1.0])]))
