"""What finished requests' KV cells cost a long prompt: its prefill rate on a fresh engine and
right after a round of concurrent streams, with the finished streams' cells kept in the shared
KV cache (``NIMBUS_ENGINE__IDLE_CACHE_MB=0``) and moved to host memory when the prompt starts
(the default), beside a control on a fresh engine after the same time of CPU burn in other
processes (the machine's own slow-down under sustained load, which the round also causes).

    .venv/bin/python -m benchmarks.kv_spread [--streams 16] [--tokens 128] [--repeats 3]

llama.cpp attends over every cell up to the highest one in use, so cells left by finished
requests make each prompt token attend over more of the cache, masked or not. Each repeat loads
a fresh engine for each measurement; the table gives the median of the repeats.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from typing import Any

from benchmarks.run import _SENTENCE
from core.engine.llama import LlamaEngine
from core.engine.types import GenerationRequest, PromptSegment, SamplingParams
from core.settings import Settings

_COUNT = "Count from {start} upwards: {start}, {n1}, {n2}, {n3},"


def _engine(args: argparse.Namespace, idle_cache_mb: int) -> LlamaEngine:
    settings = Settings(
        engine={  # type: ignore[arg-type]
            "n_ctx": args.n_ctx,
            "n_threads": args.threads,
            "slots": args.streams,
            "idle_cache_mb": idle_cache_mb,
        }
    )
    engine = LlamaEngine(settings)
    engine.load()
    return engine


async def _generate(engine: LlamaEngine, text: str, max_tokens: int) -> tuple[int, float]:
    request = GenerationRequest(
        prompt=(PromptSegment(text, special=True),),
        max_tokens=max_tokens,
        sampling=SamplingParams(temperature=0),
    )
    started = time.perf_counter()
    completion = await engine.submit(request).collect()
    return completion.prompt_tokens, time.perf_counter() - started


def prefill_tps(engine: LlamaEngine, tag: str, sentences: int) -> float:
    """Prompt tokens per second of a one-token completion of a fresh long prompt."""
    tokens, seconds = asyncio.run(_generate(engine, f"{tag}. {_SENTENCE * sentences}", 1))
    return tokens / seconds


def round_of_streams(engine: LlamaEngine, tag: str, streams: int, tokens: int) -> tuple[float, int]:
    """Seconds ``streams`` concurrent greedy completions of ``tokens`` tokens took, and their
    prompt tokens."""

    async def run() -> list[tuple[int, float]]:
        return await asyncio.gather(
            *(
                _generate(
                    engine,
                    f"{tag} {k}. "
                    + _COUNT.format(start=100 * k, n1=100 * k + 1, n2=100 * k + 2, n3=100 * k + 3),
                    tokens,
                )
                for k in range(streams)
            )
        )

    started = time.perf_counter()
    done = asyncio.run(run())
    return time.perf_counter() - started, sum(prompt for prompt, _ in done)


def burn(seconds: float, processes: int) -> None:
    """Keep ``processes`` other processes busy for ``seconds`` (the control's load)."""
    code = f"import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end: pass"
    procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(processes)]
    for proc in procs:
        proc.wait()


KEPT = "after the round, idle cells kept in the context"
MOVED = "after the round, idle cells moved to host memory"


def measure(args: argparse.Namespace) -> dict[str, Any]:
    rows: dict[str, list[float]] = {"fresh": [], KEPT: [], MOVED: [], "after a burn": []}
    cells: list[int] = []
    prompts: list[int] = []
    for r in range(args.repeats):
        spent = 0.0
        for name, idle_mb in ((KEPT, 0), (MOVED, args.idle_cache_mb)):
            engine = _engine(args, idle_mb)
            try:
                prefill_tps(engine, f"Warm-up {r}", 2)
                rows["fresh"].append(prefill_tps(engine, f"Fresh {name} {r}", args.sentences))
                seconds, prompt = round_of_streams(engine, f"Round {r}", args.streams, args.tokens)
                spent = max(spent, seconds)
                cells.append(engine.stats().kv_cells_used)
                prompts.append(prompt)
                rows[name].append(prefill_tps(engine, f"After {name} {r}", args.sentences))
            finally:
                engine.close()
        engine = _engine(args, args.idle_cache_mb)
        try:
            prefill_tps(engine, f"Warm-up control {r}", 2)
            burn(spent, args.threads)
            rows["after a burn"].append(prefill_tps(engine, f"Control {r}", args.sentences))
        finally:
            engine.close()
        print(
            f"kv_spread: repeat {r + 1}/{args.repeats}: "
            + ", ".join(f"{k} {v[-1]:.0f} tok/s" for k, v in rows.items())
            + f"; {cells[-1]} cells in use after the round ({spent:.1f} s)",
            file=sys.stderr,
            flush=True,
        )
    return {
        "prefill_tps": {k: statistics.median(v) for k, v in rows.items()},
        "runs": rows,
        "cells_after_round": cells,
        "round_prompt_tokens": prompts,
        "n_ctx": args.n_ctx,
    }


def markdown(result: dict[str, Any], args: argparse.Namespace) -> str:
    fresh = result["prefill_tps"]["fresh"]
    lines = [
        f"Long-prompt prefill ({args.sentences} sentences), {args.streams} slots, "
        f"n_ctx {args.n_ctx}, {args.threads} threads; median of {args.repeats} repeats:",
        "",
        "| engine state | prefill tok/s | vs fresh |",
        "|---|---|---|",
    ]
    for name, tps in result["prefill_tps"].items():
        lines.append(f"| {name} | {tps:.0f} | {tps / fresh:.2f}x |")
    lines += [
        "",
        f"KV cells in use after the round ({args.streams} streams x {args.tokens} tokens): "
        f"{', '.join(str(c) for c in result['cells_after_round'])} of {args.n_ctx}.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sentences", type=int, default=60, help="length of the long prompt")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n-ctx", type=int, default=4096)
    parser.add_argument(
        "--idle-cache-mb", type=int, default=256, help="NIMBUS_ENGINE__IDLE_CACHE_MB when moved"
    )
    args = parser.parse_args(argv)
    print(markdown(measure(args), args))


if __name__ == "__main__":
    main()
