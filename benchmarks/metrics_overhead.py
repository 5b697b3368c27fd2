"""What observing a request costs: the Python work per request of the metrics (Prometheus) and of
the request log line, and one /metrics scrape, measured in-process without the model.

    .venv/bin/python -m benchmarks.metrics_overhead [--number 20000]

Each figure is the best of 5 repeats of ``--number`` calls (timeit): the work nimbus adds to a
generation request (``Telemetry.request`` + ``Telemetry.completion`` with /metrics on; building
and writing the JSON line with the request log on), and a scrape of a registry that has seen one
request of each kind (engine gauges from a fake engine).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import timeit
from collections.abc import Callable

import httpx

from core.app import create_app
from core.engine.types import Completion
from core.metrics.prometheus import PrometheusRecorder
from core.metrics.requestlog import JsonLines, RequestLog, RequestRecord
from core.metrics.telemetry import Telemetry
from core.settings import Settings
from tests.support.fakes import FakeEngine


def best(fn: Callable[[], object], number: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=5)) / number


def scrape_seconds(number: int) -> float:
    settings = Settings(metrics={"enabled": True}, security={"rate_limit": {"enabled": False}})
    app = create_app(settings, FakeEngine())  # type: ignore[arg-type]

    async def run() -> float:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            await client.post("/api/generate", json={"prompt": "hi", "maxTokens": 3})
            await client.post("/v1/chat/completions", json={"messages": [], "max_tokens": 2})
            await client.get("/nope")
            times = []
            for _ in range(5):
                loop = asyncio.get_running_loop()
                start = loop.time()
                for _ in range(number):
                    await client.get("/metrics")
                times.append((loop.time() - start) / number)
            return min(times)

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=20000)
    args = parser.parse_args()
    telemetry = Telemetry([PrometheusRecorder()])
    completion = Completion(
        "x" * 40, "length", 33, 6, time_to_first_token_s=0.1, total_s=0.4, queue_wait_s=0.001
    )
    route = "/v1/chat/completions"
    record = RequestRecord("abc", "POST", route, route, completion=completion)
    log = RequestLog(JsonLines(io.StringIO()), model=lambda: "smollm2-135m-instruct")

    def metrics() -> None:
        telemetry.request(route, "POST", 200, 0.4)
        telemetry.completion(completion)

    print(f"metrics per generation request: {best(metrics, args.number) * 1e6:.1f} us")
    line = best(lambda: log.write(record, 200, 0.4), args.number)
    print(f"request log line:               {line * 1e6:.1f} us")
    print(f"GET /metrics (in-process ASGI): {scrape_seconds(200) * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
