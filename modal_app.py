"""nimbus-llm on Modal: `modal deploy modal_app.py`.

One class, ``Model``, serves the same FastAPI app as ``nimbus serve`` (all routes, limits,
errors and streaming) from warm containers, and offers ``Model().generate.remote(...)`` to
Python callers. The engine is built once per container in ``@modal.enter``, never per request.

Knobs are ``NIMBUS_MODAL__*`` environment variables read at deploy time (docs/modal.md); the
engine/API settings are the usual ``NIMBUS_*`` ones, forwarded to the containers.
The logic lives in ``handlers/modal_server/``; this file only declares.
"""

from __future__ import annotations

from typing import Any

import modal

from core.settings import load_settings
from handlers import modal_server as ms

settings = load_settings()
deploy = settings.modal
image = ms.build_image(settings)  # one image for the serving class and the pull function

app = modal.App(deploy.app_name)


@app.cls(**ms.cls_options(settings, image=image))
@modal.concurrent(**ms.concurrency(settings))
class Model:
    runtime: ms.ModalRuntime

    # With snapshots on, this half runs once per deploy and its memory is restored on each cold
    # start (Modal requires enable_memory_snapshot for snap=True, hence the setting).
    @modal.enter(snap=deploy.memory_snapshot)
    def prepare(self) -> None:
        # Imports (libllama), settings, finding and checking the GGUF, building the app.
        self.runtime = ms.ModalRuntime.prepare(import_native=deploy.gpu is None)

    @modal.enter(snap=False)
    def load(self) -> None:
        # After restore: weights into memory (and onto the GPU, which exists only now).
        self.runtime.start(warmup=deploy.warmup)

    @modal.exit()
    def close(self) -> None:
        self.runtime.close()

    @modal.asgi_app()
    def web(self) -> Any:
        return self.runtime.app

    @modal.method()
    def generate(
        self, prompt: str, max_tokens: int = 256, temperature: float = 0.7, raw: bool = False
    ) -> dict[str, Any]:
        """``{"text", "tokens", "latencyMs"}``, exactly like POST /api/generate."""
        return self.runtime.generate(
            prompt, max_tokens=max_tokens, temperature=temperature, raw=raw
        )


@app.function(**ms.pull_options(settings, image))
def pull(model: str) -> dict[str, Any]:
    """`modal run modal_app.py::pull --model hf://OWNER/REPO:QUANT`: download the model into the
    Volume once (Hub cache layout); deploy with the same NIMBUS_MODEL to serve it from there."""
    return ms.pull(model, settings.modal)


@app.local_entrypoint()
def smoke(prompt: str = "What is the capital of France?", max_tokens: int = 32) -> None:
    """`modal run modal_app.py`: one generate call through Modal, then the web URL."""
    reply = Model().generate.remote(prompt, max_tokens=max_tokens, temperature=0.0)
    print(f"generate: {reply['tokens']} tokens in {reply['latencyMs']} ms: {reply['text']!r}")
    print(f"web endpoint: {Model().web.get_web_url()}")
