"""The contenders, started the same way: one model, one thread count, one context size."""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class BenchConfig:
    model: str
    threads: int
    n_ctx: int
    slots: int
    max_tokens: int
    repeats: int
    streams: tuple[int, ...]
    prompts: tuple[str, ...]
    long_prompt: str
    # The checkout whose core/ the nimbus HTTP peer runs (default: this one). Another commit's
    # checkout measures before/after side by side in one run.
    nimbus_tree: str = str(ROOT)


@dataclass(frozen=True)
class Peer:
    key: str
    label: str
    kind: str  # "inproc" (benchmarks.inproc), "http" (a server process) or "limit" (llama.cpp's)


PEERS = {
    "raw": Peer("raw", "llama-cpp-python (in-process)", "inproc"),
    "engine": Peer("engine", "nimbus engine (in-process)", "inproc"),
    "nimbus": Peer("nimbus", "nimbus (HTTP)", "http"),
    "llama_cpp_server": Peer("llama_cpp_server", "llama_cpp.server (HTTP)", "http"),
    "llama_server": Peer("llama_server", "llama.cpp llama-server (HTTP)", "http"),
    # llama.cpp's own benchmarks, no HTTP, no sampling: the ceiling beside every figure.
    "llama_limit": Peer(
        "llama_limit", "llama.cpp limit (llama-bench, llama-batched-bench)", "limit"
    ),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def python_server_missing() -> str | None:
    needed = ("sse_starlette", "starlette_context", "pydantic_settings", "yaml")
    missing = [m for m in needed if importlib.util.find_spec(m) is None]
    if missing:
        return f"llama_cpp.server needs {', '.join(missing)}: pip install 'nimbus-llm[bench]'"
    return None


def server_command(
    peer: Peer, cfg: BenchConfig, port: int, llama_server: Path | None, *, probe: bool = False
) -> list[str]:
    """The peer's start command. ``probe``: nimbus runs under benchmarks.probe, which measures
    its Python CPU time per token (cold starts are timed without it)."""
    t, ctx = str(cfg.threads), str(cfg.n_ctx)
    if peer.key == "nimbus":
        nimbus = Path(sys.executable).with_name("nimbus")
        exe = [str(nimbus)] if nimbus.exists() else [sys.executable, "-m", "core.cli"]
        if probe:  # by path: another --nimbus-tree has its own (older) benchmarks package
            exe = [sys.executable, str(ROOT / "benchmarks" / "probe.py")]
        return [*exe, "serve", "--port", str(port), "--model", cfg.model, "--threads", t]
    if peer.key == "llama_cpp_server":
        # interrupt_requests off: by default a second stream aborts the first one.
        return [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            cfg.model,
            "--port",
            str(port),
            "--n_ctx",
            ctx,
            "--n_threads",
            t,
            "--n_threads_batch",
            t,
            "--interrupt_requests",
            "False",
        ]
    if peer.key == "llama_server":
        assert llama_server is not None
        return [
            str(llama_server),
            "-m",
            cfg.model,
            "--port",
            str(port),
            "-c",
            ctx,
            "-np",
            str(cfg.slots),
            "-kvu",
            "-t",
            t,
            "-tb",
            t,
            "--no-webui",
            "--log-disable",
        ]
    raise ValueError(peer.key)


def server_env(cfg: BenchConfig) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "NIMBUS_ENGINE__N_CTX": str(cfg.n_ctx),
            "NIMBUS_ENGINE__SLOTS": str(cfg.slots),
            "NIMBUS_LIMITS__MAX_QUEUE": "64",
            "NIMBUS_LIMITS__MAX_TOKENS_CAP": "8192",
            "NIMBUS_SERVER__LOG_LEVEL": "warning",
            # The counting prompts produce nothing but digit runs, which the output redactor must
            # hold back until they cannot be a card number: several tokens then travel as one SSE
            # chunk, and a chunk-counting client would under-count. Peers don't redact either.
            "NIMBUS_SECURITY__OUTPUT__ENABLED": "false",
            "PYTHONPATH": cfg.nimbus_tree,
        }
    )
    return env


def start(
    cmd: list[str], env: dict[str, str], log: Path, cwd: Path = ROOT
) -> subprocess.Popen[bytes]:
    out = log.open("wb")
    return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=cwd)


def peak_rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def process_cpu_s(pid: int) -> float:
    """CPU seconds every thread of a process has used so far (schedstat: nanoseconds). On a busy
    machine a start-up's CPU time moves far less than its wall time: the measure for comparing
    one start-up change with another there."""
    total = 0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                total += int((task / "schedstat").read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue  # a thread that just ended
    except OSError:
        return float("nan")
    return total / 1e9


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def resolve_llama_tools(
    build: bool, say: Callable[[str], None]
) -> tuple[dict[str, Path] | None, str]:
    """({program: path}, '') for llama-server, llama-bench and llama-batched-bench, or
    (None, why they are skipped)."""
    if not build:
        return None, "skipped (--no-build)"
    from benchmarks.build_llama_server import BuildError, llama_tools

    if shutil.which("cmake") is None:
        return None, "skipped: cmake is not installed"
    try:
        return llama_tools(say=say), ""
    except BuildError as exc:
        return None, f"skipped: the build failed ({exc})"
