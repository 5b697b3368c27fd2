"""`python -m benchmarks.reliability` (what `make reliability` runs): every scenario against a
real `nimbus serve` on 127.0.0.1, then a Markdown + JSON report of the figures and targets."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.reliability import scenarios
from benchmarks.reliability.scenarios import Plan
from benchmarks.reliability.server import serve

RESULTS = Path("benchmarks/results")


def run(plan: Plan, names: list[str], server_env: dict[str, str] | None = None) -> dict[str, Any]:
    report: dict[str, Any] = {
        "conditions": {
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "cpus": os.cpu_count(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(),
            "server": "nimbus serve defaults (bundled SmolLM2-135M, 127.0.0.1)"
            + (f" with {server_env}" if server_env else ""),
            "plan": {k: str(v) for k, v in vars(plan).items()},
            "scenarios": names,
        },
        "scenarios": {},
    }
    default_names = [n for n in names if n in scenarios.ON_DEFAULT_SERVER]
    if default_names:
        # Small token caps for the fuzzer's sake; the other scenarios ask for few tokens anyway.
        env = {"NIMBUS_LIMITS__MAX_TOKENS_CAP": "16", "NIMBUS_LIMITS__MAX_TOKENS_DEFAULT": "8"}
        env.update(server_env or {})
        with serve(env, log_dir=plan.log_dir, name="default") as server:
            for name in default_names:
                report["scenarios"][name] = _timed(
                    name, lambda s=server, n=name: scenarios.ON_DEFAULT_SERVER[n](plan, s)
                )
    for name in names:
        if name in scenarios.STANDALONE:
            report["scenarios"][name] = _timed(
                name, lambda n=name: scenarios.STANDALONE[n](plan, None)
            )
    report["conditions"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return report


def _timed(name: str, work: Any) -> dict[str, Any]:
    print(f"reliability: {name} ...", file=sys.stderr, flush=True)
    started = time.monotonic()
    try:
        result: dict[str, Any] = work()
    except Exception as exc:  # one broken scenario must not lose the others' figures
        result = {
            "error": f"{type(exc).__name__}: {exc}",
            "targets": {
                "ran": {"target": "no error", "measured": type(exc).__name__, "met": False}
            },
        }
    result["wall_s"] = round(time.monotonic() - started, 1)
    met = all(t["met"] for t in result.get("targets", {}).values())
    print(
        f"reliability: {name} done in {result['wall_s']} s ({'met' if met else 'MISSED'})",
        file=sys.stderr,
    )
    return result


def all_met(report: dict[str, Any]) -> bool:
    return all(
        t["met"] for s in report["scenarios"].values() for t in s.get("targets", {}).values()
    )


def markdown(report: dict[str, Any], command: str) -> str:
    c = report["conditions"]
    lines = [
        "# Reliability run",
        "",
        f"Command: `{c.get('command', command)}`. Started {c['started']} on {c['cpus']} CPUs "
        f"(load average {c['load_average_at_start']} at start, "
        f"{c.get('load_average_at_end')} at end); {c['server']}. "
        "The load generator runs on the same CPUs as the server.",
    ]
    for r in c.get("reruns", []):
        lines.append(
            f"Re-run of {', '.join(r.get('scenarios', []))} with `{r.get('command', '')}` "
            f"({r['server']}): started {r['started']} (load average "
            f"{r['load_average_at_start']} at start, {r.get('load_average_at_end')} at end)."
        )
    lines += [
        "",
        "## Targets",
        "",
        "| scenario | target | wanted | measured | met |",
        "|---|---|---|---|---|",
    ]
    for name, result in report["scenarios"].items():
        for target, t in result.get("targets", {}).items():
            lines.append(
                f"| {name} | {target} | {t['target']} | {t['measured']} | "
                f"{'yes' if t['met'] else '**no**'} |"
            )
    s = {name: r for name, r in report["scenarios"].items() if "error" not in r}
    for name, r in report["scenarios"].items():
        if "error" in r:
            lines += ["", f"## {name}: did not run to the end", "", f"`{r['error']}`"]
    if "load" in s:
        r = s["load"]
        lines += [
            "",
            "## Load (10 connections, `maxTokens` 10, `/api/generate`)",
            "",
            f"{r['requests']} requests in {r['seconds']} s, {r['errors']} errors; "
            f"{r['goodput_rps']} requests/s, {r['tokens_per_s']} tokens/s; latency p50 "
            f"{r['accepted_p50_ms']} ms, p99 {r['accepted_p99_ms']} ms. Client CPU "
            f"{r['client_cpu_cores']} cores, server {r['server_cpu_cores']} cores.",
        ]
    if "flood" in s:
        r = s["flood"]
        lines += [
            "",
            "## Overload: 10 connections vs a 50-connection retry flood, side by side",
            "",
            "Each client sends `/api/generate` (`maxTokens` 10) back to back and retries a 503 at "
            "once, ignoring Retry-After (the worst case). Rounds alternate; totals below.",
            "",
            "| connections | goodput req/s | tokens/s | accepted p50 / p99 ms | refusals/s | "
            "refusal p50 / p99 / max ms | client CPU cores | server CPU cores | "
            "connections opened |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for p in (r["baseline"], r["flood"]):
            lines.append(
                f"| {p['connections']} | {p['goodput_rps']} | {p['tokens_per_s']} | "
                f"{p['accepted_p50_ms']} / {p['accepted_p99_ms']} | {p['refusals_per_s']} | "
                f"{p['refusal_p50_ms']} / {p['refusal_p99_ms']} / {p['refusal_max_ms']} | "
                f"{p['client_cpu_cores']} | {p['server_cpu_cores']} | {p.get('connects', '-')} |"
            )
        lines += [
            "",
            f"Goodput ratio {r['goodput_ratio']}; engine capacity {r['capacity']} (slots + "
            f"queue), {r.get('admitting_while_refusing')} places admitted while refusing (the "
            "short overload queue, `/api/health` queue.admitting); service time "
            f"{r['service_time_ms']} ms per request at full load; accepted "
            f"p99 bound {r['accepted_p99_bound_ms']} ms. Retry-After values sent under the flood: "
            f"{r['flood']['retry_after_values']}.",
        ]
    if "fuzz" in s:
        r = s["fuzz"]
        lines += [
            "",
            "## Schema fuzz (schemathesis, `/openapi.json`)",
            "",
            f"{r['cases']} cases in {r['seconds']} s; statuses {r['statuses']}; per operation "
            f"{r['by_operation']}.",
        ]
    if "storm" in s:
        r = s["storm"]
        lines += [
            "",
            "## Disconnect storm",
            "",
            f"{r['streams_aborted']} streams dropped after their first event (p50 "
            f"{r['first_event_p50_ms']} ms); drained in {r['drain_s']} s; RSS "
            f"{r['rss_before_mb']} -> {r['rss_after_mb']} MB ({r['rss_growth_pct']} %); a request "
            f"after the storm: {r['request_after_storm']}.",
        ]
    if "soak" in s:
        r = s["soak"]
        lines += [
            "",
            "## Soak",
            "",
            f"{r['requests']} mixed requests in {r['seconds']} s; RSS {r['rss_start_mb']} MB at "
            f"start, median {r['rss_early_median_mb']} MB in the first fifth and "
            f"{r['rss_late_median_mb']} MB in the last ({r['rss_growth_pct']} %), max "
            f"{r['rss_max_mb']} MB. Answers: {r['statuses']}.",
        ]
    if "abuse" in s:
        lines += [
            "",
            "## API keys and rate limits under abuse",
            "",
            "| check | met | detail |",
            "|---|---|---|",
        ]
        for chk in s["abuse"]["checks"]:
            detail = str(chk["detail"]).replace("|", "/")
            lines.append(f"| {chk['check']} | {'yes' if chk['met'] else '**no**'} | {detail} |")
    if "injection" in s:
        r = s["injection"]
        lines += [
            "",
            "## Injection policy",
            "",
            f"{r['attacks']} attacks and {r['innocent']} innocent prompts: miss rate "
            f"{r['miss_rate'] * 100:.1f} %, false-positive rate "
            f"{r['false_positive_rate'] * 100:.1f} %; {r['check_us_per_prompt']} us per "
            f"prompt, {r['check_ms_32k_chars']} ms for a "
            f"32,768-character prompt. False positives: {r['false_positives']}. Misses: "
            f"{r['misses']}.",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.reliability")
    parser.add_argument("--quick", action="store_true", help="a few seconds per scenario")
    parser.add_argument(
        "--only",
        default=",".join(scenarios.ALL),
        help=f"comma-separated: {','.join(scenarios.ALL)}",
    )
    parser.add_argument("--soak-s", type=float, help="soak duration (default 300 s)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the report goes")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the other scenarios of the report already in --out (re-run some only)",
    )
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="NIMBUS_X=VALUE",
        help="a setting for the server under test (repeatable), e.g. NIMBUS_ENGINE__N_THREADS=1",
    )
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = sorted(set(names) - set(scenarios.ALL))
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(unknown)}")
    log_dir = args.out / "reliability-logs"
    plan = Plan.quick(log_dir) if args.quick else Plan(log_dir=log_dir)
    if args.soak_s is not None:
        plan = Plan(**{**vars(plan), "soak_s": args.soak_s})
    server_env = dict(item.split("=", 1) for item in args.server_env)
    if any(not k.startswith("NIMBUS_") for k in server_env):
        parser.error("--server-env takes NIMBUS_* settings")
    report = run(plan, names, server_env)
    command = "python -m benchmarks.reliability " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    args.out.mkdir(parents=True, exist_ok=True)
    name = "reliability-quick" if args.quick else "reliability"
    previous = args.out / f"{name}.json"
    report["conditions"]["command"] = command.strip()
    if args.merge and previous.exists():
        old = json.loads(previous.read_text())
        reruns = [*old["conditions"].get("reruns", []), report["conditions"]]
        report["conditions"] = {**old["conditions"], "reruns": reruns}
        report["scenarios"] = {**old["scenarios"], **report["scenarios"]}
    (args.out / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / f"{name}.md").write_text(markdown(report, command.strip()))
    print(f"reliability: wrote {args.out / name}.md and .json", file=sys.stderr)
    return 0 if all_met(report) else 1
