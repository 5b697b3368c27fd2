"""`make bench` / `python -m benchmarks` / `nimbus bench`: every peer side by side, one run.

First each peer is started alone, ``repeats`` times in rotating order, for its cold start
(process start -> first streamed token). Then every peer starts again and stays up, and each
measurement runs round by round on every peer in turn (in-process peers are driven over stdin):
single streams, 1/2/4/8 concurrent streams, a ~1k-token prefill, a follow-up turn sharing that
prefix; every round with a prompt no peer has seen. On a shared machine speed drifts by several
percent over minutes; side by side, that drift stays out of the ratios. Last, peak RSS is read
and all peers stop. Results go to benchmarks/results/ as Markdown, JSON and PNG."""

from __future__ import annotations

import argparse
import compileall
import json
import os
import platform
import shlex
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import http_load
from benchmarks.peers import (
    PEERS,
    ROOT,
    BenchConfig,
    Peer,
    free_port,
    peak_rss_mb,
    python_server_missing,
    resolve_llama_server,
    server_command,
    server_env,
    start,
    stop,
)
from benchmarks.report import write

RESULTS = Path(__file__).resolve().parent / "results"
_SENTENCE = "The quick brown fox jumps over the lazy dog while the cat watches from the wall. "


class Progress:
    def __init__(self, total: int) -> None:
        self.total, self.done, self.t0 = total, 0, time.perf_counter()

    def step(self, what: str) -> None:
        self.done += 1
        elapsed = time.perf_counter() - self.t0
        print(f"[{self.done:>2}/{self.total}] {elapsed:6.1f}s  {what}", file=sys.stderr, flush=True)

    def say(self, what: str) -> None:
        print(f"        {what}", file=sys.stderr, flush=True)


def _median(xs: list[float]) -> float:
    xs = [x for x in xs if x == x]
    return statistics.median(xs) if xs else float("nan")


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(x for x in xs if x == x)
    if not xs:
        return float("nan")
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


@dataclass
class Running:
    """An HTTP peer that has started and answered; stays up until its measurements are done."""

    peer: Peer
    proc: subprocess.Popen[bytes]
    url: str
    log: Path
    out: dict[str, Any] = field(default_factory=dict)

    def failure(self, exc: Exception) -> RuntimeError:
        tail = self.log.read_text(errors="replace")[-800:]
        return RuntimeError(f"{exc}; log tail: {tail}")

    def single(self, prompt: str, max_tokens: int) -> tuple[float, float]:
        """(time to first token s, decode tok/s) of one streamed completion."""
        try:
            run = http_load.stream_completion(self.url, prompt, max_tokens)
        except Exception as exc:
            raise self.failure(exc) from exc
        return run.ttft_s, run.decode_tps

    def prefill(self, prompt: str) -> float:
        try:
            n, dt = http_load.prompt_latency(self.url, prompt)
        except Exception as exc:
            raise self.failure(exc) from exc
        self.out["long_prompt_tokens"] = n
        return n / dt

    def rss_mb(self) -> float:
        return peak_rss_mb(self.proc.pid)


@dataclass
class Worker:
    """An in-process peer (benchmarks.inproc) driven over its stdin/stdout."""

    peer: Peer
    proc: subprocess.Popen[str]
    out: dict[str, Any] = field(default_factory=dict)

    def _ask(self, cmd: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.peer.label} exited (code {self.proc.wait()})")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def single(self, prompt: str, max_tokens: int) -> tuple[float, float]:
        r = self._ask({"cmd": "single", "prompt": prompt, "max_tokens": max_tokens})
        return float(r["ttft_s"]), float(r["decode_tps"])

    def prefill(self, prompt: str) -> float:
        return float(self._ask({"cmd": "prefill", "prompt": prompt})["prefill_tps"])

    def aggregate(self) -> dict[str, float]:
        return {k: float(v) for k, v in self._ask({"cmd": "aggregate"}).items()}

    def rss_mb(self) -> float:
        rss = float(self._ask({"cmd": "rss"})["rss_mb"])
        self.proc.wait(timeout=60)
        return rss


Contender = Running | Worker


def start_http(
    peer: Peer, cfg: BenchConfig, llama_server: Path | None, logs: Path, progress: Progress | None
) -> Running:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = server_command(peer, cfg, port, llama_server)
    log = logs / f"{peer.key}.log"
    t0 = time.perf_counter()
    proc = start(cmd, server_env(cfg), log)
    running = Running(peer, proc, url, log)
    try:
        first = http_load.first_token_when_up(
            url, cfg.prompts[0], t0 + 300, alive=lambda: proc.poll() is None
        )
    except Exception as exc:
        stop(proc)
        raise running.failure(exc) from exc
    running.out["cold_start_s"] = first - t0
    if progress is not None:
        progress.step(f"{peer.label}: up")
    return running


def single_streams(peers: list[Contender], cfg: BenchConfig, progress: Progress) -> None:
    """Single-stream rounds, one stream per peer per round, in rotating order, in-process peers
    included. Side by side rather than peer after peer: on a shared machine the speed drifts by
    several percent over minutes, and the ratios between peers are what the targets are about."""
    runs: dict[str, list[tuple[float, float]]] = {p.peer.key: [] for p in peers}
    for r in range(2 * cfg.repeats):
        # A fresh prompt every round (none was seen before, by any peer's cache).
        prompt = f"Round {r}. {cfg.prompts[r % len(cfg.prompts)]}"
        for peer in peers[r % len(peers) :] + peers[: r % len(peers)]:
            runs[peer.peer.key].append(peer.single(prompt, cfg.max_tokens))
    for peer in peers:
        singles = runs[peer.peer.key]
        peer.out["single_tps"] = _median([tps for _, tps in singles])
        peer.out["ttft_p50_1"] = _median([ttft * 1000 for ttft, _ in singles])
        progress.step(f"{peer.peer.label}: single stream {peer.out['single_tps']:.1f} tok/s")


def concurrent_streams(servers: list[Running], cfg: BenchConfig, progress: Progress) -> None:
    """1/2/4/8 concurrent streams, each round run on every peer in rotating order (side by side,
    as the single streams are), so machine drift does not land in the ratios."""
    for c in cfg.streams:
        aggs: dict[str, list[float]] = {s.peer.key: [] for s in servers}
        ttfts: dict[str, list[float]] = {s.peer.key: [] for s in servers}
        for rep in range(cfg.repeats):
            prompts = [
                f"Batch {c}.{rep}.{k}. {cfg.prompts[(k + rep + c) % len(cfg.prompts)]}"
                for k in range(c)
            ]
            shift = (rep + c) % len(servers)
            for server in servers[shift:] + servers[:shift]:
                try:
                    agg, runs = http_load.concurrent_round(server.url, prompts, cfg.max_tokens)
                except Exception as exc:
                    raise server.failure(exc) from exc
                aggs[server.peer.key].append(agg)
                ttfts[server.peer.key] += [r.ttft_s * 1000 for r in runs]
        for server in servers:
            out, key = server.out, server.peer.key
            out[f"agg_{c}"] = _median(aggs[key])
            if c > 1:  # one stream's TTFT comes from the single-stream rounds
                out[f"ttft_p50_{c}"] = _pct(ttfts[key], 0.5)
                out[f"ttft_p95_{c}"] = _pct(ttfts[key], 0.95)
        shown = ", ".join(f"{s.peer.label} {s.out[f'agg_{c}']:.1f}" for s in servers)
        progress.step(f"{c} concurrent streams, aggregate tok/s: {shown}")


def prefill_rounds(peers: list[Contender], cfg: BenchConfig, progress: Progress) -> None:
    """A ~1k-token prompt no peer has seen, one-token completion, round by round on every peer."""
    rates: dict[str, list[float]] = {p.peer.key: [] for p in peers}
    for r in range(cfg.repeats):
        prompt = f"Prefill {r} at {time.time()}. {cfg.long_prompt}"
        for peer in peers[r % len(peers) :] + peers[: r % len(peers)]:
            rates[peer.peer.key].append(peer.prefill(prompt))
    for peer in peers:
        peer.out["prefill_tps"] = _median(rates[peer.peer.key])
        progress.step(f"{peer.peer.label}: prefill {peer.out['prefill_tps']:.0f} tok/s")


def followups(servers: list[Running], cfg: BenchConfig, progress: Progress) -> None:
    """Prefix cache: a follow-up turn sharing a ~1k-token history vs a cold prefill of it."""
    for server in servers:
        try:
            history = f"Session {time.time()}. {cfg.long_prompt}"
            _, cold = http_load.prompt_latency(server.url, history)
            _, warm = http_load.prompt_latency(server.url, history + " And now a follow-up?")
        except Exception as exc:
            raise server.failure(exc) from exc
        server.out["followup_ratio"] = warm / cold
        server.out["followup_ms"], server.out["cold_prefill_ms"] = warm * 1000, cold * 1000
    shown = ", ".join(
        f"{s.peer.label} {s.out['followup_ms']:.0f} vs {s.out['cold_prefill_ms']:.0f} ms"
        for s in servers
    )
    progress.step(f"follow-up turn vs cold prefill: {shown}")


def start_inproc(peer: Peer, cfg: BenchConfig, progress: Progress | None) -> Worker:
    workload = asdict(cfg)
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.inproc", peer.key, json.dumps(workload)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        text=True,
    )
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "FIRST_TOKEN":
        proc.kill()
        raise RuntimeError(f"{peer.label} failed (exit {proc.wait()})")
    cold = time.perf_counter() - t0
    if progress is not None:
        progress.step(f"{peer.label}: up")
    return Worker(peer, proc, {"cold_start_s": cold})


def cold_starts(
    keys: list[str],
    cfg: BenchConfig,
    llama_server: Path | None,
    logs: Path,
    progress: Progress,
    skipped: dict[str, str],
) -> dict[str, list[float]]:
    """Process start -> first streamed token, each peer started alone (nothing else running),
    ``repeats`` times in rotating order; a peer that cannot start is added to ``skipped``."""
    trials: dict[str, list[float]] = {k: [] for k in keys}
    for t in range(cfg.repeats):
        for key in keys[t % len(keys) :] + keys[: t % len(keys)]:
            if key in skipped:
                continue
            peer = PEERS[key]
            try:
                if peer.kind == "http":
                    server = start_http(peer, cfg, llama_server, logs, None)
                    stop(server.proc)
                    trials[key].append(server.out["cold_start_s"])
                else:
                    worker = start_inproc(peer, cfg, None)
                    worker.proc.kill()
                    worker.proc.wait()
                    trials[key].append(worker.out["cold_start_s"])
            except Exception as exc:
                skipped[key] = f"failed: {exc}"
                progress.say(f"{peer.label}: failed: {exc}")
    for key in keys:
        if key not in skipped:
            shown = ", ".join(f"{x:.2f}" for x in trials[key])
            progress.step(f"{PEERS[key].label}: cold start {_median(trials[key]):.2f}s ({shown})")
    return trials


def import_floor_s(runs: int = 3) -> float:
    """Seconds for a bare interpreter to import the web stack any FastAPI server needs: the part
    of a Python server's cold start that no loading strategy can overlap or avoid."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", "import fastapi, uvicorn, pydantic_settings"], check=True
        )
        times.append(time.perf_counter() - t0)
    return _median(times)


def build_config(args: argparse.Namespace) -> BenchConfig:
    from core.settings import ModelSourceSettings
    from core.sources import resolve_model

    model = str(resolve_model(args.model, ModelSourceSettings()))
    quick = args.quick
    streams = tuple(int(s) for s in args.streams.split(",")) if args.streams else None
    return BenchConfig(
        model=model,
        threads=args.threads or os.cpu_count() or 1,
        n_ctx=args.n_ctx or (1024 if quick else 4096),
        slots=max(streams or (8,)),
        max_tokens=args.max_tokens or (12 if quick else 128),
        repeats=args.repeats or (1 if quick else 3),
        streams=streams or ((1, 2) if quick else (1, 2, 4, 8)),
        prompts=tuple(
            f"Count from {s} upwards: {s}, {s + 1}, {s + 2}, {s + 3},"
            for s in (1, 100, 250, 400, 600, 800, 1000, 1200, 1500, 2000, 3000, 5000)
        ),
        long_prompt=_SENTENCE * (12 if quick else 60),
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmark nimbus against raw llama-cpp-python, llama_cpp.server and "
        "llama.cpp's llama-server on the same model, threads and prompts.",
    )
    p.add_argument("--model", default="default", help="'default' (bundled) or a GGUF path")
    p.add_argument("--threads", type=int, help="CPU threads for every peer (default: all cores)")
    p.add_argument("--peers", default=",".join(PEERS), help=f"subset of {','.join(PEERS)}")
    p.add_argument("--streams", help="concurrency levels, e.g. 1,2,4,8")
    p.add_argument("--max-tokens", type=int, help="tokens per stream (128; quick: 12)")
    p.add_argument("--repeats", type=int, help="runs per measurement (3; quick: 1)")
    p.add_argument("--n-ctx", type=int, help="context / KV cache size (4096; quick: 1024)")
    p.add_argument("--quick", action="store_true", help="tiny settings: a smoke run of the harness")
    p.add_argument("--no-build", action="store_true", help="skip building llama-server")
    p.add_argument("--no-chart", action="store_true", help="skip the PNG chart")
    p.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Terminated (e.g. by `timeout`): unwind so every started peer process is stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    cfg = build_config(args)
    keys = [k.strip() for k in args.peers.split(",") if k.strip()]
    unknown = [k for k in keys if k not in PEERS]
    if unknown:
        print(f"unknown peers: {unknown}; choose from {list(PEERS)}", file=sys.stderr)
        return 2
    logs = args.out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    n_http = sum(PEERS[k].kind == "http" for k in keys)
    n_inproc = len(keys) - n_http
    total = 4 * len(keys) + n_inproc + ((len(cfg.streams) + 1) if n_http else 0)
    progress = Progress(total)
    skipped: dict[str, str] = {}
    llama_server = None
    if "llama_server" in keys:
        llama_server, why = resolve_llama_server(not args.no_build, progress.say)
        if llama_server is None:
            skipped["llama_server"] = why
    if "llama_cpp_server" in keys and (why := python_server_missing() or ""):
        skipped["llama_cpp_server"] = "skipped: " + why
    for key, why in skipped.items():
        progress.say(f"{PEERS[key].label}: {why}")
    results: dict[str, dict[str, Any]] = {}
    started = time.perf_counter()
    # Bytecode for nimbus's own modules, as an installed package has it: in an editable checkout
    # with PYTHONDONTWRITEBYTECODE set, every start would compile them (~0.1 s of cold start).
    compileall.compile_dir(ROOT / "core", quiet=1)
    compileall.compile_dir(ROOT / "handlers", quiet=1)
    floor = import_floor_s()
    progress.say(f"python + `import fastapi, uvicorn, pydantic_settings`: {floor:.2f}s")
    # Cold starts first, each peer alone. Then every peer starts again and stays up for rounds
    # that visit every peer in turn: single streams, concurrent streams (HTTP peers; in-process
    # ones run their own), prefill, follow-up turns; then peak RSS, and all stop.
    starts = cold_starts(keys, cfg, llama_server, logs, progress, skipped)
    peers: list[Contender] = []
    try:
        for key in keys:
            if key in skipped:
                continue
            peer = PEERS[key]
            try:
                if peer.kind == "http":
                    peers.append(start_http(peer, cfg, llama_server, logs, progress))
                else:
                    peers.append(start_inproc(peer, cfg, progress))
            except Exception as exc:
                skipped[key] = f"failed: {exc}"
                progress.say(f"{peer.label}: failed: {exc}")
        if peers:
            single_streams(peers, cfg, progress)
        servers = [p for p in peers if isinstance(p, Running)]
        if servers:
            concurrent_streams(servers, cfg, progress)
        for worker in [p for p in peers if isinstance(p, Worker)]:
            aggregate = worker.aggregate()
            for c, v in aggregate.items():
                worker.out[f"agg_{c}"] = v
            progress.step(f"{worker.peer.label}: own concurrency done")
        if peers:
            prefill_rounds(peers, cfg, progress)
        if servers:
            followups(servers, cfg, progress)
        for contender in peers:
            contender.out["rss_mb"] = contender.rss_mb()
            results[contender.peer.key] = contender.out
    except Exception as exc:
        # A peer failing mid-run (its log tail is in the message) ends the run for every peer:
        # the side-by-side rounds need them all. What was measured so far is still written.
        progress.say(f"failed: {exc}")
        for contender in peers:
            results.setdefault(contender.peer.key, contender.out)
            skipped.setdefault(contender.peer.key, f"incomplete: {exc}")
    finally:
        for contender in peers:
            if isinstance(contender, Running):
                stop(contender.proc)
            elif contender.proc.poll() is None:
                contender.proc.kill()
                contender.proc.wait()
    for key, result in results.items():
        result["cold_start_s"] = _median(starts[key])
        result["cold_start_trials"] = starts[key]
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if "model name" in ln), cpu)
    except OSError:
        pass
    meta = {
        "model_name": Path(cfg.model).name,
        "threads": cfg.threads,
        "n_ctx": cfg.n_ctx,
        "slots": cfg.slots,
        "max_tokens": cfg.max_tokens,
        "repeats": cfg.repeats,
        "streams": list(cfg.streams),
        "cpu": f"{os.cpu_count()} cores, {cpu}",
        "command": "python -m benchmarks " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "duration_s": round(time.perf_counter() - started, 1),
        "long_prompt_tokens": next(
            (r["long_prompt_tokens"] for r in results.values() if "long_prompt_tokens" in r), "?"
        ),
        "skipped": skipped,
        "import_floor_s": round(floor, 3),
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    labels = {k: PEERS[k].label for k in keys}
    written = write(args.out, results, labels, meta, chart=not args.no_chart)
    print((args.out / "bench.md").read_text())
    print("wrote " + ", ".join(str(p) for p in written), file=sys.stderr)
    return 0 if results else 1
