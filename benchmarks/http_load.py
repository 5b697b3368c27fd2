"""The workload every HTTP peer gets: OpenAI `/v1/completions`, greedy, streamed over loopback."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx


@dataclass
class StreamRun:
    started: float
    token_times: list[float] = field(default_factory=list)
    status: int = 0

    @property
    def ttft_s(self) -> float:
        return self.token_times[0] - self.started if self.token_times else float("nan")

    @property
    def decode_tps(self) -> float:
        t = self.token_times
        return (len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 and t[-1] > t[0] else float("nan")


def stream_completion(
    base_url: str,
    prompt: str,
    max_tokens: int,
    *,
    timeout: float = 600,
    client: httpx.Client | None = None,
) -> StreamRun:
    """One streamed completion; every SSE chunk with text counts as one token."""
    # No "model": every peer serves one model, and nimbus refuses names it does not serve.
    body = {
        "prompt": prompt,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
    }
    with contextlib.ExitStack() as stack:
        if client is None:
            client = stack.enter_context(httpx.Client(timeout=timeout))
        run = StreamRun(time.perf_counter())
        resp = stack.enter_context(client.stream("POST", f"{base_url}/v1/completions", json=body))
        run.status = resp.status_code
        for line in resp.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            choices = chunk.get("choices") or []
            if choices and choices[0].get("text"):
                run.token_times.append(time.perf_counter())
    return run


def concurrent_round(
    base_url: str, prompts: list[str], max_tokens: int
) -> tuple[float, list[StreamRun]]:
    """Start len(prompts) streams at once; returns (aggregate tokens/s, runs)."""
    t0 = time.perf_counter()
    with ThreadPoolExecutor(len(prompts)) as pool:
        runs = list(pool.map(lambda p: stream_completion(base_url, p, max_tokens), prompts))
    wall = time.perf_counter() - t0
    return sum(len(r.token_times) for r in runs) / wall, runs


def decode_phase_rate(runs: list[StreamRun]) -> float:
    """Tokens per second while every stream of a round was decoding: from the last stream's
    first token to the first stream's last token (prefill and stragglers left out), the window
    that llama-batched-bench's S_TG measures."""
    live = [r.token_times for r in runs if len(r.token_times) > 1]
    if len(live) != len(runs) or not live:
        return float("nan")
    start, end = max(t[0] for t in live), min(t[-1] for t in live)
    if end <= start:
        return float("nan")
    arrivals = sum(1 for t in live for x in t if start < x <= end)
    return arrivals / (end - start)


def prompt_latency(base_url: str, prompt: str) -> tuple[int, float]:
    """(prompt tokens, seconds) for a one-token completion: the prefill time of ``prompt``."""
    t0 = time.perf_counter()
    resp = httpx.post(
        f"{base_url}/v1/completions",
        json={"prompt": prompt, "max_tokens": 1, "temperature": 0},
        timeout=600,
    )
    elapsed = time.perf_counter() - t0
    resp.raise_for_status()
    return int(resp.json()["usage"]["prompt_tokens"]), elapsed


def _accepts(base_url: str) -> bool:
    url = httpx.URL(base_url)
    try:
        with socket.create_connection((url.host, url.port or 80), timeout=1):
            return True
    except OSError:
        return False


def first_token_when_up(
    base_url: str, prompt: str, deadline: float, alive: Callable[[], bool] = lambda: True
) -> float:
    """Poll until the server streams a token (it may be starting or loading); returns when.

    Polling is cheap on purpose (a bare TCP connect until the port opens, then one reused HTTP
    client): a client that burns a core while it waits slows the start it is timing, and on a
    2-core machine it slows a Python server's imports more than a C++ server's start."""
    with httpx.Client(timeout=60) as client:
        while time.perf_counter() < deadline:
            if not alive():
                raise RuntimeError(f"the server at {base_url} exited before answering")
            if not _accepts(base_url):
                time.sleep(0.005)
                continue
            try:
                run = stream_completion(base_url, prompt, 1, client=client)
            except httpx.TransportError:
                time.sleep(0.005)
                continue
            if run.status == 200 and run.token_times:
                return run.token_times[0]
            time.sleep(0.005)
    raise TimeoutError(f"{base_url} did not stream a token in time")
