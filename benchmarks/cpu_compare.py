"""Python CPU per generated token of two nimbus checkouts, or of one checkout under two sets of
settings, side by side in one run.

    .venv/bin/python -m benchmarks.cpu_compare --before /path/to/older/checkout
    .venv/bin/python -m benchmarks.cpu_compare --before-env NIMBUS_ENGINE__IDLE_CACHE_MB=0

Both servers serve the bundled model over HTTP under benchmarks.probe at the same time (same
threads, slots and context as ``make bench``); each round of concurrent streamed completions
runs on one, then the other, in alternating order, so a shared machine's drift lands on both.
Printed per concurrency: aggregate tok/s and µs of CPU per token by where it went (the probe's
parts), medians over the rounds, and after/before of the Python part."""

from __future__ import annotations

import argparse
import dataclasses
import signal
import statistics
import sys
import tempfile
from pathlib import Path

from benchmarks import probe
from benchmarks.peers import PEERS, ROOT, stop
from benchmarks.probe import PARTS
from benchmarks.run import Running, build_config, parse_args, start_http


def summary(rounds: list[dict[str, float]]) -> dict[str, float]:
    """Median of each part over the rounds that reported it."""
    return {k: statistics.median(r[k] for r in rounds if k in r) for k in PARTS if rounds}


def table(
    results: dict[int, dict[str, tuple[float, dict[str, float]]]], names: tuple[str, str]
) -> list[str]:
    """Markdown rows: streams, checkout, aggregate tok/s, each part; after/before of python."""
    lines = [
        "| streams | checkout | aggregate tok/s | "
        + " | ".join(PARTS)
        + " | python after/before |",
        "|---|---|---|" + "---|" * (len(PARTS) + 1),
    ]
    before, after = names
    for streams, by_tree in sorted(results.items()):
        for name in names:
            rate, cpu = by_tree[name]
            ratio = ""
            if name == after and by_tree[before][1].get("python"):
                ratio = f"{cpu['python'] / by_tree[before][1]['python']:.2f}x"
            cells = " | ".join(f"{cpu.get(p, float('nan')):.0f}" for p in PARTS)
            lines.append(f"| {streams} | {name} | {rate:.1f} | {cells} | {ratio} |")
    return lines


def settings_env(pairs: list[str]) -> dict[str, str]:
    """``KEY=VALUE`` arguments as environment variables; ValueError names a malformed one."""
    env: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"expected KEY=VALUE, got {pair!r}")
        env[key.strip()] = value
    return env


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.cpu_compare", description=__doc__)
    p.add_argument(
        "--before", type=Path, default=ROOT, help="the older checkout (default: this one)"
    )
    p.add_argument("--after", type=Path, default=ROOT, help="the newer one (default: this one)")
    for side in ("before", "after"):
        p.add_argument(
            f"--{side}-env",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help=f"a setting for the {side} server only, e.g. NIMBUS_ENGINE__IDLE_CACHE_MB=0 "
            "(repeatable)",
        )
    p.add_argument("--streams", default="1,8,16", help="concurrency levels")
    p.add_argument("--max-tokens", type=int, default=64, help="tokens per stream")
    p.add_argument("--repeats", type=int, default=3, help="rounds per level and checkout")
    p.add_argument("--threads", type=int, help="llama.cpp threads (default: all cores)")
    args = p.parse_args(argv)
    try:
        envs = {"before": settings_env(args.before_env), "after": settings_env(args.after_env)}
    except ValueError as exc:
        p.error(str(exc))
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    if trees["before"] == trees["after"] and envs["before"] == envs["after"]:
        p.error("nothing to compare: give --before another checkout, or --before-env/--after-env")
    # Terminated (e.g. by `timeout`): unwind, so both servers are stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    # The same server settings as `make bench` with these levels (slots: the highest one).
    bench = ["--peers", "nimbus", "--max-tokens", str(args.max_tokens), "--streams", args.streams]
    if args.threads:
        bench += ["--threads", str(args.threads)]
    cfg = build_config(parse_args(bench))
    streams = [int(s) for s in args.streams.split(",") if s.strip()]
    servers: dict[str, Running] = {}
    rounds: dict[str, dict[int, list[dict[str, float]]]] = {
        n: {c: [] for c in streams} for n in trees
    }
    rates: dict[str, dict[int, list[float]]] = {n: {c: [] for c in streams} for n in trees}
    with tempfile.TemporaryDirectory(prefix="nimbus-cpu-") as tmp:
        try:
            for name, tree in trees.items():
                logs = Path(tmp) / name
                logs.mkdir()
                tree_cfg = dataclasses.replace(cfg, nimbus_tree=str(tree))
                servers[name] = start_http(
                    PEERS["nimbus"], tree_cfg, None, logs, None, profiled=True, extra_env=envs[name]
                )
            for rep in range(args.repeats):
                for c in streams:
                    order = list(servers.items())
                    if (rep + c) % 2:
                        order.reverse()
                    for name, server in order:
                        prompts = [
                            f"Round {c}.{rep}.{k}. {cfg.prompts[(k + rep + c) % len(cfg.prompts)]}"
                            for k in range(c)
                        ]
                        before = server.cpu() or {}
                        agg, _, tokens = server.concurrent(prompts, args.max_tokens)
                        rounds[name][c].append(probe.per_token(before, server.cpu() or {}, tokens))
                        rates[name][c].append(agg)
        finally:
            for server in servers.values():
                stop(server.proc)
    results: dict[int, dict[str, tuple[float, dict[str, float]]]] = {
        c: {n: (statistics.median(rates[n][c]), summary(rounds[n][c])) for n in trees}
        for c in streams
    }
    print(
        f"Python CPU per generated token, µs (benchmarks.probe), {cfg.threads} threads, "
        f"{cfg.slots} slots, {args.max_tokens} tokens per stream, median of {args.repeats} "
        f"rounds; before = {_side(trees['before'], envs['before'])}, "
        f"after = {_side(trees['after'], envs['after'])}:"
    )
    print()
    print("\n".join(table(results, ("before", "after"))))
    return 0


def _side(tree: Path, env: dict[str, str]) -> str:
    return " ".join([str(tree), *(f"{k}={v}" for k, v in sorted(env.items()))])


if __name__ == "__main__":
    sys.exit(main())
