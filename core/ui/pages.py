"""The chat page (/chat, / redirects to it) and its static assets (/ui/...), sent with a strict
Content-Security-Policy and cross-origin isolation (the WebAssembly build uses shared memory,
which browsers only allow on an isolated page)."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse

from core.errors import NotFoundError
from core.ui.files import FileInfo, file_response

STATIC_DIR = Path(__file__).parent / "static"
PAGE = "chat.html"

# No inline script or style anywhere; 'wasm-unsafe-eval' lets WebAssembly compile (it allows no
# JavaScript eval); blob: workers are how the WebAssembly runtime starts its threads.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self' 'wasm-unsafe-eval'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "worker-src 'self' blob:",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
ISOLATION_HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Revalidate every time (a 304 when unchanged): asset URLs carry no version.
    "Cache-Control": "no-cache",
}
PAGE_HEADERS = {**ISOLATION_HEADERS, "Content-Security-Policy": CONTENT_SECURITY_POLICY}

_MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".wasm": "application/wasm",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".json": "application/json",
}


@dataclass(frozen=True)
class Asset:
    path: Path
    media_type: str
    gzipped: bool  # stored as <name>.gz and sent with Content-Encoding: gzip

    @property
    def info(self) -> FileInfo:
        # Stat per request (cheap): an edited file never goes out with a stale length or ETag.
        return FileInfo.of(self.path)


def scan_assets(root: Path) -> dict[str, Asset]:
    """Every file under ``root`` by URL path; only these are ever served (no path from a
    request reaches the filesystem). ``x.wasm.gz`` is served as ``x.wasm``, compressed."""
    assets: dict[str, Asset] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        gzipped = rel.endswith(".gz")
        name = rel.removesuffix(".gz")
        media = _MEDIA_TYPES.get(Path(name).suffix, "text/plain; charset=utf-8")
        assets[name] = Asset(path, media, gzipped)
    return assets


def _accepts_gzip(request: Request) -> bool:
    return "gzip" in request.headers.get("accept-encoding", "").lower()


def _gunzipped(asset: Asset, headers: dict[str, str]) -> Response:
    """For the rare client without gzip: decompressed as it is sent (length unknown)."""

    def blocks() -> Iterator[bytes]:
        with gzip.open(asset.path, "rb") as fh:
            while block := fh.read(1 << 20):
                yield block

    return StreamingResponse(blocks(), media_type=asset.media_type, headers=headers)


def build_router(root: Path = STATIC_DIR) -> APIRouter:
    assets = scan_assets(root)
    page = assets[PAGE]
    router = APIRouter(include_in_schema=False)

    @router.get("/")
    async def index(request: Request) -> RedirectResponse:
        # Relative, so it also lands right behind a proxy that strips a path prefix; absolute
        # when the server knows its prefix (root_path).
        root_path = str(request.scope.get("root_path") or "").rstrip("/")
        return RedirectResponse(f"{root_path}/chat" if root_path else "chat", status_code=307)

    @router.api_route("/chat", methods=["GET", "HEAD"])
    async def chat(request: Request) -> Response:
        return file_response(
            request, page.info, media_type=page.media_type, headers=PAGE_HEADERS, ranges=False
        )

    @router.api_route("/ui/{name:path}", methods=["GET", "HEAD"])
    async def asset(name: str, request: Request) -> Response:
        found = assets.get(name)
        if found is None or name == PAGE:
            raise NotFoundError(f"no such page asset: {name[:100]!r}")
        headers = dict(
            PAGE_HEADERS if found.media_type.startswith("text/html") else ISOLATION_HEADERS
        )
        if found.gzipped:
            headers["Vary"] = "Accept-Encoding"
            if not _accepts_gzip(request):
                return _gunzipped(found, headers)
            headers["Content-Encoding"] = "gzip"
        return file_response(
            request, found.info, media_type=found.media_type, headers=headers, ranges=False
        )

    return router
