"""The edge worker in real workerd: bundled by the pinned wrangler exactly as `wrangler deploy`
would upload it, then run by Miniflare 4 on loopback against real origins (our own server on the
bundled model, plus small broken ones). Its R2 bucket is Miniflare's local one, holding the bundled
model's GGUF and its Q4_0 re-quantization for the instances that answer from a model of their own."""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from core.sources.resolve import bundled_model_path
from handlers.cloudflare.requantize import requantize
from tests.conftest import LiveServer, free_port
from tests.handlers.cloudflare.origins import (
    CaptureOrigin,
    RawOrigin,
    breaking_stream_origin,
    capture_origin,
    garbage_origin,
    silent_origin,
    status_origin,
)

ROOT = Path(__file__).resolve().parents[3]
WORKER_DIR = ROOT / "handlers" / "cloudflare"
DEPLOY_DIR = ROOT / "deploy" / "cloudflare"
HARNESS = Path(__file__).with_name("workerd_harness.mjs")
EDGE_KEYS = ("edge-key-one", "edge-key-two")
BUNDLED_MODEL_KEY = "SmolLM2-135M-Instruct.Q4_1.gguf"
ORIGIN_KEY = "origin-secret"
AWS = {
    "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
    "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
    "AWS_SESSION_TOKEN": "session-token-example",
    "AWS_REGION": "eu-west-1",
}


def node_env(config_home: Path) -> dict[str, str]:
    # A private config dir and no telemetry: wrangler and Miniflare run offline and leave no trace.
    return {
        **os.environ,
        "XDG_CONFIG_HOME": str(config_home),
        "WRANGLER_SEND_METRICS": "false",
        "WRANGLER_LOG": "warn",
        "NO_COLOR": "1",
    }


def wrangler_bin() -> Path:
    path = DEPLOY_DIR / "node_modules" / ".bin" / "wrangler"
    if not path.exists() or shutil.which("node") is None:
        pytest.fail("wrangler is not installed: run `make install` (npm ci in deploy/cloudflare)")
    return path


@pytest.fixture(scope="session")
def wrangler_config() -> dict[str, Any]:
    return tomllib.loads((WORKER_DIR / "wrangler.toml").read_text())


@pytest.fixture(scope="session")
def worker_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`deploy.sh --dry-run` (wrangler deploy --dry-run): the exact script a deploy uploads."""
    wrangler_bin()
    out = tmp_path_factory.mktemp("edge-bundle")
    proc = subprocess.run(
        ["bash", str(DEPLOY_DIR / "deploy.sh"), "--dry-run", str(out)],
        env={**node_env(out / "config"), "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out / "worker.js"


@dataclass
class Origins:
    live: LiveServer
    capture: CaptureOrigin
    capture_behind_stream: CaptureOrigin
    down: str
    broken: str
    garbage: RawOrigin
    silent: RawOrigin
    breaking: str


@dataclass
class Edge:
    urls: dict[str, str]
    origins: Origins
    harness_pid: int


def _read_urls(proc: subprocess.Popen[str], timeout: float) -> dict[str, str] | None:
    """Skips Miniflare's own log lines up to the harness's "EDGE-URLS {...}" line."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while True:
        ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            raise TimeoutError("workerd harness did not report its URLs")
        line = proc.stdout.readline()
        if not line:
            return None
        if line.startswith("EDGE-URLS "):
            urls: dict[str, str] = json.loads(line.removeprefix("EDGE-URLS "))
            return urls


@pytest.fixture(scope="session")
def edge(
    real_server: LiveServer,
    worker_bundle: Path,
    wrangler_config: dict[str, Any],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Edge]:
    broken_server = status_origin(500)
    breaking_server = breaking_stream_origin()
    origins = Origins(
        live=real_server,
        capture=capture_origin(),
        capture_behind_stream=capture_origin(),
        down=f"http://127.0.0.1:{free_port()}",  # nothing listens there
        broken=f"http://127.0.0.1:{broken_server.server_address[1]}",
        garbage=garbage_origin(),
        silent=silent_origin(),
        breaking=f"http://127.0.0.1:{breaking_server.server_address[1]}",
    )
    keys = ",".join(EDGE_KEYS)
    base = {**wrangler_config["vars"], "EDGE_API_KEY": keys}
    instances = {
        "direct": {**base, "INFERENCE_ORIGIN": real_server.base_url},
        "failover": {
            **base,
            "INFERENCE_ORIGIN": ",".join(
                [origins.down, origins.broken, origins.garbage.url, real_server.base_url]
            ),
        },
        # The timeout covers the origin's response headers, which for a whole (non-streamed)
        # answer come after generation: a short one is tested against an origin that answers
        # at once.
        "slow": {
            **base,
            "INFERENCE_ORIGIN": f"{origins.silent.url},{origins.capture.url}",
            "ORIGIN_TIMEOUT_MS": "3000",
            "HEALTH_TIMEOUT_MS": "3000",
        },
        "capture": {
            **base,
            **AWS,
            "INFERENCE_ORIGIN": origins.capture.url,
            "SIGV4": "always",
            "ORIGIN_API_KEY": ORIGIN_KEY,
        },
        "sigv4-without-credentials": {
            **base,
            "INFERENCE_ORIGIN": origins.capture.url,
            "SIGV4": "always",
        },
        "dead": {**base, "INFERENCE_ORIGIN": f"{origins.broken},{origins.down}"},
        "unreachable": {**base, "INFERENCE_ORIGIN": f"{origins.down},{origins.garbage.url}"},
        "midstream": {
            **base,
            "INFERENCE_ORIGIN": f"{origins.breaking},{origins.capture_behind_stream.url}",
        },
        "keyless": {**base, "EDGE_API_KEY": "", "INFERENCE_ORIGIN": origins.capture.url},
        "anonymous": {
            **base,
            "EDGE_API_KEY": "",
            "ALLOW_ANONYMOUS": "true",
            "INFERENCE_ORIGIN": origins.capture.url,
        },
        # The edge's own model. Every origin down or broken: it answers. A small cap and context
        # keep the tests short; one waiting request at most, so a third is refused.
        "edge-failover": {
            **base,
            "INFERENCE_ORIGIN": f"{origins.down},{origins.broken}",
            "EDGE_MODE": "failover",
            "EDGE_MAX_QUEUE": "1",
            "EDGE_MAX_TOKENS": "48",
            "EDGE_CONTEXT_TOKENS": "256",
        },
        # The origin is up: forwarded as before, unless the client asks for the edge. This one
        # runs the published wllama build on the bundled Q4_1 model.
        "edge-up": {
            **base,
            "INFERENCE_ORIGIN": origins.capture.url,
            "EDGE_MODE": "failover",
            "EDGE_WASM": "wllama",
            "EDGE_MODEL_KEY": BUNDLED_MODEL_KEY,
            "EDGE_MAX_TOKENS": "48",
            "EDGE_CONTEXT_TOKENS": "256",
        },
        "edge-always": {**base, "INFERENCE_ORIGIN": "", "EDGE_MODE": "always"},
        "edge-no-model": {
            **base,
            "INFERENCE_ORIGIN": "",
            "EDGE_MODE": "always",
            "EDGE_MODEL_KEY": "models/absent.gguf",
        },
        "edge-bad-mode": {**base, "EDGE_MODE": "sometimes"},
    }
    model = bundled_model_path()
    small = requantize(
        model, tmp_path_factory.mktemp("q4_0") / wrangler_config["vars"]["EDGE_MODEL_KEY"]
    )
    bucket = wrangler_config["r2_buckets"][0]
    spec = {
        "packageJson": str(DEPLOY_DIR / "package.json"),
        "script": str(worker_bundle),
        "compatibilityDate": wrangler_config["compatibility_date"],
        "compatibilityFlags": wrangler_config.get("compatibility_flags", []),
        "instances": instances,
        "r2": {
            "persist": str(tmp_path_factory.mktemp("r2")),
            "bucket": bucket["bucket_name"],
            "binding": bucket["binding"],
            "objects": {
                wrangler_config["vars"]["EDGE_MODEL_KEY"]: str(small),
                BUNDLED_MODEL_KEY: str(model),
            },
        },
    }
    workdir = tmp_path_factory.mktemp("workerd")
    stderr = (workdir / "harness.log").open("w")
    proc = subprocess.Popen(
        ["node", str(HARNESS)],
        cwd=DEPLOY_DIR,
        env=node_env(workdir / "config"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )
    try:
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(spec) + "\n")
        proc.stdin.flush()
        urls = _read_urls(proc, timeout=180)
        if urls is None:
            raise RuntimeError("workerd harness exited: " + (workdir / "harness.log").read_text())
        yield Edge(urls=urls, origins=origins, harness_pid=proc.pid)
    finally:
        if proc.stdin:
            proc.stdin.close()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        stderr.close()
        for server in (
            broken_server,
            breaking_server,
            origins.capture.server,
            origins.capture_behind_stream.server,
        ):
            if server is not None:
                server.shutdown()
        origins.garbage.close()
        origins.silent.close()
