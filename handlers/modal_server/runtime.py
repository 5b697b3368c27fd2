"""The per-container runtime: one engine and one ASGI app, built by the class's enter hooks."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar, cast

from pydantic import ValidationError

from core.api.generate import GenerateCall
from core.api.protocol import GenerateRequest
from core.api.service import GenerationService
from core.app import create_app
from core.engine.llama import LlamaEngine
from core.errors import InvalidParameterError
from core.security import RequestSecurity, Security, adapter_defaults
from core.settings import Settings, load_settings

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger("nimbus.modal")
T = TypeVar("T")


class ModalRuntime:
    """One engine and one ASGI app per container, built by the class's ``@modal.enter`` hooks.

    ``prepare()`` is the snapshot-safe half (imports, settings, locating and checking the GGUF,
    building the app); ``start()`` loads the weights and starts the engine thread after the
    snapshot is restored (GPUs are attached only then, and the thread pool fits the real CPU)."""

    def __init__(self, settings: Settings, engine: LlamaEngine, app: FastAPI) -> None:
        self.settings = settings
        self.engine = engine
        self.app = app
        # The app's service: generate() calls are counted in its metrics like web requests.
        self.service = cast(GenerationService, app.state.service)
        self.trusted = Security(settings, trusted=True)
        self.timings: dict[str, float] = {}

    @classmethod
    def prepare(
        cls, settings: Settings | None = None, *, import_native: bool = True
    ) -> ModalRuntime:
        started = time.perf_counter()
        # API keys on unless NIMBUS_SECURITY__AUTH__MODE=off: the keys come from the modal.Secret
        # (NIMBUS_SECURITY__AUTH__KEYS); create_app refuses to start without any.
        settings = adapter_defaults(settings or load_settings())
        if import_native:
            # Loading libllama/ggml is most of the import cost; inside a memory snapshot it is
            # paid once per deploy instead of once per cold start. Skipped for CUDA builds:
            # their backend registry would probe for GPUs before one is attached.
            import llama_cpp  # noqa: F401

        engine = LlamaEngine(settings)
        if "://" not in settings.model:
            # Image or volume files: a missing or non-GGUF model fails here, before any request,
            # and a sha256 check is paid once per snapshot. Remote (s3://) models are fetched in
            # start() instead: a snapshot is of memory, and a download into /tmp is a file.
            engine.resolve()
        runtime = cls(settings, engine, create_app(settings, engine))
        runtime.timings["prepare_s"] = time.perf_counter() - started
        return runtime

    def start(self, *, warmup: bool = True) -> None:
        started = time.perf_counter()
        self.engine.load()
        self.timings["load_s"] = time.perf_counter() - started
        if warmup:
            # One token through the engine: the first decode pays one-off costs (compute
            # buffers, first touch of the mmap'd weights). Modal routes no request to a
            # container before its enter hooks finish, so users never wait for this.
            started = time.perf_counter()
            self.generate("Hi", max_tokens=1, temperature=0.0, raw=True)
            self.timings["warmup_s"] = time.perf_counter() - started
        log.info("engine ready: %s", {k: round(v, 3) for k, v in self.timings.items()})

    def close(self) -> None:
        self.engine.close()

    def generate(
        self, prompt: str, *, max_tokens: int = 256, temperature: float = 0.7, raw: bool = False
    ) -> dict[str, Any]:
        """The /api/generate contract for Python callers: the same use-case, limits, template,
        prompt checks and output redaction. No API key or rate limit: only holders of a token
        for this Modal workspace can call ``.remote()``."""
        try:
            body = GenerateRequest.model_validate(
                {"prompt": prompt, "maxTokens": max_tokens, "temperature": temperature, "raw": raw}
            )
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
            )
            raise InvalidParameterError(f"invalid generate arguments: {problems}") from exc

        async def run() -> dict[str, Any]:
            # The engine hands tokens to the submitting thread's event loop: one loop per call
            # (Modal runs sync methods in worker threads, so calls don't block each other).
            sec = RequestSecurity(self.trusted, client="modal:method")
            return await GenerateCall(self.service, sec, body).response()

        return _run_sync(run)


def _run_sync(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion from sync code, on this thread's own loop, or on a helper
    thread when this thread already runs one (asyncio.run refuses to nest)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="nimbus-modal") as pool:
        return pool.submit(asyncio.run, make()).result()
