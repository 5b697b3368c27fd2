"""`make bench` / `python -m benchmarks` / `nimbus bench`: every peer side by side, one run.

First each peer is started alone, ``repeats`` times in rotating order, for its cold start
(process start -> first streamed token). Then every peer starts again and stays up, and each
measurement runs round by round on every peer in turn (in-process peers are driven over stdin,
llama.cpp's own benchmarks run as one more peer: the ceiling): single streams, 1/2/4/8/16
concurrent streams, a ~1k-token prefill, a follow-up turn sharing that prefix; every round with
a prompt no peer has seen. On a shared machine speed drifts by several percent over minutes;
side by side, that drift stays out of the ratios. nimbus runs under benchmarks.probe, which
reports its Python CPU time per generated token for every concurrency round; one more round is
profiled with py-spy. Last, peak RSS is read and all peers stop; the Lambda and Modal start-up
harnesses run after. Results go to benchmarks/results/ as Markdown, JSON and PNG."""

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

from benchmarks import http_load, probe
from benchmarks.limits import LimitError, LlamaLimits
from benchmarks.peers import (
    PEERS,
    ROOT,
    BenchConfig,
    Peer,
    free_port,
    peak_rss_mb,
    process_cpu_s,
    python_server_missing,
    resolve_llama_tools,
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
    probe_file: Path | None = None  # nimbus under benchmarks.probe: CPU snapshots on SIGUSR1

    def failure(self, exc: Exception) -> RuntimeError:
        tail = self.log.read_text(errors="replace")[-800:]
        return RuntimeError(f"{exc}; log tail: {tail}")

    def cpu(self) -> dict[str, Any] | None:
        if self.probe_file is None:
            return None
        return probe.request_snapshot(self.proc.pid, self.probe_file)

    def concurrent(self, prompts: list[str], max_tokens: int) -> tuple[float, float, int]:
        """(aggregate tok/s over the round, decode-phase tok/s, tokens) of one round."""
        try:
            agg, runs = http_load.concurrent_round(self.url, prompts, max_tokens)
        except Exception as exc:
            raise self.failure(exc) from exc
        self.out.setdefault("_ttfts", {}).setdefault(len(prompts), []).extend(
            r.ttft_s * 1000 for r in runs
        )
        tokens = sum(len(r.token_times) for r in runs)
        return agg, http_load.decode_phase_rate(runs), tokens

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

    def aggregate(self) -> dict[str, Any]:
        """{"rates": {streams: tok/s}, "cpu": {streams: {where: µs per token}}}."""
        return self._ask({"cmd": "aggregate"})

    def rss_mb(self) -> float:
        rss = float(self._ask({"cmd": "rss"})["rss_mb"])
        self.proc.wait(timeout=60)
        return rss


@dataclass
class Limit:
    """llama.cpp's own benchmarks (benchmarks.limits), placed in the rounds' rotation."""

    peer: Peer
    tools: LlamaLimits
    out: dict[str, Any] = field(default_factory=dict)

    def single(self, prompt: str, max_tokens: int) -> tuple[float, float]:
        return float("nan"), self._call(lambda: self.tools.decode(max_tokens))

    def prefill(self, prompt: str) -> float:
        return self._call(self.tools.prefill)

    def concurrent(self, prompts: list[str], max_tokens: int) -> tuple[float, float, int]:
        """(S_TG, S_TG, tokens); the prefill-inclusive rate is kept as ``e2e_<streams>``."""
        rates = self._call(lambda: self.tools.batched(len(prompts), max_tokens))
        self.out.setdefault("_e2e", {}).setdefault(len(prompts), []).append(rates["end_to_end"])
        return rates["s_tg"], rates["s_tg"], len(prompts) * max_tokens

    def _call(self, run: Any) -> Any:
        try:
            return run()
        except (LimitError, subprocess.TimeoutExpired) as exc:
            raise RuntimeError(f"{self.peer.label}: {exc}") from exc

    def rss_mb(self) -> float:
        return float("nan")  # a fresh process per measurement: no server to compare


Contender = Running | Worker | Limit


def start_http(
    peer: Peer,
    cfg: BenchConfig,
    llama_server: Path | None,
    logs: Path,
    progress: Progress | None,
    *,
    profiled: bool = False,
    extra_env: dict[str, str] | None = None,
) -> Running:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    profiled = profiled and peer.key == "nimbus"
    cmd = server_command(peer, cfg, port, llama_server, probe=profiled)
    log = logs / f"{peer.key}.log"
    env = {**server_env(cfg), **(extra_env or {})}
    probe_file = logs / f"{peer.key}.cpu.json" if profiled else None
    if probe_file is not None:
        env[probe.ENV] = str(probe_file)
    t0 = time.perf_counter()
    proc = start(cmd, env, log, Path(cfg.nimbus_tree) if peer.key == "nimbus" else ROOT)
    running = Running(peer, proc, url, log, probe_file=probe_file)
    try:
        first = http_load.first_token_when_up(
            url, cfg.prompts[0], t0 + 300, alive=lambda: proc.poll() is None
        )
    except Exception as exc:
        stop(proc)
        raise running.failure(exc) from exc
    running.out["cold_start_s"] = first - t0
    running.out["cold_start_cpu_s"] = process_cpu_s(proc.pid)
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


def concurrent_streams(peers: list[Running | Limit], cfg: BenchConfig, progress: Progress) -> None:
    """1/2/4/8/16 concurrent streams, each round run on every peer in rotating order (side by
    side, as the single streams are), so machine drift does not land in the ratios. Around each
    of nimbus's rounds the probe reads its Python CPU time; per token, median of the rounds."""
    for c in cfg.streams:
        aggs: dict[str, list[float]] = {s.peer.key: [] for s in peers}
        steady: dict[str, list[float]] = {s.peer.key: [] for s in peers}
        cpu: list[dict[str, float]] = []
        for rep in range(cfg.repeats):
            prompts = [
                f"Batch {c}.{rep}.{k}. {cfg.prompts[(k + rep + c) % len(cfg.prompts)]}"
                for k in range(c)
            ]
            shift = (rep + c) % len(peers)
            for peer in peers[shift:] + peers[:shift]:
                before = peer.cpu() if isinstance(peer, Running) else None
                agg, rate, tokens = peer.concurrent(prompts, cfg.max_tokens)
                if before is not None and isinstance(peer, Running):
                    cpu.append(probe.per_token(before, peer.cpu() or {}, tokens))
                aggs[peer.peer.key].append(agg)
                steady[peer.peer.key].append(rate)
        for peer in peers:
            out, key = peer.out, peer.peer.key
            out[f"agg_{c}"] = _median(aggs[key])
            if isinstance(peer, Running):
                out[f"steady_{c}"] = _median(steady[key])
                if c > 1:  # one stream's TTFT comes from the single-stream rounds
                    ttfts = out["_ttfts"][c]
                    out[f"ttft_p50_{c}"] = _pct(ttfts, 0.5)
                    out[f"ttft_p95_{c}"] = _pct(ttfts, 0.95)
            else:
                out[f"e2e_{c}"] = _median(out["_e2e"][c])
            if cpu and peer.peer.key == "nimbus":
                out[f"cpu_{c}"] = {k: _median([r[k] for r in cpu if k in r]) for k in cpu[0]}
        shown = ", ".join(f"{s.peer.label} {s.out[f'agg_{c}']:.1f}" for s in peers)
        progress.step(f"{c} concurrent streams, aggregate tok/s: {shown}")
        nimbus_cpu = next((p.out.get(f"cpu_{c}") for p in peers if p.peer.key == "nimbus"), None)
        if nimbus_cpu:
            progress.say(f"nimbus Python CPU per token at {c}: {nimbus_cpu['python']:.0f} µs")


def profile_round(server: Running, cfg: BenchConfig, out_dir: Path, progress: Progress) -> None:
    """One more round at the highest concurrency with py-spy attached to nimbus: where its CPU
    goes (profile.md; the raw samples in logs/)."""
    from benchmarks.pyspy import Profiler, markdown, summarise

    c = max(cfg.streams)
    prompts = [f"Profile {k}. {cfg.prompts[k % len(cfg.prompts)]}" for k in range(c)]
    raw = out_dir / "logs" / "nimbus.pyspy.txt"
    raw.unlink(missing_ok=True)
    try:
        snapshot = server.cpu() or {}
        profiler = Profiler(server.proc.pid, raw)
        time.sleep(1.0)  # py-spy attaches
        try:
            server.concurrent(prompts, cfg.max_tokens)
        finally:
            profiler.stop()
        roles = {tid: role for tid, (role, _) in snapshot.get("threads", {}).items()}
        table = markdown(summarise(raw, roles))
    except Exception as exc:
        progress.say(f"profile skipped: {exc}")
        server.out["profile"] = f"skipped: {exc}"
        return
    (out_dir / "profile.md").write_text(
        f"py-spy samples (native frames included) of nimbus (HTTP) during one round of {c} "
        f"streams x {cfg.max_tokens} tokens, Python threads only:\n\n{table}"
    )
    server.out["profile"] = table
    progress.step(f"nimbus profiled at {c} streams (profile.md)")


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
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Process start -> first streamed token, each peer started alone (nothing else running),
    ``repeats`` times in rotating order; a peer that cannot start is added to ``skipped``.
    Returns the wall times and the CPU seconds each server process had used by then."""
    keys = [k for k in keys if PEERS[k].kind != "limit"]  # no server: nothing starts
    trials: dict[str, list[float]] = {k: [] for k in keys}
    cpu_s: dict[str, list[float]] = {}
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
                    cpu_s.setdefault(key, []).append(server.out["cold_start_cpu_s"])
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
    return trials, cpu_s


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
    levels = streams or ((1, 2) if quick else (1, 2, 4, 8, 16))
    return BenchConfig(
        model=model,
        threads=args.threads or os.cpu_count() or 1,
        n_ctx=args.n_ctx or (1024 if quick else 4096),
        # As many slots as the most streams, in nimbus and llama-server alike: each level is
        # decoded as one batch, the batch size llama-batched-bench's S_TG is measured at.
        slots=max(levels),
        max_tokens=args.max_tokens or (12 if quick else 128),
        repeats=args.repeats or (1 if quick else 3),
        streams=levels,
        prompts=tuple(
            f"Count from {s} upwards: {s}, {s + 1}, {s + 2}, {s + 3},"
            for s in (1, 100, 250, 400, 600, 800, 1000, 1200, 1500, 2000, 3000, 5000)
        ),
        long_prompt=_SENTENCE * (12 if quick else 60),
        nimbus_tree=str((args.nimbus_tree or ROOT).resolve()),
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
    p.add_argument("--streams", help="concurrency levels (1,2,4,8,16; quick: 1,2)")
    p.add_argument("--max-tokens", type=int, help="tokens per stream (128; quick: 12)")
    p.add_argument("--repeats", type=int, help="runs per measurement (3; quick: 1)")
    p.add_argument("--n-ctx", type=int, help="context / KV cache size (4096; quick: 1024)")
    p.add_argument("--quick", action="store_true", help="tiny settings: a smoke run of the harness")
    p.add_argument(
        "--no-build",
        action="store_true",
        help="skip building llama.cpp's programs (llama-server, llama-bench, llama-batched-bench)",
    )
    p.add_argument(
        "--profile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="profile nimbus with py-spy during one more round (default: on; quick: off)",
    )
    p.add_argument(
        "--platforms",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also time the Lambda and Modal start-up harnesses (default: on; quick: off)",
    )
    p.add_argument("--no-chart", action="store_true", help="skip the PNG chart")
    p.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    p.add_argument(
        "--save-cpu-baseline",
        action="store_true",
        help="write nimbus's Python CPU per token from this run to "
        "benchmarks/python_cpu_baseline.json (the 'before' of the per-token target)",
    )
    p.add_argument(
        "--nimbus-tree",
        type=Path,
        help="a checkout whose core/ the nimbus HTTP peer runs (default: this one), e.g. an "
        "earlier commit's `git worktree`, to measure before and after",
    )
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
    profiling = args.profile if args.profile is not None else not args.quick
    platforms = args.platforms if args.platforms is not None else not args.quick
    logs = args.out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    n_http = sum(PEERS[k].kind == "http" for k in keys)
    n_inproc = sum(PEERS[k].kind == "inproc" for k in keys)
    n_started = n_http + n_inproc
    total = (
        4 * n_started
        + n_inproc
        + 2 * ("llama_limit" in keys)
        + ((len(cfg.streams) + 1) if n_http else 0)
        + (profiling and "nimbus" in keys)
        + 2 * platforms
    )
    progress = Progress(total)
    skipped: dict[str, str] = {}
    tools: dict[str, Path] | None = None
    if "llama_server" in keys or "llama_limit" in keys:
        tools, why = resolve_llama_tools(not args.no_build, progress.say)
        if tools is None:
            skipped.update({k: why for k in ("llama_server", "llama_limit") if k in keys})
    llama_server = tools["llama-server"] if tools else None
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
    # that visit every peer in turn: single streams, concurrent streams (HTTP peers and
    # llama.cpp's limit; in-process ones run their own), prefill, follow-up turns; then peak RSS,
    # and all stop.
    starts, start_cpu = cold_starts(keys, cfg, llama_server, logs, progress, skipped)
    peers: list[Contender] = []
    try:
        for key in keys:
            if key in skipped:
                continue
            peer = PEERS[key]
            try:
                if peer.kind == "http":
                    peers.append(start_http(peer, cfg, llama_server, logs, progress, profiled=True))
                elif peer.kind == "limit":
                    assert tools is not None
                    limits = LlamaLimits(
                        tools["llama-bench"],
                        tools["llama-batched-bench"],
                        cfg.model,
                        cfg.threads,
                        cfg.n_ctx,
                    )
                    peers.append(Limit(peer, limits))
                else:
                    peers.append(start_inproc(peer, cfg, progress))
            except Exception as exc:
                skipped[key] = f"failed: {exc}"
                progress.say(f"{peer.label}: failed: {exc}")
        if peers:
            single_streams(peers, cfg, progress)
        batched = [p for p in peers if isinstance(p, Running | Limit)]
        if batched:
            concurrent_streams(batched, cfg, progress)
        for worker in [p for p in peers if isinstance(p, Worker)]:
            answer = worker.aggregate()
            for c, v in answer.get("rates", {}).items():
                worker.out[f"agg_{c}"] = float(v)
            for c, v in answer.get("cpu", {}).items():
                worker.out[f"cpu_{c}"] = v
            progress.step(f"{worker.peer.label}: own concurrency done")
        nimbus = next((p for p in peers if isinstance(p, Running) and p.probe_file), None)
        if profiling and nimbus is not None:
            profile_round(nimbus, cfg, args.out, progress)
        if peers:
            prefill_rounds(peers, cfg, progress)
        servers = [p for p in peers if isinstance(p, Running)]
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
            elif isinstance(contender, Worker) and contender.proc.poll() is None:
                contender.proc.kill()
                contender.proc.wait()
    for key, result in results.items():
        for private in [k for k in result if k.startswith("_")]:
            del result[private]
        if key in starts:
            result["cold_start_s"] = _median(starts[key])
            result["cold_start_trials"] = starts[key]
        result.pop("cold_start_cpu_s", None)
        if key in start_cpu:
            result["cold_start_cpu_s"] = _median(start_cpu[key])
    platform_starts = platform_cold_starts(cfg, progress) if platforms else {}
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if "model name" in ln), cpu)
    except OSError:
        pass
    limit_runs = next((p.tools.runs for p in peers if isinstance(p, Limit)), [])
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
        "platform_cold_start": platform_starts,
        "limit_commands": [shlex.join(c) for c in limit_runs[:3]],
        "llama_cmake_args": os.environ.get("LLAMA_CMAKE_ARGS", "") or "(portable default)",
        "load_average": round(os.getloadavg()[0], 2),
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    if args.save_cpu_baseline:
        save_cpu_baseline(results.get("nimbus", {}), cfg, meta)
    labels = {k: PEERS[k].label for k in keys}
    written = write(args.out, results, labels, meta, chart=not args.no_chart)
    print((args.out / "bench.md").read_text())
    print("wrote " + ", ".join(str(p) for p in written), file=sys.stderr)
    return 0 if results else 1


def save_cpu_baseline(nimbus: dict[str, Any], cfg: BenchConfig, meta: dict[str, Any]) -> None:
    """The 'before' that the Python-CPU-per-token target compares with (report.BASELINE_FILE)."""
    from benchmarks.report import BASELINE_FILE

    per_token = {k[4:]: v["python"] for k, v in nimbus.items() if k.startswith("cpu_") and v}
    if not per_token:
        return
    commit = subprocess.run(
        ["git", "-C", cfg.nimbus_tree, "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    BASELINE_FILE.write_text(
        json.dumps(
            {
                "python_us_per_token": per_token,
                "nimbus_commit": commit or "unknown",
                "command": meta["command"],
                "cpu": meta["cpu"],
                "load_average": meta["load_average"],
                "when": meta["when"],
            },
            indent=2,
        )
        + "\n"
    )


def platform_cold_starts(cfg: BenchConfig, progress: Progress) -> dict[str, Any]:
    """The platform adapters' start-up, measured locally by their own harnesses: Lambda (the
    real runtime interface client against a loopback Runtime API) and Modal (the class's
    lifecycle hooks; what a memory-snapshot restore still runs is measured, not Modal's own
    restore)."""
    out: dict[str, Any] = {}
    runs = str(max(cfg.repeats, 1))
    for key, module in (
        ("lambda", "benchmarks.lambda_cold_start"),
        ("modal", "benchmarks.modal_local"),
    ):
        cmd = [sys.executable, "-m", module, "--runs", runs, "--json"]
        try:
            proc = subprocess.run(
                cmd,
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=900,
                check=True,
                env={**os.environ, "NIMBUS_ENGINE__N_THREADS": str(cfg.threads)},
            )
            out[key] = json.loads(proc.stdout.strip().splitlines()[-1])
            progress.step(f"{key} start-up harness done")
        except (subprocess.SubprocessError, ValueError, IndexError) as exc:
            detail = getattr(exc, "stderr", "") or ""
            out[key] = {"error": f"{exc} {str(detail)[-300:]}".strip()}
            progress.say(f"{key} start-up harness failed: {exc}")
    return out
