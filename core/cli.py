"""The `nimbus` command: serve, generate, config, pull, models, inspect, bench, cost.

User errors print one line and exit 2."""

from __future__ import annotations

import argparse
import asyncio
import errno
import json
import logging
import os
import socket
import sys
import threading
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from core.errors import NimbusError
from core.models.commands import MODEL_HELP, progress_bar, register_model_commands
from core.settings import Settings, describe_fields, load_settings, setting_errors


def _settings_from(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    if getattr(args, "model", None):
        overrides["model"] = args.model
    server = {k: v for k in ("host", "port") if (v := getattr(args, k, None)) is not None}
    if server:
        overrides["server"] = server
    if getattr(args, "threads", None) is not None:
        overrides["engine"] = {"n_threads": args.threads}
    base = load_settings()
    merged = base.model_dump()
    for key, value in overrides.items():
        if isinstance(value, dict):
            merged[key].update(value)
        else:
            merged[key] = value
    return Settings(**merged)


def cmd_serve(args: argparse.Namespace) -> int:
    from core.engine.llama import LlamaEngine

    settings = _settings_from(args)
    logging.basicConfig(
        level=settings.server.log_level.upper(), format="%(levelname)s %(name)s: %(message)s"
    )
    engine = LlamaEngine(settings, progress=progress_bar())
    engine.resolve()  # a missing or non-GGUF model stops here, before the port opens
    sock = _listen(settings.server.host, settings.server.port)  # a taken port too
    server: Any = None
    failed = threading.Event()

    def load() -> None:
        try:
            engine.load()
        except NimbusError as exc:
            logging.getLogger("nimbus").error("%s", exc.message)
            failed.set()
            if server is not None:
                server.should_exit = True

    # Cold start: the model loads (llama.cpp import, mmap) while the web stack is imported and
    # the port opens; /api/health answers "loading" (503) in the meantime.
    threading.Thread(target=load, name="nimbus-load", daemon=True).start()
    import uvicorn

    from core.app import create_app

    app = create_app(settings, engine)
    config = uvicorn.Config(
        app,
        host=settings.server.host,
        port=sock.getsockname()[1],
        log_level=settings.server.log_level,
        access_log=settings.server.access_log,
    )
    server = uvicorn.Server(config)
    if failed.is_set():
        return 1
    server.run(sockets=[sock])
    return 0 if engine.state != "failed" else 1


def _listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything slow starts: a taken port or an address this
    machine does not have is a one-line error, not a traceback after the model has loaded."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError:
            sock.close()
            raise
    except OSError as exc:
        reason = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        raise UsageError(f"cannot listen on {host}:{port}: {reason or exc}") from exc
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def cmd_generate(args: argparse.Namespace) -> int:
    from core.api.generate import GenerateCall
    from core.api.protocol import GenerateRequest
    from core.api.service import GenerationService
    from core.engine.llama import LlamaEngine
    from core.security import RequestSecurity, Security

    settings = _settings_from(args)
    body = _validated(
        GenerateRequest,
        {
            "prompt": args.prompt,
            "maxTokens": args.max_tokens,
            "temperature": args.temperature,
            "seed": args.seed,
            "raw": args.raw,
        },
    )
    engine = LlamaEngine(settings, progress=progress_bar())
    engine.load()
    service = GenerationService(engine, settings.limits)
    # The same use-case as POST /api/generate; the terminal's user needs no API key.
    security = Security(settings, trusted=True)

    async def run() -> None:
        call = GenerateCall(service, RequestSecurity(security, client="cli"), body)
        async for text in call.text():
            sys.stdout.write(text)
            sys.stdout.flush()
        result = call.stream.result
        assert result is not None
        sys.stdout.write("\n")
        print(
            f"[{result.completion_tokens} tokens, {result.tokens_per_second:.1f} tok/s, "
            f"finish={result.finish_reason}]",
            file=sys.stderr,
        )

    try:
        asyncio.run(run())
    finally:
        engine.close()
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    settings = _settings_from(args)
    if args.json:
        print(json.dumps(settings.model_dump(mode="json"), indent=2))
        return 0
    rows = describe_fields(settings)
    if args.markdown:
        print("| Variable | Default | Description |\n|---|---|---|")
        for env, _type, value, desc in rows:
            shown = "(cores)" if env.endswith("N_THREADS") else value
            cell = str(shown).replace("|", "\\|")  # a '|' inside a value would split the row
            print(f"| `{env}` | `{cell}` | {desc} |")
        return 0
    width = max(len(r[0]) for r in rows)
    for env, _type, value, desc in rows:
        print(f"{env:<{width}}  {value!s:<24}  {desc}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """Run the benchmark harness (benchmarks/, which ships with the source tree, not the wheel)."""
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    if not (root / "benchmarks" / "run.py").exists():
        raise NimbusError(
            "the benchmark harness ships with the source tree: run it from a checkout"
        )
    cmd = [sys.executable, "-m", "benchmarks", *args.bench_args]
    return subprocess.call(cmd, cwd=root)


def cmd_cost(args: argparse.Namespace) -> int:
    from core.cost.command import run

    return run(args)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; with ``command`` (the subcommand about to run), other
    subcommands' own arguments are left out when mounting them would import their modules
    (``nimbus serve`` does not import the cost model: ~35 ms of CPU at every start)."""
    parser = argparse.ArgumentParser(
        prog="nimbus",
        description="Self-hosted LLM inference. Settings come from NIMBUS_* environment variables; "
        "flags override them. `nimbus config` shows the effective values.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def model_flag(p: argparse.ArgumentParser) -> None:
        p.add_argument("--model", help=MODEL_HELP)
        p.add_argument("--threads", type=int, help="CPU threads (default: all cores)")

    serve = sub.add_parser(
        "serve",
        help="serve the HTTP API (uvicorn)",
        description="Serve /api/* and the OpenAI-compatible /v1/* on HOST:PORT.",
    )
    serve.add_argument("--host", help="interface to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="TCP port (default 8000)")
    model_flag(serve)
    serve.set_defaults(func=cmd_serve)

    gen = sub.add_parser(
        "generate",
        help="generate text in-process, streaming to the terminal",
        description="Load the model in this process and stream a reply to stdout.",
    )
    gen.add_argument("prompt", help="the prompt (sent as a chat user message unless --raw)")
    gen.add_argument("--max-tokens", type=int, default=256, help="most tokens to generate (256)")
    gen.add_argument("--temperature", type=float, default=0.7, help="sampling temperature (0.7)")
    gen.add_argument("--seed", type=int, default=None, help="sampling seed for repeatable output")
    gen.add_argument(
        "--raw",
        action="store_true",
        help="send the prompt without the chat template (as the API's raw: true)",
    )
    model_flag(gen)
    gen.set_defaults(func=cmd_generate)

    cfg = sub.add_parser(
        "config",
        help="print the effective configuration",
        description="Print every setting with its NIMBUS_* variable and value.",
    )
    cfg.add_argument("--json", action="store_true", help="as JSON")
    cfg.add_argument("--markdown", action="store_true", help="as a Markdown table (for docs)")
    model_flag(cfg)
    cfg.set_defaults(func=cmd_config)

    register_model_commands(sub)  # pull, models, inspect

    bench = sub.add_parser(
        "bench",
        help="benchmark against llama-cpp-python, llama_cpp.server and llama-server",
        description="Run benchmarks/ side by side (same as `make bench`); extra arguments go to "
        "`python -m benchmarks` (e.g. --quick, --peers nimbus,llama_server).",
    )
    bench.set_defaults(func=cmd_bench)

    cost = sub.add_parser(
        "cost",
        help="what serving costs per platform, from measured throughput, against APIs",
        description="$/1M completion tokens, monthly cost and break-even volume per platform "
        "(AWS Lambda sizes, Modal, a Cloudflare Worker) and API, from a `nimbus bench` result "
        "or a short measurement and dated list prices (`nimbus cost prices`).",
    )
    if command in (None, "cost"):
        from core.cost.command import add_arguments as cost_arguments

        cost_arguments(cost)
    cost.set_defaults(func=cmd_cost)
    return parser


class UsageError(Exception):
    """A mistake the user can fix (a taken port, an invalid argument): one line, exit 2."""


def _validated(model: Any, data: dict[str, Any]) -> Any:
    """``model.model_validate(data)``; problems become one UsageError naming each field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise UsageError(problems) from exc


def main(argv: Sequence[str] | None = None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    # The first word that is not an option names the subcommand (the top level has only -h).
    parser = build_parser(next((a for a in args_in if not a.startswith("-")), None))
    args, extra = parser.parse_known_args(args_in)
    if args.command == "bench":
        args.bench_args = extra  # everything else belongs to the harness
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        code: int = args.func(args)
    except ValidationError as exc:  # settings from the environment or flags
        for line in setting_errors(exc):
            print(f"nimbus: error: {line}", file=sys.stderr)
        return 2
    except NimbusError as exc:
        print(f"nimbus: error: {exc.message}", file=sys.stderr)
        return 2
    except UsageError as exc:
        print(f"nimbus: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (`nimbus config | head -1`): stop quietly, as other tools do, and
        # keep the interpreter from complaining when it flushes stdout on exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
