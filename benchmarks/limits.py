"""llama.cpp's own benchmarks as the ceiling column: what the library decodes with no HTTP, no
Python and no sampling (random tokens), on the same model, threads and build flags.

- single stream: ``llama-bench`` tg<max_tokens> (tg128 in a full run), decode tok/s;
- prefill: ``llama-bench`` pp512;
- N streams: ``llama-batched-bench`` S_TG with N sequences of a ``PROMPT_TOKENS`` prompt each
  (about the length of the harness's prompts), decode-phase tok/s, and ``end_to_end``: the
  generated tokens over prefill plus decode time, which is what an aggregate over a whole
  round (prompts included) compares with.

Each call is one run of the program (it loads the model, warms up and measures), so the
harness can place it in the same rotation as the servers' rounds."""

from __future__ import annotations

import json
import math
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROMPT_TOKENS = 32
PREFILL_TOKENS = 512


class LimitError(RuntimeError):
    pass


def _run(cmd: list[str], timeout: float = 600) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout)[-600:]
        raise LimitError(f"{Path(cmd[0]).name} failed (exit {proc.returncode}): {tail}")
    return proc.stdout + "\n" + proc.stderr


def bench_tps(output: str) -> float:
    """avg_ts of the one test in ``llama-bench -o json`` output."""
    start = output.find("[")
    if start < 0:
        raise LimitError(f"llama-bench printed no JSON: {output[-300:]}")
    tests: list[dict[str, Any]] = json.JSONDecoder().raw_decode(output[start:])[0]
    if not tests:
        raise LimitError("llama-bench reported no test")
    return float(tests[0]["avg_ts"])


def batched_rows(output: str) -> list[dict[str, Any]]:
    """The JSON lines of ``llama-batched-bench --output-format jsonl``."""
    rows = []
    for line in output.splitlines():
        line = line.strip()
        if line.startswith("{") and '"speed_tg"' in line:
            rows.append(json.loads(line))
    if not rows:
        raise LimitError(f"llama-batched-bench printed no result: {output[-300:]}")
    return rows


@dataclass
class LlamaLimits:
    """Runs llama-bench and llama-batched-bench with the harness's model, threads and context."""

    bench: Path
    batched_bench: Path
    model: str
    threads: int
    n_ctx: int
    runs: list[list[str]] = field(default_factory=list)  # every command, for the report

    def _bench(self, *test: str) -> float:
        t = str(self.threads)
        cmd = [str(self.bench), "-m", self.model, "-t", t, "-r", "1", "-o", "json", *test]
        self.runs.append(cmd)
        return bench_tps(_run(cmd))

    def decode(self, tokens: int) -> float:
        """llama-bench tg<tokens>: one sequence's decode tok/s."""
        return self._bench("-p", "0", "-n", str(tokens))

    def prefill(self) -> float:
        """llama-bench pp512: prompt tok/s."""
        return self._bench("-p", str(PREFILL_TOKENS), "-n", "0")

    def batched(self, streams: int, tokens: int) -> dict[str, float]:
        """llama-batched-bench with ``streams`` sequences: S_TG (decode phase) and the generated
        tokens over prefill + decode time (``end_to_end``)."""
        t = str(self.threads)
        cmd = [
            str(self.batched_bench),
            "-m",
            self.model,
            "-c",
            str(self.n_ctx),
            "-b",
            "512",
            "-ub",
            "512",
            "-npp",
            str(PROMPT_TOKENS),
            "-ntg",
            str(tokens),
            "-npl",
            str(streams),
            "-t",
            t,
            "-tb",
            t,
            "-kvu",
            "--output-format",
            "jsonl",
        ]
        self.runs.append(cmd)
        row = batched_rows(_run(cmd))[-1]
        total = float(row["t"])
        generated = float(row["pl"]) * float(row["tg"])
        return {
            "s_tg": float(row["speed_tg"]),
            "end_to_end": generated / total if total > 0 else math.nan,
        }
