"""Where a server's CPU goes while it streams: py-spy samples of every thread, summarised.

``Profiler(pid, raw)`` starts ``py-spy record`` on a running process (native frames included,
so time inside llama.cpp is told apart from Python); ``stop()`` ends it and ``summary()`` groups
the samples by thread role (the event loop, the engine thread, others) and, inside each, by
where they were: ``llama_decode`` (the model itself), llama.cpp's sampler chain, or the Python
function at the top of the stack (native calls made from Python count to their caller)."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<name>.*) \((?P<where>[^()]*)\)$")
_THREAD = re.compile(r"^thread \((?P<tid>0x[0-9a-fA-F]+|\d+)\)")
# Native frames that are their own bucket: what a token costs inside llama.cpp.
_NATIVE = (("llama_decode", "llama_decode (C)"), ("llama_sampler_sample", "sampler chain (C)"))
# Leaf frames of a thread that is not running: py-spy's idle filter does not see through
# native stacks, so these are told apart here and left out of the shares.
IDLE = "idle (waiting for I/O)"
GIL = "waiting for the GIL"
_WAITS = (
    ("epoll_wait", IDLE),
    ("epoll_pwait", IDLE),
    ("pthread_cond_wait", GIL),
    ("pthread_cond_timedwait", GIL),
    ("take_gil", GIL),
)


def py_spy() -> str | None:
    exe = Path(sys.executable).with_name("py-spy")
    return str(exe) if exe.exists() else shutil.which("py-spy")


class Profiler:
    def __init__(self, pid: int, raw: Path, *, rate: int = 200, native: bool = True) -> None:
        exe = py_spy()
        if exe is None:
            raise RuntimeError("py-spy is not installed (pip install 'nimbus-llm[bench]')")
        self.raw = raw
        cmd = [exe, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw"]
        cmd += ["--threads", "--output", str(raw)] + (["--native"] if native else [])
        self.log = raw.with_suffix(".log")
        self._proc = subprocess.Popen(cmd, stdout=self.log.open("wb"), stderr=subprocess.STDOUT)

    def stop(self) -> None:
        self._proc.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
        try:
            self._proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        if not self.raw.exists():
            tail = self.log.read_text(errors="replace")[-400:]
            raise RuntimeError(f"py-spy wrote no profile: {tail}")


def _python_frame(where: str) -> bool:
    return ".py" in where or where.startswith("<")


def _label(frames: list[str]) -> str:
    """The bucket of one stack (outermost frame first)."""
    for frame in frames[-3:]:
        for needle, bucket in _WAITS:
            if frame.startswith(needle + " "):
                return bucket
    for frame in frames:
        for needle, bucket in _NATIVE:
            if frame.startswith(needle + " ") or frame == needle:
                return bucket
    for frame in reversed(frames):
        m = _FRAME.match(frame)
        if m and _python_frame(m["where"]):
            where = m["where"].rsplit(":", 1)[0]
            for marker in ("site-packages/", "/nimbus-llm/", "/core/", "/benchmarks/"):
                if marker in where:
                    where = where.split(marker, 1)[1]
                    break
            return f"{m['name']} ({where})"
    return "native (no Python frame)"


def summarise(raw: Path, roles: dict[str, str]) -> dict[str, Counter[str]]:
    """{thread role: Counter(bucket -> samples)}; ``roles`` maps native thread id -> role
    (threads the map does not name are 'native threads': llama.cpp's workers)."""
    out: dict[str, Counter[str]] = {}
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        m = _THREAD.match(frames[0])
        if m is None:
            continue
        tid = m["tid"]
        tid = str(int(tid, 16)) if tid.startswith("0x") else tid
        role = roles.get(tid, "native threads")
        out.setdefault(role, Counter())[_label(frames[1:])] += int(count)
    return out


def markdown(summary: dict[str, Counter[str]], top: int = 12) -> str:
    """Shares of the samples in which a thread was running (waiting for the GIL counts: it is
    time a thread wanted to run)."""
    total = sum(n for c in summary.values() for b, n in c.items() if b != IDLE) or 1
    lines = ["| thread | where | share of the running samples |", "|---|---|---|"]
    order = ["engine", "event loop", "other", "native threads"]
    for role in sorted(summary, key=lambda r: order.index(r) if r in order else len(order)):
        counts = Counter({b: n for b, n in summary[role].items() if b != IDLE})
        n = sum(counts.values())
        lines.append(f"| **{role}** | (all) | {100 * n / total:.1f}% |")
        for bucket, samples in counts.most_common(top):
            lines.append(f"| {role} | `{bucket}` | {100 * samples / total:.1f}% |")
    return "\n".join(lines) + "\n"
