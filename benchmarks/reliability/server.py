"""The server under test: `nimbus serve` in a child process (its defaults unless the scenario
says otherwise), on a free loopback port, with its CPU time and RSS read from /proc."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cpu_s(self) -> float:
        """User + system CPU seconds of the server process so far."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICKS

    def rss_mb(self) -> float:
        pages = int(Path(f"/proc/{self.process.pid}/statm").read_text().split()[1])
        return pages * _PAGE / 1e6

    def health(self) -> dict[str, object]:
        r = httpx.get(f"{self.base_url}/api/health", timeout=30)
        return dict(r.json())


def _wait_ready(server: Server, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"nimbus serve exited early; see {server.log}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{server.base_url}/api/health", timeout=5).status_code == 200:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nimbus serve was not ready within {timeout} s; see {server.log}")


@contextlib.contextmanager
def serve(env: dict[str, str] | None = None, *, log_dir: Path, name: str) -> Iterator[Server]:
    """`nimbus serve` on 127.0.0.1 with ``env`` (NIMBUS_* variables) over the current
    environment; stopped (SIGINT, then SIGKILL) when the block ends."""
    port = free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"server-{name}.log"
    child_env = {
        k: v for k, v in os.environ.items() if not k.startswith("NIMBUS_")
    }  # the defaults, not this shell's settings
    child_env.update(env or {})
    child_env["NIMBUS_SERVER__LOG_LEVEL"] = child_env.get("NIMBUS_SERVER__LOG_LEVEL", "warning")
    code = "import sys; from core.cli import main; sys.exit(main(sys.argv[1:]))"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", code, "serve", "--host", "127.0.0.1", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=child_env,
        )
    server = Server(process, port, log)
    try:
        _wait_ready(server, timeout=180)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
