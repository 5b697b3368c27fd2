"""GET/HEAD /api/model/file: the loaded model's GGUF, for the chat page's in-browser mode.

Off unless ``ui.serve_model_file`` is set (it hands out the weights); the API key and rate
limit apply as on the generation routes. Range requests let a browser fetch it in pieces
(a buffered Lambda answer holds at most 6 MB) and ETag lets it keep a copy between visits."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from core.api.protocol import ErrorResponse
from core.engine.base import Engine
from core.errors import ModelNotReadyError, NotFoundError
from core.security import request_security
from core.settings import UiSettings
from core.ui.files import FileInfo, file_response, is_readable

PATH = "/api/model/file"


@runtime_checkable
class ModelFileEngine(Protocol):
    """An engine that knows the local file it loaded (LlamaEngine does)."""

    @property
    def model_path(self) -> Path | None: ...


_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/octet-stream": {}}, "description": "The GGUF file"},
    206: {"content": {"application/octet-stream": {}}, "description": "One byte range"},
    304: {"description": "Unchanged (If-None-Match)"},
    **{code: {"model": ErrorResponse} for code in (401, 404, 416, 429, 503)},
}


def build_router(engine: Engine, settings: UiSettings) -> APIRouter:
    router = APIRouter(tags=["nimbus"])
    cache_control = f"private, max-age={settings.model_file_max_age_s}"

    async def model_file(request: Request) -> Response:
        if not settings.serve_model_file:
            raise NotFoundError(
                "this server does not hand out its model file; "
                "set NIMBUS_UI__SERVE_MODEL_FILE=true to allow the page's in-browser mode"
            )
        if engine.state != "ready":
            raise ModelNotReadyError(f"the model is {engine.state}", headers={"Retry-After": "1"})
        path = engine.model_path if isinstance(engine, ModelFileEngine) else None
        if path is None or not is_readable(path):
            raise NotFoundError("this engine has no local model file to serve")
        info = FileInfo.of(path)
        headers = {
            "Cache-Control": cache_control,
            "Cross-Origin-Resource-Policy": "same-origin",
            "Content-Disposition": f'attachment; filename="{_ascii_name(path)}"',
            "X-Content-Type-Options": "nosniff",
        }
        return file_response(request, info, media_type="application/octet-stream", headers=headers)

    auth = [Depends(request_security)]
    router.add_api_route(
        PATH,
        model_file,
        methods=["GET"],
        dependencies=auth,
        response_class=Response,
        responses=_RESPONSES,
        summary="The loaded model's GGUF file (off unless NIMBUS_UI__SERVE_MODEL_FILE=true)",
    )
    # HEAD (size and ETag without the body) is the same route, kept out of the schema.
    router.add_api_route(
        PATH, model_file, methods=["HEAD"], dependencies=auth, include_in_schema=False
    )
    return router


def _ascii_name(path: Path) -> str:
    return "".join(
        c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in path.name
    )
