"""Smoke-test a deployed nimbus-llm endpoint (Modal, or any URL serving the same app).

    URL=https://<workspace>--nimbus-llm-model-web.modal.run
    NIMBUS_API_KEY=<key> .venv/bin/python deploy/modal/smoke.py $URL
    NIMBUS_API_KEY=<key> .venv/bin/python deploy/modal/smoke.py $URL --modal-app nimbus-llm
        # --modal-app: also Model().generate.remote()

Waits for /api/health to turn ready (a cold start answers 503 "loading" first), then checks
/api/generate (whole and streamed) and /v1 with the official openai client. Prints one line
per check with its latency; exits 1 on the first failure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx


def check(name: str, fn: Callable[[], str]) -> None:
    started = time.perf_counter()
    try:
        detail = fn()
    except Exception as exc:
        print(f"FAIL {name}: {type(exc).__name__}: {exc}")
        raise SystemExit(1) from exc
    print(f"ok   {name} ({(time.perf_counter() - started) * 1000:.0f} ms): {detail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", nargs="?", default=os.environ.get("NIMBUS_URL"), help="base URL")
    parser.add_argument("--api-key", default=os.environ.get("NIMBUS_API_KEY"))
    parser.add_argument("--wait", type=float, default=300, help="seconds to wait for readiness")
    parser.add_argument("--modal-app", help="also call Model().generate.remote() in this app")
    args = parser.parse_args(argv)
    if not args.url:
        parser.error("give the endpoint URL (or set NIMBUS_URL)")
    base = args.url.rstrip("/")
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    http = httpx.Client(base_url=base, headers=headers, timeout=120)

    def health() -> str:
        deadline = time.monotonic() + args.wait
        while True:
            reply = http.get("/api/health")
            if reply.status_code == 200:
                body = reply.json()
                return f"{body['status']} model={body['model']}"
            if reply.status_code != 503 or time.monotonic() > deadline:
                reply.raise_for_status()
                raise RuntimeError(f"not ready: {reply.text}")
            time.sleep(2)

    def generate() -> str:
        reply = http.post("/api/generate", json={"prompt": "What is 2 + 2?", "maxTokens": 16})
        reply.raise_for_status()
        body: dict[str, Any] = reply.json()
        if not body["text"] or body["tokens"] < 1:
            raise RuntimeError(f"empty reply: {body}")
        return f"{body['tokens']} tokens: {body['text']!r}"

    def stream() -> str:
        tokens: list[str] = []
        first: float | None = None
        started = time.perf_counter()
        payload = {"prompt": "Count to five.", "maxTokens": 24, "stream": True}
        with http.stream("POST", "/api/generate", json=payload) as reply:
            reply.raise_for_status()
            for line in reply.iter_lines():
                if not line.startswith("data: "):
                    continue
                data = line.removeprefix("data: ")
                if data == "[DONE]":
                    break
                first = first or time.perf_counter()
                tokens.append(json.loads(data)["token"])
        if not tokens or first is None:
            raise RuntimeError("no tokens streamed")
        ttft = (first - started) * 1000
        return f"{len(tokens)} events, first after {ttft:.0f} ms: {''.join(tokens)!r}"

    def openai_chat() -> str:
        from openai import OpenAI

        client = OpenAI(base_url=f"{base}/v1", api_key=args.api_key or "unused", max_retries=0)
        model = client.models.list().data[0].id
        chat = client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "Name one planet."}],
            max_tokens=16,
        )
        streamed = "".join(
            chunk.choices[0].delta.content or ""
            for chunk in client.chat.completions.create(
                model=model,
                messages=[{"role": "user", "content": "Say hello."}],
                max_tokens=8,
                stream=True,
            )
            if chunk.choices
        )
        if not chat.choices[0].message.content or not streamed:
            raise RuntimeError("empty chat completion")
        return f"{model}: {chat.choices[0].message.content!r} / streamed {streamed!r}"

    def remote_method() -> str:
        import modal

        model = modal.Cls.from_name(args.modal_app, "Model")()
        reply = model.generate.remote("What is the capital of France?", max_tokens=16)
        return f"{reply['tokens']} tokens: {reply['text']!r}"

    check("health", health)
    check("generate", generate)
    check("generate stream", stream)
    check("openai client", openai_chat)
    if args.modal_app:
        check("Model().generate.remote", remote_method)
    print("smoke test passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
