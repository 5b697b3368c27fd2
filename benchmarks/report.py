"""Results -> ratios against the peers and the performance targets; Markdown, JSON, a PNG chart."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

# (metric key, label, higher is better)
METRICS: list[tuple[str, str, bool]] = [
    ("single_tps", "single-stream decode, tok/s", True),
    ("ttft_p50_1", "TTFT p50, 1 stream, ms", False),
    ("ttft_p50_4", "TTFT p50, 4 streams, ms", False),
    ("ttft_p95_4", "TTFT p95, 4 streams, ms", False),
    ("agg_1", "aggregate tok/s, 1 stream", True),
    ("agg_2", "aggregate tok/s, 2 streams", True),
    ("agg_4", "aggregate tok/s, 4 streams", True),
    ("agg_8", "aggregate tok/s, 8 streams", True),
    ("prefill_tps", "prefill tok/s (long prompt, cold)", True),
    ("followup_ratio", "follow-up TTFT / cold prefill (prefix cache)", False),
    ("cold_start_s", "cold start: process start -> first token, s", False),
    ("rss_mb", "peak RSS, MB", False),
]


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


def targets(results: dict[str, dict[str, Any]]) -> list[tuple[str, str, bool | None]]:
    """The performance targets (docs/performance.md): (what, measured, met?)."""
    n = results.get("nimbus", {})
    cpp = results.get("llama_server", {})
    py = results.get("llama_cpp_server", {})
    eng = results.get("engine", {})
    rows: list[tuple[str, str, bool | None]] = []

    def check(what: str, value: float | None, ok: bool | None, unit: str = "x") -> None:
        shown = "—" if value is None else f"{value:.2f}{unit}"
        rows.append((what, shown, ok if value is not None else None))

    r = _ratio(n.get("single_tps"), cpp.get("single_tps"))
    check("single stream >= 1.0x llama-server", r, r is not None and r >= 1.0)
    r = _ratio(n.get("single_tps"), py.get("single_tps"))
    check("single stream >= 1.6x llama_cpp.server", r, r is not None and r >= 1.6)
    r = _ratio(n.get("agg_4"), cpp.get("agg_4"))
    check("aggregate @4 >= 1.0x llama-server", r, r is not None and r >= 1.0)
    r = _ratio(n.get("agg_4"), py.get("agg_4"))
    check("aggregate @4 >= 2x llama_cpp.server", r, r is not None and r >= 2.0)
    r = _ratio(n.get("agg_8"), n.get("prefill_tps"))
    check("aggregate @8 >= 0.75x own prefill rate", r, r is not None and r >= 0.75)
    r = _ratio(n.get("ttft_p50_4"), cpp.get("ttft_p50_4"))
    check("TTFT p50 @4 <= 2x llama-server", r, r is not None and r <= 2.0)
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
        "| nimbus / llama_cpp.server |",
        "|---|" + "---|" * (len(keys) + 2),
    ]
    nim = results.get("nimbus", {})
    for key, label, _ in METRICS:
        cells = [_fmt(results[k].get(key)) for k in keys]
        r1 = _ratio(nim.get(key), results.get("llama_server", {}).get(key))
        r2 = _ratio(nim.get(key), results.get("llama_cpp_server", {}).get(key))
        lines.append(
            f"| {label} | "
            + " | ".join(cells)
            + f" | {_fmt(r1) + 'x' if r1 else '—'} | {_fmt(r2) + 'x' if r2 else '—'} |"
        )
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
        (f"agg_{c}", f"{c} streams\n(aggregate)") for c in (2, 4, 8)
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
