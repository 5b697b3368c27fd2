"""Local timings of the Modal class's lifecycle (NOT measured on Modal).

Each run is a fresh Python process that does what a Modal container does, on this machine:
import modal_app, run the snap=True hook (``prepare``), run the snap=False hook (``load``),
serve the ASGI app from the ``web`` method with uvicorn on loopback, and stream requests
through it. Printed as a Markdown table (median, min, max over the runs).

    .venv/bin/python -m benchmarks.modal_local --runs 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Distinct prompts: a repeated one would hit the KV prefix cache and flatter the warm numbers.
PROMPTS = [
    "Write one sentence about clouds.",
    "Name three rivers in Europe.",
    "What is the boiling point of water at sea level?",
    "Give me a short tip for learning to cook.",
]

BENCH_KEY = "sk-bench-local-0123456789"

ROWS = [
    ("import_s", "`import modal_app` (SDK, FastAPI, core)"),
    ("prepare_s", "`prepare` hook, snap=True: libllama import, settings, GGUF check, app"),
    ("load_s", "`load` hook, snap=False: weights + engine thread"),
    ("warmup_s", "`load` hook: one-token warm-up (0 when off)"),
    ("first_ttft_s", "first request: time to first streamed token (HTTP, loopback)"),
    ("first_total_s", "first request: 32 tokens streamed, total"),
    ("warm_ttft_s", "warm requests: time to first token (median of 3)"),
    ("warm_total_s", "warm requests: 32 tokens, total (median of 3)"),
]


def child() -> dict[str, float]:
    import httpx

    out: dict[str, float] = {}
    started = time.perf_counter()
    import modal_app

    out["import_s"] = time.perf_counter() - started
    user = modal_app.Model._get_user_cls()()
    t = time.perf_counter()
    user.prepare()
    out["prepare_s"] = time.perf_counter() - t
    user.load()
    out["load_s"] = user.runtime.timings["load_s"]
    out["warmup_s"] = user.runtime.timings.get("warmup_s", 0.0)

    sys.path.insert(0, str(ROOT))
    from tests.conftest import free_port, start_server

    server, thread = start_server(user.runtime.app, port := free_port())

    def stream(http: httpx.Client, prompt: str) -> tuple[float, float]:
        body = {"prompt": prompt, "maxTokens": 32, "temperature": 0.0, "stream": True}
        t0 = time.perf_counter()
        first = None
        with http.stream("POST", "/api/generate", json=body) as reply:
            for line in reply.iter_lines():
                if line.startswith("data: ") and first is None:
                    first = time.perf_counter() - t0
        return first or float("nan"), time.perf_counter() - t0

    headers = {"Authorization": f"Bearer {BENCH_KEY}"}  # API keys are on, as on Modal
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=120) as http:
        out["first_ttft_s"], out["first_total_s"] = stream(http, PROMPTS[0])
        warm = [stream(http, prompt) for prompt in PROMPTS[1:]]
    out["warm_ttft_s"] = statistics.median(w[0] for w in warm)
    out["warm_total_s"] = statistics.median(w[1] for w in warm)
    server.should_exit = True
    thread.join(timeout=15)
    user.close()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--warmup", choices=["on", "off"], default="on", help="NIMBUS_MODAL__WARMUP for the runs"
    )
    parser.add_argument("--json", action="store_true", help="one JSON line of medians (ms)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child()))
        return 0
    env = {
        **os.environ,
        "NIMBUS_ENGINE__N_THREADS": os.environ.get("NIMBUS_ENGINE__N_THREADS", "2"),
        "NIMBUS_MODAL__WARMUP": "true" if args.warmup == "on" else "false",
        "NIMBUS_SECURITY__AUTH__KEYS": BENCH_KEY,  # what the modal.Secret provides on Modal
    }
    runs: list[dict[str, float]] = []
    for i in range(args.runs):
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.modal_local", "--child"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=True,
        )
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(f"run {i + 1}/{args.runs} done", file=sys.stderr)
    if args.json:  # for `make bench`: medians in ms, and what a snapshot restore still runs
        medians = {k: statistics.median(r[k] * 1000 for r in runs) for k, _ in ROWS}
        restored = medians["load_s"] + medians["warmup_s"] + medians["first_ttft_s"]
        fresh = medians["import_s"] + medians["prepare_s"] + restored
        print(
            json.dumps(
                {
                    "runs": args.runs,
                    "median_ms": medians,
                    "snapshot_restore_to_first_token_ms": restored,
                    "no_snapshot_to_first_token_ms": fresh,
                }
            )
        )
        return 0
    load = os.getloadavg()[0]
    print(
        f"| Step (local, {os.cpu_count()} cores, load average {load:.1f}, warm-up {args.warmup}, "
        f"{args.runs} runs) | median | min | max |"
    )
    print("|---|---|---|---|")
    for key, label in ROWS:
        values = [r[key] * 1000 for r in runs]
        print(
            f"| {label} | {statistics.median(values):.0f} ms | {min(values):.0f} ms "
            f"| {max(values):.0f} ms |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
