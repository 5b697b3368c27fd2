"""Measured throughput, the only source of speed `nimbus cost` accepts: a `nimbus bench` JSON
result, or a short run of the real engine in this process (``measure``)."""

from __future__ import annotations

import asyncio
import json
import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import InvalidParameterError

# In a bench result, the HTTP server is what a deployment runs; the in-process engine is the
# fallback for a run made with --peers engine.
_BENCH_PEERS = ("nimbus", "engine")


@dataclass(frozen=True)
class Throughput:
    """What one engine did at one thread count."""

    threads: int
    single_tps: float
    """One stream's decode rate (tokens/s after its first token)."""
    prefill_tps: float
    """Prompt tokens/s of one request on an idle engine (no cached prefix)."""
    aggregate: dict[int, float]
    """Concurrent streams -> completion tokens/s of them all, wall clock, prefill included."""
    source: str
    rss_mb: float | None = None
    notes: tuple[str, ...] = field(default=())

    def aggregate_at(self, streams: int) -> tuple[int, float] | None:
        """(streams measured, tok/s) at ``streams``, else at the most streams measured below it,
        taken as a lower bound (batching more streams raises the engine's aggregate)."""
        below = [k for k in self.aggregate if k <= streams]
        if not below:
            return None
        k = max(below)
        return k, self.aggregate[k]


def _positive(value: Any, what: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise InvalidParameterError(
            f"{where}: {what} is missing or not a positive number ({value!r})", param="bench"
        )
    number = float(value)
    if not math.isfinite(number):
        raise InvalidParameterError(f"{where}: {what} is not finite", param="bench")
    return number


def from_bench(path: Path) -> Throughput:
    """Throughput of nimbus in a `nimbus bench` / `make bench` JSON result."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidParameterError(
            f"cannot read bench result {path}: {exc.strerror}", param="bench"
        ) from None
    except json.JSONDecodeError as exc:
        raise InvalidParameterError(
            f"{path} is not JSON ({exc.msg}, line {exc.lineno})", param="bench"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
        raise InvalidParameterError(
            f"{path} is not a `nimbus bench` result (no 'results')", param="bench"
        )
    raw_meta = data.get("meta")
    meta: dict[str, Any] = raw_meta if isinstance(raw_meta, dict) else {}
    peer = next((p for p in _BENCH_PEERS if isinstance(data["results"].get(p), dict)), None)
    if peer is None:
        raise InvalidParameterError(
            f"{path} has no nimbus result (peers: {', '.join(data['results'])}); "
            "run `nimbus bench --peers nimbus`",
            param="bench",
        )
    r = data["results"][peer]
    where = f"{path} ({peer})"
    threads = int(_positive(meta.get("threads"), "meta.threads", where))
    aggregate = {
        int(key[4:]): float(v)
        for key, v in r.items()
        if key.startswith("agg_")
        and key[4:].isdigit()
        and isinstance(v, int | float)
        and math.isfinite(v)
        and v > 0
    }
    when = meta.get("when", "undated")
    rss = r.get("rss_mb")
    return Throughput(
        threads=threads,
        single_tps=_positive(r.get("single_tps"), "single_tps", where),
        prefill_tps=_positive(r.get("prefill_tps"), "prefill_tps", where),
        aggregate=aggregate,
        source=f"{path} ({peer}, {when}, {meta.get('cpu', 'cpu unknown')})",
        rss_mb=float(rss) if isinstance(rss, int | float) and rss > 0 else None,
    )


# -- measuring on the spot --------------------------------------------------------------------
@dataclass(frozen=True)
class MeasureConfig:
    model: str
    prompt_tokens: int
    """Length of the prompt whose prefill is timed."""
    decode_tokens: int
    """Tokens each stream generates (single and concurrent rounds)."""
    streams: int
    """Concurrent streams of the aggregate round (the engine's slots)."""


def _peak_rss_mb() -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _counting_prompt(tag: str, start: int) -> str:
    # A counting prompt keeps a small model generating (no early end of text); the tag makes
    # every prompt new to the prefix cache.
    return f"{tag}. Count from {start} upwards: {start}, {start + 1}, {start + 2}, {start + 3},"


_FILLER = "The quick brown fox jumps over the lazy dog while the cat watches from the wall. "


async def _measure_engine(engine: Any, cfg: MeasureConfig, threads: int) -> Throughput:
    from core.engine.types import GenerationRequest, PromptSegment, SamplingParams

    stamp = f"{time.time():.6f}"

    async def run(text: str, max_tokens: int) -> Any:
        request = GenerationRequest(
            prompt=(PromptSegment(text, special=False),),
            max_tokens=max_tokens,
            sampling=SamplingParams(temperature=0.0),
        )
        stream = engine.submit(request)
        async for _ in stream:
            pass
        return stream.result

    await run(_counting_prompt(f"Warm-up {stamp}", 7), 4)  # first decode pays one-off costs

    # Prefill: a fresh prompt of about cfg.prompt_tokens tokens, one token generated.
    head = f"Prefill run {stamp}. "
    repeats = max(
        1, cfg.prompt_tokens // max(1, engine.count_tokens([PromptSegment(_FILLER, False)]))
    )
    text = head + _FILLER * repeats
    while repeats > 1 and engine.count_tokens([PromptSegment(text, False)]) > cfg.prompt_tokens:
        repeats -= 1
        text = head + _FILLER * repeats
    done = await run(text, 1)
    prefill_tps = done.prompt_tokens / done.total_s

    single = await run(_counting_prompt(f"Single {stamp}", 1), cfg.decode_tokens)
    decode_s = single.total_s - (single.time_to_first_token_s or 0.0)
    if single.completion_tokens < 2 or decode_s <= 0:
        raise InvalidParameterError(
            f"the model generated {single.completion_tokens} token(s): too few to time decoding",
            param="measure",
        )
    single_tps = (single.completion_tokens - 1) / decode_s

    t0 = time.perf_counter()
    results = await asyncio.gather(
        *(
            run(_counting_prompt(f"Batch {stamp}.{k}", 100 * k + 3), cfg.decode_tokens)
            for k in range(cfg.streams)
        )
    )
    wall = time.perf_counter() - t0
    aggregate = {cfg.streams: sum(r.completion_tokens for r in results) / wall}
    if cfg.streams != 1:
        aggregate[1] = single.completion_tokens / single.total_s
    return Throughput(
        threads=threads,
        single_tps=single_tps,
        prefill_tps=prefill_tps,
        aggregate=aggregate,
        source=(
            f"measured now in-process ({threads} threads, {os.cpu_count()} cores, "
            f"{done.prompt_tokens}-token prefill, {cfg.decode_tokens} tokens per stream, "
            f"{cfg.streams} streams; model {Path(engine.model_path or cfg.model).name})"
        ),
        rss_mb=_peak_rss_mb(),
    )


def measure(
    cfg: MeasureConfig,
    thread_counts: Iterable[int],
    progress: Callable[[str], None] = lambda _: None,
) -> dict[int, Throughput]:
    """Load the real engine once per thread count and time prefill, one stream and
    ``cfg.streams`` concurrent streams. Thread counts above this machine's cores are refused:
    a number measured on oversubscribed cores would describe nothing real."""
    from core.engine.llama import LlamaEngine
    from core.settings import load_settings

    cores = os.cpu_count() or 1
    out: dict[int, Throughput] = {}
    for threads in sorted(set(thread_counts)):
        if threads > cores:
            raise InvalidParameterError(
                f"cannot measure at {threads} threads on {cores} cores", param="measure"
            )
        n_ctx = max(
            1024, cfg.prompt_tokens + cfg.decode_tokens + 64, cfg.streams * (cfg.decode_tokens + 64)
        )
        settings = load_settings(
            model=cfg.model,
            engine={"n_threads": threads, "slots": cfg.streams, "n_ctx": n_ctx},
        )
        progress(f"measuring at {threads} thread(s)...")
        engine = LlamaEngine(settings)
        engine.load()
        try:
            out[threads] = asyncio.run(_measure_engine(engine, cfg, threads))
        finally:
            engine.close()
        t = out[threads]
        progress(
            f"  {threads} thread(s): decode {t.single_tps:.1f} tok/s, prefill "
            f"{t.prefill_tps:.0f} tok/s, {cfg.streams} streams {t.aggregate[cfg.streams]:.1f} tok/s"
        )
    return out
