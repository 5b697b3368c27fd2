"""`nimbus cost`: its arguments and what it runs (core/cli.py only mounts them)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from core.cost import model as m
from core.cost.breakeven import break_even
from core.cost.prices import load_book
from core.cost.render import (
    break_even_json,
    break_even_text,
    plot_break_even,
    plot_report,
    prices_json,
    prices_text,
    report_json,
    report_text,
)
from core.cost.throughput import MeasureConfig, Throughput, from_bench, measure
from core.errors import InvalidParameterError

DEFAULT_API = "gpt-4o-mini"
DEFAULT_TOKENS_PER_MONTH = 100_000_000  # the chapter's scenario
DEFAULT_PROMPT_TOKENS = 250  # with the completion: the chapter's 500 tokens per invocation
DEFAULT_COMPLETION_TOKENS = 250
DEFAULT_MEASURE_TOKENS = 64


def _price_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--prices",
        type=Path,
        action="append",
        default=[],
        metavar="FILE.toml",
        help="prices overriding the shipped ones (same shape as core/cost/prices.toml, or "
        "plain `key = number`); may repeat",
    )
    p.add_argument(
        "--price",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="one price, e.g. lambda.gb_second_x86_64=0.0000166667 or api.mine.output=0.5; "
        "may repeat",
    )


def add_arguments(cost: argparse.ArgumentParser) -> None:
    src = cost.add_argument_group("throughput (measured, never assumed)")
    src.add_argument(
        "--bench",
        type=Path,
        action="append",
        default=[],
        metavar="FILE.json",
        help="a `nimbus bench` result (benchmarks/results/bench.json); one per thread count",
    )
    src.add_argument(
        "--measure",
        action="store_true",
        help="measure now with the real engine, at each thread count the platforms need "
        "(up to this machine's cores)",
    )
    src.add_argument("--model", help="model for --measure ('default' = bundled SmolLM2-135M)")
    src.add_argument(
        "--measure-tokens",
        type=int,
        default=DEFAULT_MEASURE_TOKENS,
        help=f"tokens each stream generates in --measure ({DEFAULT_MEASURE_TOKENS})",
    )
    work = cost.add_argument_group("workload")
    work.add_argument(
        "--tokens-per-month",
        type=float,
        default=DEFAULT_TOKENS_PER_MONTH,
        help=f"monthly volume, prompt + completion tokens ({DEFAULT_TOKENS_PER_MONTH:,})",
    )
    work.add_argument(
        "--prompt-tokens", type=int, default=DEFAULT_PROMPT_TOKENS, help="per request (250)"
    )
    work.add_argument(
        "--completion-tokens",
        type=int,
        default=DEFAULT_COMPLETION_TOKENS,
        help="per request (250)",
    )
    work.add_argument(
        "--api", default=DEFAULT_API, help=f"API for the break-even column ({DEFAULT_API})"
    )
    plat = cost.add_argument_group("platforms")
    plat.add_argument(
        "--lambda-memory",
        default=",".join(str(x) for x in m.DEFAULT_LAMBDA_SIZES),
        help="Lambda sizes in MB, comma-separated (%(default)s)",
    )
    plat.add_argument(
        "--lambda-arch",
        default="x86_64",
        choices=["x86_64", "arm64"],
        help="its GB-second price (measure on that CPU for its speed)",
    )
    plat.add_argument(
        "--modal-cpu", type=float, help="physical cores per container (default: NIMBUS_MODAL__CPU)"
    )
    plat.add_argument(
        "--modal-memory-mb",
        type=int,
        help="memory per container (default: NIMBUS_MODAL__MEMORY_MB)",
    )
    plat.add_argument(
        "--modal-min-containers",
        type=int,
        help="warm containers billed around the clock (default: NIMBUS_MODAL__MIN_CONTAINERS)",
    )
    plat.add_argument(
        "--slots",
        type=int,
        help="requests a Modal container decodes together (default: NIMBUS_ENGINE__SLOTS)",
    )
    plat.add_argument(
        "--modal-gpu",
        action="append",
        default=[],
        metavar="GPU[=FILE.json]",
        help="also price a Modal container with this GPU (its idle cost; its cost per token "
        "from a bench result measured on that GPU); may repeat (default: NIMBUS_MODAL__GPU)",
    )
    plat.add_argument("--no-edge", action="store_true", help="leave out the Cloudflare row")
    plat.add_argument("--edge-origin", type=int, help="Lambda MB behind the Cloudflare Worker")
    plat.add_argument(
        "--edge-cpu-ms",
        type=float,
        help="Worker CPU milliseconds per request (not priced unless given)",
    )
    _price_flags(cost)
    out = cost.add_argument_group("output")
    out.add_argument("--json", action="store_true", help="as JSON")
    out.add_argument("--markdown", action="store_true", help="tables as Markdown")
    out.add_argument("--plot", type=Path, metavar="FILE.png", help="chart of monthly cost")

    sub = cost.add_subparsers(dest="cost_command", metavar="{break-even,prices}")
    be = sub.add_parser(
        "break-even",
        help="the reference chapter's break-even formula, from its inputs",
        description="API cost = tokens / 1M x price; serverless = base + tokens / "
        "tokens-per-invocation x cost-per-invocation; break-even where they meet.",
    )
    be.add_argument("--tokens-per-month", dest="be_tokens", type=float, required=True)
    be.add_argument("--api-price-per-m", dest="be_api_price", type=float, required=True)
    be.add_argument("--cost-per-invocation", dest="be_cpi", type=float, required=True)
    be.add_argument("--tokens-per-invocation", dest="be_tpi", type=float, required=True)
    be.add_argument("--base-monthly", dest="be_base", type=float, default=0.0)
    be.add_argument("--json", dest="be_json", action="store_true", help="as JSON")
    be.add_argument("--plot", dest="be_plot", type=Path, metavar="FILE.png")
    pr = sub.add_parser("prices", help="the price book: each price, its unit, source and date")
    _price_flags(pr)
    pr.add_argument("--json", dest="pr_json", action="store_true", help="as JSON")
    pr.add_argument("--markdown", dest="pr_markdown", action="store_true")


def run(args: argparse.Namespace) -> int:
    if args.cost_command == "break-even":
        return _break_even(args)
    if args.cost_command == "prices":
        book = load_book(args.prices, args.price)
        if args.pr_json:
            print(json.dumps(prices_json(book), indent=2))
        else:
            print(prices_text(book, markdown=args.pr_markdown))
        return 0
    return _report(args)


def _break_even(args: argparse.Namespace) -> int:
    result = break_even(args.be_tokens, args.be_api_price, args.be_cpi, args.be_tpi, args.be_base)
    if args.be_plot:
        plot_break_even(
            result,
            args.be_tokens,
            args.be_api_price,
            args.be_cpi,
            args.be_tpi,
            args.be_base,
            args.be_plot,
        )
    if args.be_json:
        print(json.dumps(break_even_json(result), indent=2))
    else:
        print(break_even_text(result, args.be_cpi, args.be_base))
    return 0


def _sizes(raw: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(x) for x in raw.split(",") if x.strip())
    except ValueError:
        raise InvalidParameterError(
            f"--lambda-memory wants MB numbers separated by commas, not {raw!r}",
            param="lambda-memory",
        ) from None
    return tuple(dict.fromkeys(sizes))


def _positive_int(value: int | None, flag: str, low: int = 1) -> None:
    if value is not None and value < low:
        raise InvalidParameterError(f"{flag} must be >= {low}", param=flag.lstrip("-"))


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _throughputs(args: argparse.Namespace, shape: m.Shape, model: str) -> dict[int, Throughput]:
    found: dict[int, Throughput] = {}
    for path in args.bench:
        result = from_bench(path)
        if result.threads in found:
            raise InvalidParameterError(
                f"two bench results at {result.threads} threads "
                f"({found[result.threads].source}, {path})",
                param="bench",
            )
        found[result.threads] = result
    if args.measure:
        cores = os.cpu_count() or 1
        wanted = sorted(t for t in shape.thread_counts() if t not in found)
        local = [t for t in wanted if t <= cores]
        for t in wanted:
            if t > cores:
                _say(f"not measured: {t} threads (this machine has {cores} cores)")
        if local:
            cfg = MeasureConfig(
                model=args.model or model,
                prompt_tokens=max(1, args.prompt_tokens),
                decode_tokens=args.measure_tokens,
                streams=shape.slots,
            )
            found.update(measure(cfg, local, progress=_say))
    elif not found:
        raise InvalidParameterError(
            "say where throughput comes from: --bench FILE.json (a `nimbus bench` result) "
            "or --measure (a short run of the real engine now)",
            param="bench",
        )
    return found


def _report(args: argparse.Namespace) -> int:
    from core.settings import load_settings

    for flag, value, low in (
        ("--measure-tokens", args.measure_tokens, 2),
        ("--slots", args.slots, 1),
        ("--modal-min-containers", args.modal_min_containers, 0),
        ("--modal-memory-mb", args.modal_memory_mb, 128),
    ):
        _positive_int(value, flag, low)
    if args.modal_cpu is not None and args.modal_cpu <= 0:
        raise InvalidParameterError("--modal-cpu must be > 0", param="modal-cpu")
    if args.edge_cpu_ms is not None and args.edge_cpu_ms < 0:
        raise InvalidParameterError("--edge-cpu-ms must be >= 0", param="edge-cpu-ms")
    book = load_book(args.prices, args.price)
    workload = m.Workload(args.prompt_tokens, args.completion_tokens)
    book.api(args.api)  # an unknown API fails before a measurement is spent
    settings = load_settings()  # the deployed shape: NIMBUS_ENGINE__SLOTS, NIMBUS_MODAL__*
    gpus: list[tuple[str, Throughput | None]] = []
    for item in args.modal_gpu or ([settings.modal.gpu] if settings.modal.gpu else []):
        name, sep, path = item.partition("=")
        if not name or (sep and not path):
            raise InvalidParameterError(
                f"--modal-gpu wants GPU or GPU=FILE.json (e.g. T4=bench-t4.json), not {item!r}",
                param="modal-gpu",
            )
        gpus.append((name, from_bench(Path(path)) if path else None))

    def given(value: Any, default: Any) -> Any:
        return default if value is None else value

    shape = m.Shape(
        lambda_memory_mb=_sizes(args.lambda_memory),
        lambda_arch=args.lambda_arch,
        modal_cpu=given(args.modal_cpu, settings.modal.cpu),
        modal_memory_mb=given(args.modal_memory_mb, settings.modal.memory_mb),
        modal_min_containers=given(args.modal_min_containers, settings.modal.min_containers),
        slots=given(args.slots, settings.engine.slots),
        modal_gpus=tuple(gpus),
        edge=not args.no_edge,
        edge_origin_mb=args.edge_origin,
        edge_cpu_ms=args.edge_cpu_ms,
    )
    m.build_options(shape, book, {}, workload)  # shapes are checked before measuring, too
    throughputs = _throughputs(args, shape, settings.model)
    report = m.build_report(workload, args.tokens_per_month, args.api, shape, book, throughputs)
    if args.plot:
        plot_report(report, args.plot)
        _say(f"wrote {args.plot}")
    payload: Any = report_json(report) if args.json else report_text(report, args.markdown)
    print(json.dumps(payload, indent=2) if args.json else payload)
    return 0
