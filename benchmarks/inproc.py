"""In-process peers, each run in its own process (so cold start and peak RSS are its own).

`python -m benchmarks.inproc raw|engine '<json workload>'` prints `FIRST_TOKEN` the moment its
first token exists (the parent times process start -> first token from that), then one JSON
line with the measurements.

- raw: llama-cpp-python's `Llama` directly, the floor every server is measured against.
- engine: nimbus's LlamaEngine without HTTP (the rate the HTTP path should keep within 5% of).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any


def _rss_peak_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _first_token_marker() -> None:
    print("FIRST_TOKEN", flush=True)


def run_raw(w: dict[str, Any]) -> dict[str, Any]:
    from llama_cpp import Llama

    llm = Llama(
        model_path=w["model"],
        n_ctx=w["n_ctx"],
        n_threads=w["threads"],
        n_threads_batch=w["threads"],
        n_batch=512,
        use_mmap=True,
        verbose=False,
    )
    singles: list[dict[str, float]] = []
    marked = False
    for i in range(w["repeats"]):
        t0 = time.perf_counter()
        times: list[float] = []
        for chunk in llm.create_completion(
            w["prompts"][i % len(w["prompts"])],
            max_tokens=w["max_tokens"],
            temperature=0,
            stream=True,
        ):
            if chunk["choices"][0]["text"]:
                times.append(time.perf_counter())
                if not marked:
                    _first_token_marker()
                    marked = True
        singles.append(_rates(t0, times))
    prefill = []
    for i in range(w["repeats"]):
        text = f"{i} {time.time()} " + w["long_prompt"]
        t0 = time.perf_counter()
        out: Any = llm.create_completion(text, max_tokens=1, temperature=0)
        prefill.append(out["usage"]["prompt_tokens"] / (time.perf_counter() - t0))
    return {"single": singles, "prefill": prefill, "rss_mb": _rss_peak_mb()}


def run_engine(w: dict[str, Any]) -> dict[str, Any]:
    from core.engine.llama import LlamaEngine
    from core.engine.types import GenerationRequest, PromptSegment, SamplingParams
    from core.settings import Settings

    settings = Settings(
        model=w["model"],
        engine={"n_ctx": w["n_ctx"], "n_threads": w["threads"], "slots": w["slots"]},
    )
    engine = LlamaEngine(settings)
    engine.load()
    greedy = SamplingParams(temperature=0)
    marked = False

    def request(text: str, max_tokens: int) -> GenerationRequest:
        return GenerationRequest(
            prompt=(PromptSegment(text, special=True),), max_tokens=max_tokens, sampling=greedy
        )

    async def one(text: str, max_tokens: int) -> tuple[float, list[float], int]:
        nonlocal marked
        t0 = time.perf_counter()
        times: list[float] = []
        stream = engine.submit(request(text, max_tokens))
        async for _ in stream:
            times.append(time.perf_counter())
            if not marked:
                _first_token_marker()
                marked = True
        assert stream.result is not None
        return t0, times, stream.result.prompt_tokens

    async def main() -> dict[str, Any]:
        singles = []
        for i in range(w["repeats"]):
            t0, times, _ = await one(w["prompts"][i % len(w["prompts"])], w["max_tokens"])
            singles.append(_rates(t0, times))
        aggregate: dict[str, float] = {}
        for c in w["streams"]:
            t0 = time.perf_counter()
            runs = await asyncio.gather(
                *(one(w["prompts"][(k + c) % len(w["prompts"])], w["max_tokens"]) for k in range(c))
            )
            total = sum(len(times) for _, times, _ in runs)
            aggregate[str(c)] = total / (time.perf_counter() - t0)
        prefill = []
        for i in range(w["repeats"]):
            t0, times, n = await one(f"{i} {time.time()} " + w["long_prompt"], 1)
            prefill.append(n / ((times[0] if times else time.perf_counter()) - t0))
        return {
            "single": singles,
            "aggregate": aggregate,
            "prefill": prefill,
            "rss_mb": _rss_peak_mb(),
        }

    try:
        return asyncio.run(main())
    finally:
        engine.close()


def _rates(t0: float, times: list[float]) -> dict[str, float]:
    ttft = (times[0] - t0) if times else float("nan")
    decode = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else float("nan")
    return {"ttft_s": ttft, "decode_tps": decode, "tokens": float(len(times))}


if __name__ == "__main__":
    kind, workload = sys.argv[1], json.loads(sys.argv[2])
    result = run_raw(workload) if kind == "raw" else run_engine(workload)
    print(json.dumps(result), flush=True)
