"""In-process peers, each in its own process (so cold start and peak RSS are its own), driven
over stdin/stdout so their single streams can run side by side with the HTTP peers' rounds.

`python -m benchmarks.inproc raw|engine '<json workload>'` loads the model, streams one token
and prints `FIRST_TOKEN` the moment it exists (the parent times process start -> first token
from that), then answers one JSON command per stdin line with one JSON line:

- `{"cmd": "single", "prompt": ..., "max_tokens": n}` -> `{"ttft_s": .., "decode_tps": ..}`
- `{"cmd": "prefill", "prompt": ...}` -> `{"prefill_tps": ..}` (a one-token completion)
- `{"cmd": "aggregate"}` -> `{"rates": {"<streams>": tok/s}, "cpu": {"<streams>": {..}}}`
  (concurrent streams and the Python CPU time per token of each, benchmarks.probe; engine only)
- `{"cmd": "rss"}` -> `{"rss_mb": ..}` (peak RSS); then it exits.

Peers:
- raw: llama-cpp-python's `Llama` directly, the floor every server is measured against.
- engine: nimbus's LlamaEngine without HTTP (the rate the HTTP path should keep within 5% of).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable
from typing import Any


def _rss_peak_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _rates(t0: float, times: list[float]) -> dict[str, float]:
    ttft = (times[0] - t0) if times else float("nan")
    decode = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else float("nan")
    return {"ttft_s": ttft, "decode_tps": decode, "tokens": float(len(times))}


class RawPeer:
    def __init__(self, w: dict[str, Any]) -> None:
        from llama_cpp import Llama

        self.w = w
        self.llm = Llama(
            model_path=w["model"],
            n_ctx=w["n_ctx"],
            n_threads=w["threads"],
            n_threads_batch=w["threads"],
            n_batch=512,
            use_mmap=True,
            verbose=False,
        )

    def single(
        self, prompt: str, max_tokens: int, on_token: Callable[[], None] = lambda: None
    ) -> dict[str, float]:
        t0 = time.perf_counter()
        times: list[float] = []
        for chunk in self.llm.create_completion(
            prompt, max_tokens=max_tokens, temperature=0, stream=True
        ):
            if chunk["choices"][0]["text"]:
                times.append(time.perf_counter())
                on_token()
        return _rates(t0, times)

    def prefill(self, text: str) -> float:
        """Prompt tokens per second of a one-token completion of ``text``."""
        t0 = time.perf_counter()
        out: Any = self.llm.create_completion(text, max_tokens=1, temperature=0)
        return float(out["usage"]["prompt_tokens"]) / (time.perf_counter() - t0)

    def aggregate(self) -> dict[str, Any]:
        return {}  # one Llama object serves one request at a time


class EnginePeer:
    def __init__(self, w: dict[str, Any]) -> None:
        from benchmarks.probe import CpuProbe
        from core.engine.llama import LlamaEngine
        from core.settings import Settings

        self.w = w
        self.probe = CpuProbe()
        self.probe.install()
        settings = Settings(
            model=w["model"],
            engine={"n_ctx": w["n_ctx"], "n_threads": w["threads"], "slots": w["slots"]},
        )
        self.engine = LlamaEngine(settings)
        self.engine.load()
        self.loop = asyncio.new_event_loop()

    async def _one(
        self, text: str, max_tokens: int, on_token: Callable[[], None] = lambda: None
    ) -> tuple[float, list[float], int]:
        from core.engine.types import GenerationRequest, PromptSegment, SamplingParams

        request = GenerationRequest(
            prompt=(PromptSegment(text, special=True),),
            max_tokens=max_tokens,
            sampling=SamplingParams(temperature=0),
        )
        t0 = time.perf_counter()
        times: list[float] = []
        stream = self.engine.submit(request)
        async for _ in stream:
            times.append(time.perf_counter())
            on_token()
        assert stream.result is not None
        return t0, times, stream.result.prompt_tokens

    def single(
        self, prompt: str, max_tokens: int, on_token: Callable[[], None] = lambda: None
    ) -> dict[str, float]:
        t0, times, _ = self.loop.run_until_complete(self._one(prompt, max_tokens, on_token))
        return _rates(t0, times)

    def prefill(self, text: str) -> float:
        t0, times, n = self.loop.run_until_complete(self._one(text, 1))
        return n / ((times[0] if times else time.perf_counter()) - t0)

    def aggregate(self) -> dict[str, Any]:
        from benchmarks.probe import per_token

        w = self.w

        async def run() -> dict[str, Any]:
            aggregate: dict[str, float] = {}
            cpu: dict[str, dict[str, float]] = {}
            for c in w["streams"]:
                before = self.probe.snapshot()
                t0 = time.perf_counter()
                runs = await asyncio.gather(
                    *(
                        self._one(
                            f"Batch {c}.{k}. {w['prompts'][(k + c) % len(w['prompts'])]}",
                            w["max_tokens"],
                        )
                        for k in range(c)
                    )
                )
                total = sum(len(times) for _, times, _ in runs)
                aggregate[str(c)] = total / (time.perf_counter() - t0)
                cpu[str(c)] = per_token(before, self.probe.snapshot(), total)
            return {"rates": aggregate, "cpu": cpu}

        return self.loop.run_until_complete(run())


def main(kind: str, workload: dict[str, Any]) -> None:
    peer = RawPeer(workload) if kind == "raw" else EnginePeer(workload)
    marked = False

    def mark() -> None:
        nonlocal marked
        if not marked:
            print("FIRST_TOKEN", flush=True)
            marked = True

    peer.single(workload["prompts"][0], 1, mark)
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["cmd"] == "single":
            answer: Any = peer.single(cmd["prompt"], cmd["max_tokens"])
        elif cmd["cmd"] == "prefill":
            answer = {"prefill_tps": peer.prefill(cmd["prompt"])}
        elif cmd["cmd"] == "aggregate":
            answer = peer.aggregate()
        else:  # "rss": the last command
            print(json.dumps({"rss_mb": _rss_peak_mb()}), flush=True)
            return
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], json.loads(sys.argv[2]))
