"""Cold start alone: process start -> first streamed token, and where a Python server's start goes.

    .venv/bin/python -m benchmarks.cold_start [--runs 5] [--peers nimbus,llama_server]

- The harness's cold-start rounds (each peer started alone, rotating order, median of ``runs``),
  without the rest of `make bench`: for measuring one start-up change at a time.
- ``nimbus serve`` once more under ``python -X importtime``, its import time summed by top-level
  package (on every thread: the model loads on one while the web stack imports on another, and
  both need the GIL), the floor that Python imports set under the first token.
"""

from __future__ import annotations

import argparse
import re
import signal
import statistics
import sys
import tempfile
from collections import Counter
from pathlib import Path

from benchmarks.peers import PEERS, resolve_llama_tools, stop
from benchmarks.run import Progress, build_config, cold_starts, parse_args, start_http

_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)")

# What `nimbus serve` imports before its first token, in its order: the main thread's web stack,
# then what the loading thread imports (llama-cpp-python and numpy). Each step's CPU time is
# measured after the steps before it, so shared dependencies count once, where first needed.
SERVE_IMPORTS = (
    ("pydantic", "pydantic"),
    ("pydantic_settings", "pydantic-settings"),
    ("core.settings", "nimbus settings"),
    ("core.cli", "nimbus CLI"),
    ("core.engine.llama", "nimbus engine front"),
    ("uvicorn", "uvicorn (click, watchfiles)"),
    ("fastapi", "FastAPI (Starlette, OpenAPI models, OpenTelemetry API)"),
    ("core.app", "nimbus app: routes, protocol models, security, metrics, UI"),
    ("numpy", "numpy (loading thread)"),
    ("llama_cpp", "llama-cpp-python (loading thread)"),
)
_CPU_CHILD = """
import importlib, json, sys, time
out, last = [], time.process_time()
for name in sys.argv[1:]:
    importlib.import_module(name)
    now = time.process_time()
    out.append((now - last) * 1000)
    last = now
print(json.dumps({"start": last * 1000 - sum(out), "steps": out}))
"""


def import_cpu_ms(runs: int = 5) -> tuple[float, list[float]]:
    """Median CPU ms of interpreter start-up and of each SERVE_IMPORTS step (fresh processes)."""
    import json
    import subprocess

    starts: list[float] = []
    steps: list[list[float]] = []
    for _ in range(runs):
        proc = subprocess.run(
            [sys.executable, "-c", _CPU_CHILD, *(m for m, _ in SERVE_IMPORTS)],
            capture_output=True,
            text=True,
            check=True,
        )
        data = json.loads(proc.stdout)
        starts.append(data["start"])
        steps.append(data["steps"])
    return statistics.median(starts), [statistics.median(col) for col in zip(*steps, strict=True)]


def imports_by_package(log: str) -> Counter[str]:
    """Self import time (µs) per top-level package from ``-X importtime`` lines."""
    out: Counter[str] = Counter()
    for line in log.splitlines():
        m = _LINE.match(line)
        if m:
            out[m.group(4).split(".")[0]] += int(m.group(1))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.cold_start", description=__doc__)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--peers", default="nimbus,llama_server")
    p.add_argument("--threads", type=int)
    p.add_argument("--no-build", action="store_true")
    p.add_argument("--nimbus-tree", type=Path)
    p.add_argument("--top", type=int, default=12, help="packages listed (by import time)")
    p.add_argument(
        "--imports-only",
        action="store_true",
        help="only the CPU time of the imports before the first token (no server started)",
    )
    args = p.parse_args(argv)
    start_ms, steps = import_cpu_ms(args.runs)
    print(f"CPU time of what `nimbus serve` imports, in its order (median of {args.runs}):")
    print()
    print("| step | CPU ms |")
    print("|---|---|")
    print(f"| interpreter start-up (site, encodings, json) | {start_ms:.0f} |")
    for (module, label), ms in zip(SERVE_IMPORTS, steps, strict=True):
        print(f"| `import {module}`: {label} | {ms:.0f} |")
    print(f"| **all of it** | **{start_ms + sum(steps):.0f}** |")
    print()
    if args.imports_only:
        return 0
    # Terminated: unwind, so a server being timed is stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    bench_argv = ["--repeats", str(args.runs), "--peers", args.peers]
    if args.threads:
        bench_argv += ["--threads", str(args.threads)]
    if args.nimbus_tree:
        bench_argv += ["--nimbus-tree", str(args.nimbus_tree)]
    cfg = build_config(parse_args(bench_argv))
    keys = [k for k in args.peers.split(",") if k in PEERS and PEERS[k].kind != "limit"]
    progress = Progress(len(keys) + ("nimbus" in keys))
    skipped: dict[str, str] = {}
    tools = None
    if "llama_server" in keys:
        tools, why = resolve_llama_tools(not args.no_build, progress.say)
        if tools is None:
            skipped["llama_server"] = why
    with tempfile.TemporaryDirectory() as tmp:
        logs = Path(tmp)
        server = tools["llama-server"] if tools else None
        trials, cpu = cold_starts(keys, cfg, server, logs, progress, skipped)
        print(
            "| peer | process start -> first streamed token, median | min | CPU time used by "
            "then (all threads), median | runs |"
        )
        print("|---|---|---|---|---|")
        for key in keys:
            if key in skipped:
                print(f"| {PEERS[key].label} | {skipped[key]} | | | |")
                continue
            xs, cs = trials[key], cpu.get(key) or [float("nan")]
            print(
                f"| {PEERS[key].label} | {statistics.median(xs):.3f} s | {min(xs):.3f} s "
                f"| {statistics.median(cs):.3f} s | {len(xs)} |"
            )
        if "nimbus" in keys:
            cfg_env = {"PYTHONPROFILEIMPORTTIME": "1"}
            running = start_http(PEERS["nimbus"], cfg, None, logs, None, extra_env=cfg_env)
            stop(running.proc)
            progress.step("nimbus serve under -X importtime")
            by_package = imports_by_package(running.log.read_text(errors="replace"))
            total = sum(by_package.values())
            print()
            print(
                f"`nimbus serve` imports, every thread: {total / 1000:.0f} ms in all (wall "
                "time of each import, `-X importtime`; one start, the same machine):"
            )
            print()
            print("| package | import time | share |")
            print("|---|---|---|")
            for package, us in by_package.most_common(args.top):
                print(f"| `{package}` | {us / 1000:.0f} ms | {100 * us / total:.0f}% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
