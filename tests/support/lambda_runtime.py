"""A small Lambda Runtime API on loopback, and the real runtime interface client (awslambdaric)
running our handler against it in a subprocess, the way the Lambda base image runs it.

Endpoints (https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html):
  GET  /2018-06-01/runtime/invocation/next            -> the next event, with the Lambda-Runtime-*
                                                         headers (request id, deadline, ARN, trace)
  POST /2018-06-01/runtime/invocation/{id}/response   <- the handler's result
  POST /2018-06-01/runtime/invocation/{id}/error      <- an error raised by the handler
  POST /2018-06-01/runtime/init/error                 <- an error raised while importing it
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "/2018-06-01/runtime"
FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:nimbus"


@dataclass
class Invocation:
    request_id: str
    event: dict[str, Any]
    deadline_ms: int
    done: threading.Event = field(default_factory=threading.Event)
    response: Any = None
    error: dict[str, Any] | None = None
    error_type: str | None = None
    fetched_at: float | None = None
    answered_at: float | None = None


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # the runtime client is killed mid-long-poll at the end of every test


class RuntimeAPI:
    """Serves invocations to one runtime client; records what it posts back."""

    def __init__(self) -> None:
        self._pending: queue.Queue[Invocation] = queue.Queue()
        self.invocations: dict[str, Invocation] = {}
        self.init_errors: list[tuple[str | None, dict[str, Any]]] = []
        self.first_poll_at: float | None = None
        self._stopped = threading.Event()
        self._server = _QuietServer(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def address(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{host}:{port}"

    def start(self) -> RuntimeAPI:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._server.shutdown()
        self._server.server_close()

    def invoke(
        self, event: dict[str, Any], *, remaining_ms: int = 120_000, timeout: float = 300
    ) -> Invocation:
        """Queue ``event`` with a deadline ``remaining_ms`` from now; wait for the answer."""
        inv = Invocation(str(uuid.uuid4()), event, int(time.time() * 1000) + remaining_ms)
        self.invocations[inv.request_id] = inv
        self._pending.put(inv)
        if not inv.done.wait(timeout):
            raise TimeoutError(f"no answer to invocation {inv.request_id} in {timeout}s")
        return inv

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _reply(
                self, status: int, body: bytes = b"", headers: dict[str, str] | None = None
            ) -> None:
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def do_GET(self) -> None:
                if self.path != f"{PREFIX}/invocation/next":
                    self._reply(404, b'{"errorMessage":"unknown path"}')
                    return
                if api.first_poll_at is None:
                    api.first_poll_at = time.monotonic()
                while True:  # long poll, like the real API
                    try:
                        inv = api._pending.get(timeout=0.5)
                        break
                    except queue.Empty:
                        if api._stopped.is_set():
                            return
                inv.fetched_at = time.monotonic()
                self._reply(
                    200,
                    json.dumps(inv.event).encode(),
                    {
                        "Content-Type": "application/json",
                        "Lambda-Runtime-Aws-Request-Id": inv.request_id,
                        "Lambda-Runtime-Deadline-Ms": str(inv.deadline_ms),
                        "Lambda-Runtime-Invoked-Function-Arn": FUNCTION_ARN,
                        "Lambda-Runtime-Trace-Id": "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;"
                        "Parent=9a9197af755a6419;Sampled=1",
                    },
                )

            def do_POST(self) -> None:
                body = self._body()
                parts = self.path.removeprefix(PREFIX).strip("/").split("/")
                if parts == ["init", "error"]:
                    api.init_errors.append(
                        (self.headers.get("Lambda-Runtime-Function-Error-Type"), json.loads(body))
                    )
                    self._reply(202, b'{"status":"OK"}')
                    return
                if len(parts) == 3 and parts[0] == "invocation" and parts[1] in api.invocations:
                    inv = api.invocations[parts[1]]
                    if parts[2] == "response":
                        inv.response = json.loads(body)
                    elif parts[2] == "error":
                        inv.error = json.loads(body)
                        inv.error_type = self.headers.get("Lambda-Runtime-Function-Error-Type")
                    else:
                        self._reply(404, b"{}")
                        return
                    inv.answered_at = time.monotonic()
                    self._reply(202, b'{"status":"OK"}')
                    inv.done.set()
                    return
                self._reply(404, b'{"errorMessage":"unknown invocation"}')

        return Handler


@dataclass
class LambdaProcess:
    api: RuntimeAPI
    proc: subprocess.Popen[bytes]
    log_path: Path
    started_at: float

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def json_lines(self) -> list[dict[str, Any]]:
        lines = []
        for line in self.output().splitlines():
            line = line.strip()
            if line.startswith("{"):
                try:
                    lines.append(json.loads(line))
                except ValueError:
                    continue
        return lines

    def logs(self, message: str) -> list[dict[str, Any]]:
        return [entry for entry in self.json_lines() if entry.get("message") == message]

    def metrics(self) -> list[dict[str, Any]]:
        """The EMF documents (CloudWatch embedded metric format) the function printed."""
        return [entry for entry in self.json_lines() if "_aws" in entry]


def lambda_env(tmp: Path, *, keys_required: bool = False, **extra: str) -> dict[str, str]:
    """The environment Lambda gives the function. API keys are switched off explicitly (as an
    operator would) for the functional tests unless ``keys_required``: then the adapter's
    defaults apply (keys required) and the caller passes the key sources."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("NIMBUS_", "AWS_", "POWERTOOLS_", "_X_AMZN"))
    }
    env.update(
        {
            # What Lambda sets in every execution environment.
            "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
            "AWS_LAMBDA_FUNCTION_NAME": "nimbus",
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "3008",
            "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/nimbus",
            "AWS_LAMBDA_LOG_STREAM_NAME": "2026/11/24/[$LATEST]0123456789abcdef",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            # Any AWS call a test did not point at moto fails fast on loopback, never leaves.
            "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
            "LAMBDA_TASK_ROOT": str(ROOT),
            "TMPDIR": str(tmp),
            # What our template sets.
            "POWERTOOLS_SERVICE_NAME": "nimbus",
            "POWERTOOLS_METRICS_NAMESPACE": "nimbus",
            "NIMBUS_ENGINE__N_CTX": "1024",
            "NIMBUS_ENGINE__N_THREADS": str(min(2, os.cpu_count() or 1)),
            "PYTHONUNBUFFERED": "1",
        }
    )
    if not keys_required:
        env["NIMBUS_SECURITY__AUTH__MODE"] = "off"
    env.update(extra)
    return env


@contextmanager
def lambda_function(
    tmp: Path,
    handler: str = "handlers.aws_lambda.handler",
    *,
    keys_required: bool = False,
    **env: str,
) -> Iterator[LambdaProcess]:
    """Start awslambdaric on ``handler`` against a fresh Runtime API; stop both afterwards."""
    api = RuntimeAPI().start()
    log_path = tmp / f"lambda-{uuid.uuid4().hex[:8]}.log"
    with log_path.open("wb") as log:
        started = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "awslambdaric", handler],
            cwd=ROOT,
            env=lambda_env(
                tmp, keys_required=keys_required, AWS_LAMBDA_RUNTIME_API=api.address, **env
            ),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield LambdaProcess(api, proc, log_path, started)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            api.stop()
