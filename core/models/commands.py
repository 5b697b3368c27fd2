"""`nimbus pull`, `nimbus models` and `nimbus inspect`: thin commands over core.sources and
core.models."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from core.errors import InvalidParameterError
from core.models.platforms import PLATFORMS
from core.settings import Settings, load_settings

MODEL_HELP = (
    "'default' (bundled SmolLM2-135M), a GGUF path or directory, "
    "hf://owner/repo[/file.gguf|:QUANT][@revision], or s3://bucket/key"
)


def register_model_commands(sub: Any) -> None:
    """Add pull, models and inspect to the `nimbus` subcommand parser."""
    pull = sub.add_parser(
        "pull",
        help="download and verify a model into the cache",
        description="Download MODEL (hf://, s3://) into its cache, verify it (Hub sha256, GGUF "
        "magic) and print its path, size and sha256. Local and bundled models are verified only.",
    )
    pull.add_argument("model", help=MODEL_HELP)
    pull.add_argument(
        "--to",
        type=Path,
        metavar="DIR",
        help="also copy the model's file(s) into DIR (baking a model into an image)",
    )
    pull.set_defaults(func=cmd_pull)

    models = sub.add_parser(
        "models",
        help="list cached models with sizes",
        description="Models in the Hub cache (HF_HOME) and the s3:// download cache "
        "(NIMBUS_SOURCE__CACHE_DIR), each with the spec that serves it.",
    )
    models.add_argument("--json", action="store_true", help="as JSON")
    models.set_defaults(func=cmd_models)

    inspect = sub.add_parser(
        "inspect",
        help="read a model's GGUF header and estimate its memory",
        description="Read MODEL's GGUF header (fetching it first if remote) and estimate the "
        "memory `nimbus serve` needs for --ctx and --slots; --platform turns that into a size.",
    )
    inspect.add_argument("model", help=MODEL_HELP)
    inspect.add_argument("--ctx", type=int, help="context window (default NIMBUS_ENGINE__N_CTX)")
    inspect.add_argument("--slots", type=int, help="parallel requests (NIMBUS_ENGINE__SLOTS)")
    inspect.add_argument("--batch", type=int, help="tokens per decode (NIMBUS_ENGINE__N_BATCH)")
    inspect.add_argument("--platform", choices=PLATFORMS, help="recommend a size on a platform")
    inspect.add_argument("--json", action="store_true", help="as JSON")
    inspect.set_defaults(func=cmd_inspect)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is when a record comes (it may be replaced meanwhile)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def _progress() -> Callable[[int, int], None] | None:
    """A terminal bar; without a terminal, None: downloads then log their progress, and those
    log lines (nimbus.sources only, not every HTTP request) go to stderr."""
    if not sys.stderr.isatty():
        sources = logging.getLogger("nimbus.sources")
        if not any(isinstance(h, _StderrHandler) for h in sources.handlers):
            handler = _StderrHandler()
            handler.setFormatter(logging.Formatter("%(message)s"))
            sources.addHandler(handler)
        sources.setLevel(logging.INFO)
        return None
    return progress_bar()


def progress_bar() -> Callable[[int, int], None]:
    """A tqdm bar for model downloads, created on the first progress report."""
    bar: Any = None

    def report(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            from tqdm import tqdm

            bar = tqdm(total=total, unit="B", unit_scale=True, desc="model", file=sys.stderr)
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return report


def _settings(**engine: int | None) -> Settings:
    base = load_settings()
    given = {k: v for k, v in engine.items() if v is not None}
    if not given:
        return base
    merged = base.model_dump()
    merged["engine"].update(given)
    try:
        return Settings(**merged)
    except ValidationError as exc:
        flags = {"n_ctx": "--ctx", "slots": "--slots", "n_batch": "--batch"}
        err = exc.errors()[0]
        flag = flags.get(str(err["loc"][-1]), str(err["loc"][-1]))
        raise InvalidParameterError(f"{flag}: {err['msg']}") from exc


def cmd_pull(args: argparse.Namespace) -> int:
    from core.sources.pull import export_model, pull_model

    pulled = pull_model(args.model, load_settings().source, progress=_progress())
    print(f"model   {pulled.source}")
    if pulled.revision:
        print(f"commit  {pulled.revision}")
    print(f"path    {pulled.path}")
    print(f"size    {pulled.size:,} bytes ({pulled.size / 1e6:,.1f} MB)")
    if len(pulled.files) == 1:
        print(f"sha256  {pulled.files[0].sha256 or '(not listed by the Hub)'}")
    else:
        for i, f in enumerate(pulled.files, 1):
            print(f"part {i}  {f.path.name}  {f.size:,} bytes  sha256 {f.sha256}")
    if args.to is not None:
        print(f"copied  {export_model(pulled, args.to)}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from core.sources.hf import hub_env
    from core.sources.pull import cached_models

    settings = load_settings()
    found = cached_models(settings.source)
    if args.json:
        rows = [{"model": m.spec, "size": m.size, "path": str(m.path)} for m in found]
        print(json.dumps(rows, indent=2))
        return 0
    if not found:
        print(
            f"no cached models (Hub cache {hub_env().cache_dir}, "
            f"s3:// cache {settings.source.cache_dir})"
        )
        return 0
    width = max(len(m.spec) for m in found)
    print(f"{'MODEL':<{width}}  {'SIZE':>10}  PATH")
    for m in found:
        print(f"{m.spec:<{width}}  {m.size / 1e6:>7,.1f} MB  {m.path}")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from core.models.estimate import estimate_memory
    from core.models.header import read_header
    from core.models.platforms import recommend
    from core.sources.resolve import resolve_model

    settings = _settings(n_ctx=args.ctx, slots=args.slots, n_batch=args.batch)
    eng = settings.engine
    path = resolve_model(args.model, settings.source, progress=_progress())
    header = read_header(path)
    estimate = estimate_memory(header, n_ctx=eng.n_ctx, slots=eng.slots, n_batch=eng.n_batch)
    fit = recommend(args.platform, estimate, file_size=header.file_size) if args.platform else None
    if args.json:
        out: dict[str, Any] = {
            "model": args.model,
            "header": {
                k: (str(v) if isinstance(v, Path) else v)
                for k, v in asdict(header).items()
                if k not in ("chat_template", "extra")
            },
            "chat_template": header.has_chat_template,
            "memory": {**asdict(estimate), "total": estimate.total},
        }
        if fit is not None:
            out["platform"] = asdict(fit)
        print(json.dumps(out, indent=2))
        return 0
    for label, value in _describe(args.model, header, estimate):
        print(f"{label:<14} {value}")
    if fit is not None:
        print(f"{fit.platform:<14} {fit.summary}")
        for key, value in fit.settings.items():
            print(f"{'':<14} {key}={value}")
        for note in fit.notes:
            print(f"{'':<14} {note}")
    return 0


def _describe(model: str, header: Any, estimate: Any) -> list[tuple[str, str]]:
    mb = 1 << 20
    kv = sorted(set(header.kv_heads))
    kv_text = "/".join(str(k) for k in kv) or "?"
    types = ", ".join(f"{t} x{n}" for t, n in header.tensor_types.items())
    parts = f", {header.parts} parts" if header.parts > 1 else ""
    trained = f"{header.context_length:,} tokens" if header.context_length else "not stated"
    window = f", sliding window {header.sliding_window}" if header.sliding_window else ""
    template = (
        "yes"
        if header.has_chat_template
        else "none: chat needs NIMBUS_ENGINE__CHAT_TEMPLATE (completions work without)"
    )
    return [
        ("model", model),
        ("file", f"{header.path} ({header.file_size / 1e6:,.1f} MB{parts})"),
        ("architecture", f"{header.architecture}" + (f" ({header.name})" if header.name else "")),
        ("parameters", f"{header.parameters / 1e6:,.1f} M"),
        ("quantization", f"{header.quantization} (tensors: {types})"),
        ("trained ctx", trained),
        (
            "layers",
            f"{header.layers} layers, {header.heads} heads, {kv_text} KV heads, "
            f"head size {header.key_length}, width {header.embedding}{window}",
        ),
        ("vocabulary", f"{header.vocab_size:,} tokens"),
        ("chat template", template),
        (
            "memory",
            f"~{estimate.total_mb:,} MiB for --ctx {estimate.n_ctx} --slots {estimate.slots}: "
            f"weights {estimate.weights / mb:,.0f} + KV cache {estimate.kv_cache / mb:,.0f} + "
            f"compute {estimate.compute / mb:,.0f} + runtime {estimate.runtime / mb:,.0f} MiB",
        ),
    ]
