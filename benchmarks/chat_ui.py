"""The chat page's two modes measured in headless Chromium: tok/s and time to first token as
the page itself reports them (server mode: nimbus streaming over loopback; in-browser mode:
the same GGUF in wllama's WebAssembly build), plus a screenshot of each mode.

    python -m benchmarks.chat_ui [--runs 5] [--max-tokens 64] [--screenshots docs]

Needs Debian's chromium (`make browser`) and Playwright (the dev extra). Starts nimbus on the
bundled model with the model file route on; all traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import io
import socket
import statistics
import threading
import time
from pathlib import Path
from typing import Any

from tests.support.browser import CHROMIUM, CHROMIUM_ARGS

PROMPT = "Write a short paragraph about the sea."
ENDED = (
    "() => ['done', 'stopped', 'error'].includes(document.getElementById('stats').dataset.state)"
)
LOADED = (
    "() => ['ready', 'error'].includes(document.getElementById('browser-status').dataset.state)"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_nimbus() -> tuple[str, Any, Any]:
    import uvicorn

    from core.app import create_app
    from core.engine.llama import LlamaEngine
    from core.settings import load_settings

    settings = load_settings(ui={"serve_model_file": True})
    engine = LlamaEngine(settings)
    engine.load()
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, engine), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    return f"http://127.0.0.1:{port}", server, engine


def ask(page: Any, max_tokens: int) -> dict[str, str]:
    page.click("#clear")  # the same prompt each run, no growing history
    page.fill("#temperature", "0")
    page.fill("#max-tokens", str(max_tokens))
    page.fill("#prompt", PROMPT)
    page.click("#send")
    page.wait_for_function(ENDED, timeout=600_000)
    figures = dict(page.eval_on_selector("#stats", "el => ({...el.dataset})"))
    if figures["state"] != "done":
        raise RuntimeError(f"the page reported {figures}: {page.text_content('#error')}")
    return figures


def measure(page: Any, mode: str, runs: int, max_tokens: int) -> dict[str, float]:
    ask(page, max_tokens)  # warm-up, not counted
    results = []
    for i in range(runs):
        results.append(ask(page, max_tokens))
        print(f"{mode} run {i + 1}/{runs}: {results[-1]}", flush=True)
    return {
        "tok_s": statistics.median(float(r["tokPerS"]) for r in results),
        "ttft_ms": statistics.median(float(r["ttftMs"]) for r in results),
        "tokens": statistics.median(int(r["tokens"]) for r in results),
    }


def screenshot(page: Any, path: Path) -> None:
    """A PNG of the page, reduced to a 64-colour palette so it stays small in the repo."""
    from PIL import Image

    image = Image.open(io.BytesIO(page.screenshot())).convert("RGB")
    image.quantize(colors=64).save(path, optimize=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.chat_ui", description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--screenshots", type=Path, help="write chat-ui-{server,browser}.png here")
    args = parser.parse_args(argv)

    from playwright.sync_api import sync_playwright

    base_url, server, engine = start_nimbus()
    rows: dict[str, dict[str, float]] = {}
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1100, "height": 680})
            page.goto(base_url + "/chat")
            page.wait_for_function("() => document.body.dataset.ready === 'true'")
            rows["server"] = measure(page, "server", args.runs, args.max_tokens)
            if args.screenshots:
                screenshot(page, args.screenshots / "chat-ui-server.png")
            page.check("input[value=browser]")
            started = time.perf_counter()
            page.wait_for_function(LOADED, timeout=600_000)
            load_s = time.perf_counter() - started
            rows["in-browser (WebAssembly)"] = measure(page, "browser", args.runs, args.max_tokens)
            if args.screenshots:
                screenshot(page, args.screenshots / "chat-ui-browser.png")
            threads = page.text_content("#browser-status")
            browser.close()
    finally:
        server.should_exit = True
        engine.close()

    print(f"prompt {PROMPT!r}, temperature 0, max_tokens {args.max_tokens}, median of {args.runs}")
    print(f"server engine threads: {engine_threads()}; {threads}")
    print(f"in-browser model load (download + WebAssembly start): {load_s:.1f} s\n")
    print("| mode | tok/s | TTFT (ms) | tokens |")
    print("| --- | ---: | ---: | ---: |")
    for mode, r in rows.items():
        print(f"| {mode} | {r['tok_s']:.1f} | {r['ttft_ms']:.0f} | {r['tokens']:.0f} |")
    return 0


def engine_threads() -> int:
    from core.settings import load_settings

    return load_settings().engine.n_threads


if __name__ == "__main__":
    raise SystemExit(main())
