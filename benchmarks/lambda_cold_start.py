"""Cold and warm start of the Lambda handler, measured locally with the real runtime interface
client (awslambdaric) against the loopback Runtime API the tests use.

    .venv/bin/python -m benchmarks.lambda_cold_start [--runs 5] [--s3]

Per run: a fresh runtime client process (= a new execution environment). Reported:
  init         process start -> first GET /invocation/next (imports + model resolve/load)
  cold first   process start -> first response (init + one /api/health invocation)
  warm health  one more /api/health invocation
  warm gen     /api/generate, 32 tokens, temperature 0
With --s3 the model comes from moto's S3 server on loopback (a download at memory speed; real S3
is slower: roughly model size / 50-100 MB/s).
This is a laptop-class box, not Lambda: Lambda adds its own image pull / sandbox start (often
seconds for multi-GB images) and gives CPU in proportion to memory.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support import lambda_events as ev
from tests.support.lambda_runtime import lambda_function


@contextmanager
def s3_model_env() -> Iterator[dict[str, str]]:
    import boto3
    from moto.server import ThreadedMotoServer

    from core.sources.resolve import bundled_model_path

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    s3.create_bucket(Bucket="nimbus-models")
    s3.upload_file(str(bundled_model_path()), "nimbus-models", "model.gguf")
    try:
        yield {"NIMBUS_MODEL": "s3://nimbus-models/model.gguf", "AWS_ENDPOINT_URL_S3": endpoint}
    finally:
        server.stop()


def one_run(tmp: Path, env: dict[str, str]) -> dict[str, float]:
    run_env = dict(env)
    if "NIMBUS_MODEL" in env:  # a fresh /tmp per environment: every cold start downloads
        run_env["NIMBUS_SOURCE__CACHE_DIR"] = tempfile.mkdtemp(dir=tmp)
    with lambda_function(tmp, **run_env) as fn:
        first = fn.api.invoke(ev.function_url("GET", "/api/health"))
        assert first.response["statusCode"] == 200, first.response
        assert first.answered_at is not None and fn.api.first_poll_at is not None
        init = fn.api.first_poll_at - fn.started_at
        cold = first.answered_at - fn.started_at
        started = time.monotonic()
        fn.api.invoke(ev.function_url("GET", "/api/health"))
        warm_health = time.monotonic() - started
        started = time.monotonic()
        gen = fn.api.invoke(
            ev.function_url(
                "POST",
                "/api/generate",
                {"prompt": "Tell me about clouds.", "maxTokens": 32, "temperature": 0},
            )
        )
        warm_gen = time.monotonic() - started
        assert gen.response["statusCode"] == 200
    return {"init": init, "cold first": cold, "warm health": warm_health, "warm gen": warm_gen}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--s3", action="store_true", help="load the model from S3 (moto)")
    parser.add_argument("--json", action="store_true", help="one JSON line of medians (ms)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        results: list[dict[str, float]] = []
        with s3_model_env() if args.s3 else _nothing() as env:
            for i in range(args.runs):
                results.append(one_run(tmp, env))
                print(
                    f"run {i + 1}/{args.runs}: "
                    + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in results[-1].items()),
                    file=sys.stderr if args.json else sys.stdout,
                    flush=True,
                )
    if args.json:  # for `make bench`: medians in ms
        medians = {k: statistics.median(r[k] * 1000 for r in results) for k in results[0]}
        print(json.dumps({"runs": args.runs, "median_ms": medians}))
        return
    source = "S3 (moto on loopback)" if args.s3 else "baked into the image (bundled wheel)"
    print(f"\nModel: {source}; {args.runs} runs; {os.cpu_count()} CPUs\n")
    print("| Phase | median | min | max |")
    print("|---|---|---|---|")
    for key in results[0]:
        values = [r[key] * 1000 for r in results]
        print(
            f"| {key} | {statistics.median(values):.0f} ms | {min(values):.0f} ms "
            f"| {max(values):.0f} ms |"
        )


@contextmanager
def _nothing() -> Iterator[dict[str, str]]:
    yield {}


if __name__ == "__main__":
    main()
