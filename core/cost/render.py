"""Tables (plain text or Markdown), JSON and the chart of a cost report."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.cost.breakeven import BreakEven
from core.cost.model import HOURS_PER_MONTH, Option, Report
from core.cost.prices import PriceBook
from core.errors import InvalidParameterError


def usd(value: float | None) -> str:
    if value is None:
        return "—"
    if value == 0:
        return "$0"
    sign, x = ("-", -value) if value < 0 else ("", value)
    if x >= 1:
        return f"{sign}${x:,.2f}"
    # Three significant digits at most, never fewer than cents: $0.25, $0.40, $0.000263.
    decimals = max(2, 2 - math.floor(math.log10(x)))
    text = f"{x:.{decimals}f}".rstrip("0")
    whole, _, frac = text.partition(".")
    return f"{sign}${whole}.{frac.ljust(2, '0')}"


def count(value: float | None) -> str:
    return "—" if value is None else f"{round(value):,}"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*headers), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*row) for row in rows]
    return "\n".join(line.rstrip() for line in lines)


# -- the chapter's break-even ----------------------------------------------------------------
def break_even_text(result: BreakEven, cost_per_invocation: float, base: float) -> str:
    when = (
        f"{count(result.break_even_tokens)} tokens a month"
        if result.break_even_tokens is not None
        else "never (self-hosting costs more per token than the API)"
    )
    return "\n".join(
        [
            f"API cost:         {usd(result.api_monthly)} a month",
            f"Serverless cost:  {usd(result.serverless_monthly)} a month "
            f"({usd(base)} base + {count(result.invocations)} invocations x "
            f"{usd(cost_per_invocation)})",
            f"Monthly savings:  {usd(result.savings)}",
            f"Break-even at:    {when}",
        ]
    )


def break_even_json(result: BreakEven) -> dict[str, Any]:
    tokens = result.break_even_tokens
    return {
        "api_monthly": result.api_monthly,
        "serverless_monthly": result.serverless_monthly,
        "savings": result.savings,
        # Whole tokens; null when self-hosting never catches up.
        "break_even_tokens": None if tokens is None else round(tokens),
    }


# -- the platform report ----------------------------------------------------------------------
def _be(report: Report, option: Option) -> str:
    if not option.measured:
        return "—"
    tokens = report.break_even(option)
    if tokens is None:
        return "never"
    return "from the first token" if tokens == 0 else f"{count(tokens)} tokens"


def _platform_rows(report: Report) -> list[list[str]]:
    w, v = report.workload, report.tokens_per_month
    rows = []
    for o in report.options:
        shape = f"{o.threads} thr x {o.streams} stream" + ("s" if o.streams > 1 else "")
        if not o.measured:
            rows.append(
                [
                    o.label,
                    shape,
                    "not measured (see notes)",
                    *["—"] * 3,
                    usd(o.fixed_monthly()),
                    "—",
                    "—",
                ]
            )
            continue
        assert o.throughput is not None and o.decode_tps is not None
        rows.append(
            [
                o.label,
                shape,
                f"{o.decode_tps:.1f} / {o.throughput.prefill_tps:.0f}",
                f"{o.seconds_per_request:.2f}" if o.seconds_per_request is not None else "—",
                usd(o.per_request()),
                usd(o.per_m_completion(w)),
                usd(o.fixed_monthly()),
                usd(o.monthly(v, w)),
                _be(report, o),
            ]
        )
    return rows


def _api_rows(report: Report) -> list[list[str]]:
    w, v = report.workload, report.tokens_per_month
    return [
        [
            a.name + (" (break-even target)" if a.name == report.api.name else ""),
            f"{usd(a.input_per_m)} / {usd(a.output_per_m)}",
            usd(a.per_request(w)),
            usd(a.per_m_completion(w)),
            usd(a.monthly(v, w)),
        ]
        for a in report.apis
    ]


def assumptions(report: Report) -> list[str]:
    w = report.workload
    out = [
        f"A request is {w.prompt_tokens} prompt + {w.completion_tokens} completion tokens; "
        f"monthly volumes count both; a month is {HOURS_PER_MONTH} hours.",
        "Speeds are measured (sources above) on the CPU that ran the measurement; a cloud "
        "platform's CPUs differ, so re-measure there for exact figures.",
        "Billed time per request = prompt tokens / prefill rate + completion tokens / decode "
        "rate: prefill is billed time too.",
        "AWS Lambda: one request per execution environment (single-stream decode); vCPUs = "
        "memory / 1,769 MB (6 at 10,240 MB), run with NIMBUS_ENGINE__N_THREADS = whole vCPUs; "
        "no free tier; cold starts not included (a container image's init time is billed).",
        "Modal: a container decodes `slots` requests at once (more wait in its queue), so the "
        "decode rate is the aggregate at that many streams; min_containers are billed around "
        "the clock and absorb traffic first; beyond them containers are assumed fully packed "
        "(bursts and scale-down windows cost more); `cpu` is physical cores, measured on "
        "the machine's cores; no plan credits, region or non-preemptible multipliers.",
        "Cloudflare Worker: Workers Paid plan (included requests and CPU time, then per "
        "million); the origin's cost is added.",
        "APIs: list price, standard tier, no prompt caching or batch discount; an API counts "
        "tokens with its own tokenizer, and its model is far larger than a small local one.",
    ]
    return out


def report_text(report: Report, markdown: bool = False) -> str:
    w = report.workload
    requests = report.tokens_per_month / w.tokens
    parts = [
        f"Workload: {w.prompt_tokens} prompt + {w.completion_tokens} completion tokens per "
        f"request; {count(report.tokens_per_month)} tokens a month ({count(requests)} requests); "
        f"break-even against {report.api.name}.",
        "",
        "Throughput used:",
    ]
    for threads, t in sorted(report.throughputs.items()):
        agg = ", ".join(f"{k} streams {v:.1f}" for k, v in sorted(t.aggregate.items()))
        parts.append(
            f"- {threads} thread(s): decode {t.single_tps:.1f} tok/s, prefill "
            f"{t.prefill_tps:.0f} tok/s, aggregate {agg or '—'} tok/s; {t.source}"
        )
    if not report.throughputs:
        parts.append("- none")
    parts += [
        "",
        table(
            [
                "platform",
                "threads x streams",
                "decode / prefill tok/s",
                "s / request",
                "$ / request",
                "$ / 1M completion tokens",
                "fixed $ / month",
                f"$ / month at {count(report.tokens_per_month)}",
                f"break-even vs {report.api.name}",
            ],
            _platform_rows(report),
            markdown,
        ),
        "",
        table(
            [
                "API",
                "$ / 1M in / out",
                "$ / request",
                "$ / 1M completion tokens",
                f"$ / month at {count(report.tokens_per_month)}",
            ],
            _api_rows(report),
            markdown,
        ),
    ]
    notes = [
        f"{o.label}: {n}"
        for o in report.options
        for n in ([o.missing] if o.missing else []) + o.notes
    ]
    if notes:
        parts += ["", "Notes:", *(f"- {n}" for n in notes)]
    parts += ["", "Assumptions:", *(f"- {a}" for a in assumptions(report))]
    overridden = [p for p in report.book if p.overridden]
    dates = sorted({p.read for p in report.book})
    parts += [
        "",
        f"Prices: list prices read {', '.join(dates)} (`nimbus cost prices` shows each with its "
        "unit and source)"
        + (
            "; overridden: " + ", ".join(f"{p.key}={p.value:g} ({p.source})" for p in overridden)
            if overridden
            else ""
        )
        + ".",
    ]
    return "\n".join(parts)


def report_json(report: Report) -> dict[str, Any]:
    w, v = report.workload, report.tokens_per_month
    return {
        "workload": {"prompt_tokens": w.prompt_tokens, "completion_tokens": w.completion_tokens},
        "tokens_per_month": v,
        "requests_per_month": v / w.tokens,
        "api": report.api.name,
        "throughput": [
            {
                "threads": t.threads,
                "single_tps": t.single_tps,
                "prefill_tps": t.prefill_tps,
                "aggregate": {str(k): x for k, x in sorted(t.aggregate.items())},
                "source": t.source,
                "rss_mb": t.rss_mb,
            }
            for _, t in sorted(report.throughputs.items())
        ],
        "platforms": [
            {
                "key": o.key,
                "label": o.label,
                "platform": o.platform,
                "threads": o.threads,
                "streams": o.streams,
                "decode_tps": o.decode_tps,
                "prefill_tps": o.throughput.prefill_tps if o.throughput else None,
                "seconds_per_request": o.seconds_per_request,
                "usd_per_second": o.usd_per_second,
                "usd_per_request": o.per_request(),
                "usd_per_m_completion": o.per_m_completion(w),
                "fixed_monthly": o.fixed_monthly(),
                "monthly": o.monthly(v, w),
                "break_even_tokens": report.break_even(o),
                "missing": o.missing,
                "notes": o.notes,
            }
            for o in report.options
        ],
        "apis": [
            {
                "name": a.name,
                "input_per_m": a.input_per_m,
                "output_per_m": a.output_per_m,
                "usd_per_request": a.per_request(w),
                "usd_per_m_completion": a.per_m_completion(w),
                "monthly": a.monthly(v, w),
            }
            for a in report.apis
        ],
        "assumptions": assumptions(report),
        "prices": prices_json(report.book),
    }


def prices_json(book: PriceBook) -> dict[str, dict[str, Any]]:
    return {
        p.key: {
            "value": p.value,
            "unit": p.unit,
            "source": p.source,
            "read_via": p.read_via,
            "read": p.read,
            "note": p.note,
        }
        for p in book
    }


def prices_text(book: PriceBook, markdown: bool = False) -> str:
    rows = [
        [
            p.key,
            f"{p.value:g}",
            p.unit,
            p.read,
            p.source + (f" (read via {p.read_via})" if p.read_via else ""),
            p.note,
        ]
        for p in book
    ]
    return table(["price", "value", "unit", "read", "source", "note"], rows, markdown)


# -- the chart --------------------------------------------------------------------------------
def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise InvalidParameterError(
            "--plot needs matplotlib: pip install 'nimbus-llm[bench]'", param="plot"
        ) from None
    return plt


def _volumes(center: float) -> list[float]:
    low = 10 ** math.floor(math.log10(max(1.0, center / 1000)))
    high = 10 ** math.ceil(math.log10(center * 100))
    n = 200
    return [low * (high / low) ** (i / n) for i in range(n + 1)]


def _save(fig: Any, plt: Any, path: Path) -> Path:
    try:
        fig.savefig(path, dpi=110)
    except OSError as exc:
        raise InvalidParameterError(f"cannot write {path}: {exc.strerror}", param="plot") from None
    finally:
        plt.close(fig)
    return path


def plot_report(report: Report, path: Path) -> Path:
    """Monthly cost against monthly tokens: one line per measured platform and per API."""
    plt = _pyplot()
    w = report.workload
    xs = _volumes(report.tokens_per_month)
    fig, ax = plt.subplots(figsize=(10, 6))
    # Platforms: bold solid lines; APIs: thin dashed lines from another palette.
    platform_colors = plt.get_cmap("tab10").colors
    ramp = plt.get_cmap("viridis")
    api_colors = [ramp(i / max(1, len(report.apis) - 1) * 0.9) for i in range(len(report.apis))]
    measured = [o for o in report.options if o.measured]
    for i, o in enumerate(measured):
        ys = [o.monthly(x, w) for x in xs]
        ax.plot(xs, ys, linewidth=2.5, color=platform_colors[i % 10], label=o.label)
    for i, a in enumerate(report.apis):
        width = 2 if a.name == report.api.name else 1
        ax.plot(
            xs,
            [a.monthly(x, w) for x in xs],
            "--",
            linewidth=width,
            color=api_colors[i % len(api_colors)],
            label=f"API {a.name}",
        )
    ax.axvline(report.tokens_per_month, color="grey", linestyle=":", linewidth=1)
    ax.annotate(
        f"{report.tokens_per_month:,.0f} tokens",
        (report.tokens_per_month, 0.015),
        fontsize=7,
        color="grey",
        rotation=90,
        ha="right",
    )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(bottom=0.01)
    ax.set_xlabel(
        f"tokens a month ({w.prompt_tokens} prompt + {w.completion_tokens} completion per request)"
    )
    ax.set_ylabel("US$ a month")
    ax.set_title("Monthly cost against monthly tokens (measured throughput, list prices)")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return _save(fig, plt, path)


def plot_break_even(
    result: BreakEven,
    tokens_per_month: float,
    api_price_per_m: float,
    cost_per_invocation: float,
    tokens_per_invocation: float,
    base_monthly: float,
    path: Path,
) -> Path:
    plt = _pyplot()
    xs = _volumes(tokens_per_month)
    fig, ax = plt.subplots(figsize=(8, 5))
    ax.plot(xs, [x / 1e6 * api_price_per_m for x in xs], "--", label="API")
    ax.plot(
        xs,
        [base_monthly + x / tokens_per_invocation * cost_per_invocation for x in xs],
        label="serverless",
    )
    if result.break_even_tokens:
        ax.axvline(result.break_even_tokens, color="grey", linestyle=":", label="break-even")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("tokens a month")
    ax.set_ylabel("US$ a month")
    ax.legend()
    fig.tight_layout()
    return _save(fig, plt, path)
