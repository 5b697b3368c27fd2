"""Python CPU time per generated token, measured inside a nimbus process.

Every Python thread's CPU time (``/proc/self/task/<tid>/schedstat``, nanoseconds) minus what the
engine thread spends inside ``llama_decode`` (``time.thread_time_ns`` around each call): the CPU
that Python-side work per token (sampling calls, detokenising, stop matching, SSE, the event loop,
HTTP) takes from llama.cpp's threads. llama.cpp's own worker threads are not Python threads and
are reported apart ("native").

In a server: ``python -m benchmarks.probe <nimbus CLI arguments>`` runs ``nimbus`` with the probe
installed; on SIGUSR1 it writes a snapshot (JSON) to ``$NIMBUS_BENCH_PROBE`` (the harness diffs
two). In-process: ``CpuProbe().install()`` before the engine loads, then ``snapshot()``."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

ENV = "NIMBUS_BENCH_PROBE"
# Where a generated token's CPU time went: the per-token keys of ``per_token``, in table order.
PARTS = (
    "python",
    "event loop",
    "engine (outside decode)",
    "other threads",
    "KV save/restore",
    "decode",
    "native",
)


def thread_cpu_ns(native_id: int | None) -> int:
    """CPU time of one thread of this process, in ns (0 when the thread is gone)."""
    if native_id is None:
        return 0
    try:
        with open(f"/proc/self/task/{native_id}/schedstat") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def process_cpu_ns() -> int:
    """CPU time of every thread of this process, live and ended."""
    return time.process_time_ns()


class CpuProbe:
    def __init__(self) -> None:
        self.decode_ns = 0
        self.decodes = 0
        self.decode_thread: int | None = None
        # Each step by kind: decode-only (every row a running stream's last token, each asking
        # for logits) or carrying a prompt chunk; tokens fed and wall time of each kind.
        self.evaluated = 0
        self.decode_steps = 0
        self.decode_rows = 0
        self.decode_wall_ns = 0
        self.prompt_steps = 0
        self.prompt_wall_ns = 0
        # Copying idle slots' KV cells to and from host memory: llama.cpp's work on the engine
        # thread, like llama_decode, so it is not counted as Python.
        self.kv_copy_ns = 0
        self._originals: dict[str, Any] = {}

    def install(self) -> None:
        """Time each ``llama_decode`` call on the thread that makes it (the engine thread)."""
        from core.engine import lowlevel

        original = lowlevel.Context.decode
        self._originals = {
            name: getattr(lowlevel.Context, name) for name in ("decode", "seq_state", "seq_restore")
        }
        probe = self

        def decode(ctx: Any) -> int:
            rows, outputs = ctx.batch_size, ctx.batch_outputs
            started, wall = time.thread_time_ns(), time.perf_counter_ns()
            try:
                return original(ctx)
            finally:
                wall = time.perf_counter_ns() - wall
                probe.decode_ns += time.thread_time_ns() - started
                probe.decodes += 1
                probe.decode_thread = threading.get_native_id()
                probe.evaluated += rows
                if rows == outputs:
                    probe.decode_steps += 1
                    probe.decode_rows += rows
                    probe.decode_wall_ns += wall
                else:
                    probe.prompt_steps += 1
                    probe.prompt_wall_ns += wall

        def copying(name: str) -> Any:
            copy = self._originals[name]

            def timed(ctx: Any, *args: Any) -> Any:
                started = time.thread_time_ns()
                try:
                    return copy(ctx, *args)
                finally:
                    probe.kv_copy_ns += time.thread_time_ns() - started

            return timed

        lowlevel.Context.decode = decode  # type: ignore[method-assign]
        lowlevel.Context.seq_state = copying("seq_state")  # type: ignore[method-assign]
        lowlevel.Context.seq_restore = copying("seq_restore")  # type: ignore[method-assign]

    def uninstall(self) -> None:
        from core.engine import lowlevel

        for name, original in self._originals.items():
            setattr(lowlevel.Context, name, original)
        self._originals = {}

    def snapshot(self) -> dict[str, Any]:
        """Every live Python thread's CPU time by native id, with a role name."""
        threads: dict[str, tuple[str, int]] = {}
        for t in threading.enumerate():
            if t.native_id is None:
                continue
            if t is threading.main_thread():
                role = "event loop"
            elif t.native_id == self.decode_thread or t.name == "nimbus-engine":
                role = "engine"
            else:
                role = "other"
            threads[str(t.native_id)] = (role, thread_cpu_ns(t.native_id))
        return {
            "threads": threads,
            "decode_ns": self.decode_ns,
            "decodes": self.decodes,
            "evaluated": self.evaluated,
            "decode_steps": self.decode_steps,
            "decode_rows": self.decode_rows,
            "decode_wall_ns": self.decode_wall_ns,
            "prompt_steps": self.prompt_steps,
            "prompt_wall_ns": self.prompt_wall_ns,
            "kv_copy_ns": self.kv_copy_ns,
            "process_ns": process_cpu_ns(),
        }


def per_token(before: dict[str, Any], after: dict[str, Any], tokens: int) -> dict[str, float]:
    """µs of CPU per generated token between two snapshots, by where it went.

    ``python``: every Python thread minus the engine thread's time inside llama.cpp's
    llama_decode and KV copies; its parts ``event loop``, ``engine (outside decode)`` and
    ``other threads`` (pools); ``KV save/restore``: the engine thread copying idle slots' cells
    to and from host memory; ``decode``: the engine thread inside llama_decode; ``native``: the
    rest of the process (llama.cpp's worker threads, and threads that ended between the
    snapshots); and the step split of ``steps``."""
    if tokens <= 0:
        return {}
    spent = {"event loop": 0, "engine": 0, "other": 0}
    for tid, (role, ns) in after["threads"].items():
        _, was = before["threads"].get(tid, (role, 0))
        spent[role] += int(ns) - int(was)
    decode = int(after["decode_ns"]) - int(before["decode_ns"])
    process = int(after["process_ns"]) - int(before["process_ns"])
    kv_copy = int(after.get("kv_copy_ns", 0)) - int(before.get("kv_copy_ns", 0))
    outside = spent["engine"] - decode - kv_copy
    us = 1000.0 * tokens
    native = process - sum(spent.values())
    return {
        "python": (spent["event loop"] + outside + spent["other"]) / us,
        "event loop": spent["event loop"] / us,
        "engine (outside decode)": outside / us,
        "other threads": spent["other"] / us,
        "KV save/restore": kv_copy / us,
        "decode": decode / us,
        "native": native / us,
        **steps(before, after, tokens, decode + native),
    }


def steps(
    before: dict[str, Any], after: dict[str, Any], tokens: int, llama_ns: int
) -> dict[str, float]:
    """Where the decode calls' time went between two snapshots: tokens llama.cpp evaluated per
    token generated (prompt tokens make it above 1), llama.cpp's CPU per evaluated token
    (``llama_ns``: the engine thread inside llama_decode plus the worker threads), and the
    decode-only steps apart from those that carried a prompt chunk: rows per step, their rate,
    and the share of the decode calls' wall time spent in prompt steps."""

    def delta(key: str) -> int:
        return int(after.get(key, 0)) - int(before.get(key, 0))

    evaluated, rows, decode_wall = delta("evaluated"), delta("decode_rows"), delta("decode_wall_ns")
    prompt_wall, decode_steps = delta("prompt_wall_ns"), delta("decode_steps")
    if evaluated <= 0 or tokens <= 0:
        return {}
    out = {
        "evaluated per generated": evaluated / tokens,
        "llama.cpp per evaluated": llama_ns / (1000.0 * evaluated),
        "prompt steps share": prompt_wall / max(1, prompt_wall + decode_wall),
    }
    if decode_steps > 0 and decode_wall > 0:
        out["decode-only rows per step"] = rows / decode_steps
        out["decode-only tok/s"] = rows / (decode_wall / 1e9)
    return out


def _serve(argv: list[str]) -> int:
    from core.cli import main

    out = os.environ.get(ENV)
    probe = CpuProbe()
    probe.install()
    if out:

        def dump(*_: Any) -> None:
            tmp = Path(out + ".tmp")
            tmp.write_text(json.dumps(probe.snapshot()))
            tmp.replace(out)

        signal.signal(signal.SIGUSR1, dump)
    return main(argv)


def request_snapshot(pid: int, path: Path, timeout: float = 10.0) -> dict[str, Any]:
    """Ask a ``python -m benchmarks.probe`` server for a snapshot and wait for it."""
    path.unlink(missing_ok=True)
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            data: dict[str, Any] = json.loads(path.read_text())
            return data
        time.sleep(0.01)
    raise TimeoutError(f"no CPU snapshot from process {pid} within {timeout:.0f}s")


if __name__ == "__main__":
    # Run by path: this folder is not a place to import modules from (PYTHONPATH says which
    # checkout's core/ to serve).
    if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
        del sys.path[0]
    sys.exit(_serve(sys.argv[1:]))
