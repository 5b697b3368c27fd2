"""Results -> ratios against the peers and the performance targets; Markdown, JSON, a PNG chart."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from benchmarks.probe import PARTS

# (metric key, label, higher is better)
METRICS: list[tuple[str, str, bool]] = [
    ("single_tps", "single-stream decode, tok/s", True),
    ("ttft_p50_1", "TTFT p50, 1 stream, ms", False),
    ("ttft_p50_4", "TTFT p50, 4 streams, ms", False),
    ("ttft_p95_4", "TTFT p95, 4 streams, ms", False),
    ("ttft_p50_8", "TTFT p50, 8 streams, ms", False),
    ("ttft_p95_8", "TTFT p95, 8 streams, ms", False),
    ("agg_1", "aggregate tok/s, 1 stream", True),
    ("agg_2", "aggregate tok/s, 2 streams", True),
    ("agg_4", "aggregate tok/s, 4 streams", True),
    ("agg_8", "aggregate tok/s, 8 streams", True),
    ("agg_16", "aggregate tok/s, 16 streams", True),
    ("steady_8", "decode-phase tok/s, 8 streams", True),
    ("steady_16", "decode-phase tok/s, 16 streams", True),
    ("e2e_8", "generated tok/s incl. prefill, 8 streams", True),
    ("e2e_16", "generated tok/s incl. prefill, 16 streams", True),
    ("prefill_tps", "prefill tok/s (long prompt, cold)", True),
    ("followup_ratio", "follow-up TTFT / cold prefill (prefix cache)", False),
    ("cold_start_s", "cold start: process start -> first token, s", False),
    ("cold_start_cpu_s", "cold start: CPU time used by the first token (all threads), s", False),
    ("rss_mb", "peak RSS, MB", False),
]

# Python CPU per generated token, measured on the commit before the per-token work (same
# harness, `--peers nimbus`); the target is half of it. See docs/performance.md.
BASELINE_FILE = Path(__file__).resolve().parent / "python_cpu_baseline.json"


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 10 else f"{v:.0f}"
    return str(v)


def _ratio(a: Any, b: Any) -> float | None:
    if not isinstance(a, int | float) or not isinstance(b, int | float):
        return None
    if math.isnan(a) or math.isnan(b) or b == 0:
        return None
    return a / b


def _baseline() -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(BASELINE_FILE.read_text())
        return data
    except (OSError, ValueError):
        return {}


def targets(
    results: dict[str, dict[str, Any]], baseline: dict[str, Any] | None = None
) -> list[tuple[str, str, bool | None]]:
    """The performance targets (docs/performance.md): (what, measured, met?)."""
    n = results.get("nimbus", {})
    cpp = results.get("llama_server", {})
    py = results.get("llama_cpp_server", {})
    eng = results.get("engine", {})
    lim = results.get("llama_limit", {})
    base = _baseline() if baseline is None else baseline
    rows: list[tuple[str, str, bool | None]] = []

    def check(what: str, value: float | None, ok: bool | None, unit: str = "x") -> None:
        shown = "—" if value is None else f"{value:.2f}{unit}"
        rows.append((what, shown, ok if value is not None else None))

    def at_least(what: str, a: Any, b: Any, bound: float) -> None:
        r = _ratio(a, b)
        check(what, r, r is not None and r >= bound)

    at_least(
        "single stream >= 0.97x llama-bench tg", n.get("single_tps"), lim.get("single_tps"), 0.97
    )
    at_least("single stream >= 1.0x llama-server", n.get("single_tps"), cpp.get("single_tps"), 1.0)
    at_least("aggregate @4 >= 1.0x llama-server", n.get("agg_4"), cpp.get("agg_4"), 1.0)
    for c in (8, 16):
        at_least(
            f"aggregate @{c} >= 1.0x llama-server", n.get(f"agg_{c}"), cpp.get(f"agg_{c}"), 1.0
        )
        at_least(
            f"aggregate @{c} >= 0.95x llama-batched-bench S_TG",
            n.get(f"agg_{c}"),
            lim.get(f"agg_{c}"),
            0.95,
        )
        at_least(
            f"decode phase @{c} >= 0.95x llama-batched-bench S_TG",
            n.get(f"steady_{c}"),
            lim.get(f"agg_{c}"),
            0.95,
        )
    at_least("aggregate @4 >= 2x llama_cpp.server", n.get("agg_4"), py.get("agg_4"), 2.0)
    for c in (8, 16):
        now = (n.get(f"cpu_{c}") or {}).get("python")
        before = (base.get("python_us_per_token") or {}).get(str(c))
        r = _ratio(now, before)
        check(f"Python CPU per token @{c} <= 0.5x before", r, r is not None and r <= 0.5)
    r = _ratio(n.get("ttft_p50_8"), cpp.get("ttft_p50_8"))
    check("TTFT p50 @8 <= llama-server", r, r is not None and r <= 1.0)
    r = _ratio(n.get("cold_start_s"), cpp.get("cold_start_s"))
    check("cold start <= 1.2x llama-server", r, r is not None and r <= 1.2)
    a, b = n.get("rss_mb"), cpp.get("rss_mb")
    d = (a - b) if _ratio(a, b) is not None else None
    check("peak RSS <= llama-server + 60 MB", d, d is not None and d <= 60, " MB")
    r = n.get("followup_ratio")
    check("follow-up TTFT <= 0.2x cold prefill", r, r is not None and r <= 0.2)
    r = _ratio(n.get("single_tps"), eng.get("single_tps"))
    check("HTTP stream >= 0.95x in-process engine", r, r is not None and r >= 0.95)
    return rows


def cpu_table(results: dict[str, dict[str, Any]], labels: dict[str, str]) -> list[str]:
    """Python CPU per generated token (benchmarks.probe), by where it went."""
    lines = []
    for key in ("nimbus", "engine"):
        cpu = {k[4:]: v for k, v in results.get(key, {}).items() if k.startswith("cpu_") and v}
        if not cpu:
            continue
        if not lines:
            lines = [
                "",
                "CPU time per generated token, µs (benchmarks.probe: per-thread CPU time; "
                "`python` = every Python thread minus the engine thread's time inside "
                "llama_decode and copying idle KV cells (`KV save/restore`); `native` = "
                "llama.cpp's worker threads):",
                "",
                "| peer | streams | " + " | ".join(PARTS) + " |",
                "|---|---|" + "---|" * len(PARTS),
            ]
        for c in sorted(cpu, key=int):
            cells = " | ".join(_fmt(cpu[c].get(p)) for p in PARTS)
            lines.append(f"| {labels.get(key, key)} | {c} | {cells} |")
    return lines


def steps_table(results: dict[str, dict[str, Any]], meta: dict[str, Any]) -> list[str]:
    """Where each concurrency round's decode time went (benchmarks.probe's step split), beside
    llama-batched-bench's S_TG at the batch nimbus actually decoded and its CPU per token."""
    nim = results.get("nimbus", {})
    lim = results.get("llama_limit", {})
    threads = int(meta.get("threads") or 1)
    levels = sorted(int(k[4:]) for k, v in nim.items() if k.startswith("cpu_") and v)
    split = {c: nim[f"cpu_{c}"] for c in levels if "evaluated per generated" in nim[f"cpu_{c}"]}
    if not split:
        return []
    measured = sorted(int(k[4:]) for k, v in lim.items() if k.startswith("agg_") and v)
    lines = [
        "",
        "Where each round's decode time went (nimbus over HTTP, benchmarks.probe: every "
        "`llama_decode` call timed and classed as decode-only, one token per running stream, or "
        "carrying a prompt chunk). S_TG is llama-batched-bench's at the batch nimbus decoded "
        "(the slots cap it; the nearest level it measured), and its llama.cpp CPU per token is "
        "threads / S_TG:",
        "",
        "| streams | aggregate tok/s | tokens evaluated per token generated | llama.cpp CPU per "
        "evaluated token, µs | decode time in prompt steps | rows per decode-only step | "
        "decode-only steps, tok/s | S_TG at that batch | its CPU per token, µs |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c, row in split.items():
        batch = row.get("decode-only rows per step")
        near = min(measured, key=lambda b: abs(b - batch)) if batch and measured else None
        ref = lim.get(f"agg_{near}") if near else None
        ref_cpu = threads * 1e6 / ref if ref else None
        share = row.get("prompt steps share")
        cells = [
            _fmt(nim.get(f"agg_{c}")),
            _fmt(row.get("evaluated per generated")),
            _fmt(row.get("llama.cpp per evaluated")),
            "—" if share is None else f"{100 * share:.0f} %",
            _fmt(batch),
            _fmt(row.get("decode-only tok/s")),
            f"{_fmt(ref)} (batch {near})" if ref else "—",
            _fmt(ref_cpu),
        ]
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    return lines


def platform_lines(meta: dict[str, Any]) -> list[str]:
    plat = meta.get("platform_cold_start") or {}
    if not plat:
        return []
    lines = ["", "Platform start-up, measured locally by the adapters' harnesses (median, ms):", ""]
    lam = plat.get("lambda") or {}
    if "median_ms" in lam:
        m = lam["median_ms"]
        lines.append(
            f"- AWS Lambda (awslambdaric against a loopback Runtime API, "
            f"`python -m benchmarks.lambda_cold_start`): init {m['init']:.0f} ms, first response "
            f"{m['cold first']:.0f} ms, warm /api/generate of 32 tokens {m['warm gen']:.0f} ms."
        )
    elif lam:
        lines.append(f"- AWS Lambda harness: {lam.get('error', 'no result')}")
    mod = plat.get("modal") or {}
    if "median_ms" in mod:
        lines.append(
            "- Modal (the class's hooks, `python -m benchmarks.modal_local`): a memory-snapshot "
            f"restore still runs the weights load, warm-up and first request: "
            f"{mod['snapshot_restore_to_first_token_ms']:.0f} ms to the first token; without a "
            "snapshot (imports and the snap=True hook too) "
            f"{mod['no_snapshot_to_first_token_ms']:.0f} ms."
        )
    elif mod:
        lines.append(f"- Modal harness: {mod.get('error', 'no result')}")
    return lines


def markdown(
    results: dict[str, dict[str, Any]], labels: dict[str, str], meta: dict[str, Any]
) -> str:
    keys = [k for k in labels if k in results]
    lines = [
        f"Model `{meta['model_name']}`, {meta['threads']} threads, n_ctx {meta['n_ctx']}, "
        f"{meta['slots']} slots (nimbus, llama-server), {meta['max_tokens']} tokens per stream, "
        f"{meta['repeats']} repeats, long prompt {meta.get('long_prompt_tokens', '?')} tokens; "
        f"{meta['cpu']}. Command: `{meta['command']}`.",
        "",
        "| metric | " + " | ".join(labels[k] for k in keys) + " | nimbus / llama-server "
        "| nimbus / llama_cpp.server | nimbus / llama.cpp limit |",
        "|---|" + "---|" * (len(keys) + 3),
    ]
    nim = results.get("nimbus", {})
    for key, label, _ in METRICS:
        cells = [_fmt(results[k].get(key)) for k in keys]
        if all(c == "—" for c in cells):
            continue  # not measured by any peer in this run (e.g. a level not in --streams)
        ratios = [
            _ratio(nim.get(key), results.get(other, {}).get(key))
            for other in ("llama_server", "llama_cpp_server", "llama_limit")
        ]
        shown = " | ".join(_fmt(r) + "x" if r else "—" for r in ratios)
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {shown} |")
    if "llama_limit" in keys:
        lines += [
            "",
            f"{labels['llama_limit']}: single stream = `llama-bench` tg{meta['max_tokens']}, "
            "prefill = `llama-bench` pp512, aggregate and decode phase = `llama-batched-bench` "
            "S_TG (decode phase only: random tokens, no sampling, no HTTP, prompts of 32 tokens), "
            "generated tok/s incl. prefill = its tokens over prefill + decode time. Built from "
            f"the engine's llama.cpp with the wheel's flags ({meta.get('llama_cmake_args', '?')}).",
        ]
    lines += cpu_table(results, labels)
    lines += steps_table(results, meta)
    profile = results.get("nimbus", {}).get("profile")
    if isinstance(profile, str) and profile.startswith("|"):
        lines += [
            "",
            "Where nimbus's CPU goes at the highest concurrency (py-spy, profile.md):",
            "",
        ]
        lines += profile.rstrip("\n").splitlines()
    lines += platform_lines(meta)
    floor = meta.get("import_floor_s")
    if floor is not None:
        lines += [
            "",
            f"A bare `python -c 'import fastapi, uvicorn, pydantic_settings'` takes {floor:.2f} s "
            "on this machine: the floor under any FastAPI server's cold start, before a model is "
            "touched.",
        ]
    skipped = meta.get("skipped") or {}
    if skipped:
        lines += ["", *(f"- {labels.get(k, k)}: {why}" for k, why in skipped.items())]
    lines += ["", "| target | measured | met |", "|---|---|---|"]
    for what, shown, ok in targets(results):
        lines.append(f"| {what} | {shown} | {'yes' if ok else ('no' if ok is False else '—')} |")
    return "\n".join(lines) + "\n"


def write(
    out: Path,
    results: dict[str, dict[str, Any]],
    labels: dict[str, str],
    meta: dict[str, Any],
    chart: bool = True,
) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    md = out / "bench.md"
    md.write_text(markdown(results, labels, meta))
    js = out / "bench.json"
    payload = {
        "meta": meta,
        "results": results,
        "targets": [{"target": t, "measured": m, "met": ok} for t, m, ok in targets(results)],
    }
    js.write_text(json.dumps(payload, indent=2, default=str))
    written = [md, js]
    if chart:
        png = _chart(out / "bench.png", results, labels)
        if png is not None:
            written.append(png)
    return written


def _chart(path: Path, results: dict[str, dict[str, Any]], labels: dict[str, str]) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    keys = [k for k in labels if k in results]
    groups = [("single_tps", "1 stream\n(decode)")] + [
        (f"agg_{c}", f"{c} streams\n(aggregate)") for c in (2, 4, 8, 16)
    ]
    groups = [g for g in groups if any(results[k].get(g[0]) for k in keys)]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    width = 0.8 / max(1, len(keys))
    for i, k in enumerate(keys):
        vals = [results[k].get(g) or 0 for g, _ in groups]
        vals = [0 if isinstance(v, float) and math.isnan(v) else v for v in vals]
        ax.bar([x + i * width for x in range(len(groups))], vals, width, label=labels[k])
    ax.set_xticks([x + width * (len(keys) - 1) / 2 for x in range(len(groups))])
    ax.set_xticklabels([g for _, g in groups])
    ax.set_ylabel("tokens / s")
    ax.set_title("Throughput, same model, threads and prompts")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
