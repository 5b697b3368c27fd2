"""File responses with validators: ETag / If-None-Match (304), one byte range (206 / 416),
HEAD. Shared by the page's assets and the model file."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path

from fastapi import Request
from fastapi.responses import Response, StreamingResponse

from core.errors import RangeNotSatisfiableError

_BLOCK = 1 << 20
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


@dataclass(frozen=True)
class FileInfo:
    path: Path
    size: int
    etag: str  # strong, quoted
    last_modified: str

    @classmethod
    def of(cls, path: Path) -> FileInfo:
        st = path.stat()
        # From size and mtime (as nginx does): hashing a model file would cost seconds at start.
        etag = f'"{st.st_size:x}-{st.st_mtime_ns:x}"'
        return cls(path, st.st_size, etag, formatdate(st.st_mtime, usegmt=True))


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) inclusive for a single ``bytes=`` range; None means 'send the whole file'
    (no header, several ranges or another unit: RFC 9110 lets a server ignore Range).
    Raises RangeNotSatisfiableError when the range selects no byte."""
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if match is None:
        return None
    first_s, last_s = match.groups()
    if not first_s and not last_s:
        return None
    if not first_s:  # suffix: the last N bytes
        n = int(last_s)
        if n == 0 or size == 0:
            raise RangeNotSatisfiableError(f"range {header!r} selects no byte of {size}")
        return max(0, size - n), size - 1
    first = int(first_s)
    if last_s and int(last_s) < first:
        return None  # syntactically invalid: ignored, as RFC 9110 says
    if first >= size:
        raise RangeNotSatisfiableError(f"range {header!r} starts past the end ({size} bytes)")
    return first, min(int(last_s), size - 1) if last_s else size - 1


def _etag_matches(header: str, etag: str) -> bool:
    """If-None-Match uses weak comparison: W/"x" matches "x"."""
    tags = [t.strip().removeprefix("W/") for t in header.split(",")]
    return "*" in tags or etag in tags


def _read(path: Path, first: int, length: int) -> Iterator[bytes]:
    # A plain iterator: StreamingResponse runs it in a worker thread, so disk reads never
    # block the event loop that streams tokens.
    with path.open("rb") as fh:
        fh.seek(first)
        while length > 0:
            block = fh.read(min(_BLOCK, length))
            if not block:
                return
            length -= len(block)
            yield block


def file_response(
    request: Request,
    info: FileInfo,
    *,
    media_type: str,
    headers: Mapping[str, str],
    ranges: bool = True,
) -> Response:
    """200, 206, 304 or 416 (raised) for GET/HEAD of ``info``; ``headers`` go on every answer."""
    common = {
        **headers,
        "ETag": info.etag,
        "Last-Modified": info.last_modified,
        "Content-Type": media_type,
    }
    if ranges:
        common["Accept-Ranges"] = "bytes"
    inm = request.headers.get("if-none-match")
    if inm is not None and _etag_matches(inm, info.etag):
        return Response(status_code=304, headers=common)
    span: tuple[int, int] | None = None
    if ranges:
        if_range = request.headers.get("if-range")
        if if_range is None or if_range.strip() == info.etag:
            try:
                span = byte_range(request.headers.get("range"), info.size)
            except RangeNotSatisfiableError as exc:
                exc.headers.update({**headers, "Content-Range": f"bytes */{info.size}"})
                raise
    first, last = span if span is not None else (0, info.size - 1)
    length = max(0, last - first + 1)
    out = {**common, "Content-Length": str(length)}
    status = 200
    if span is not None:
        status = 206
        out["Content-Range"] = f"bytes {first}-{last}/{info.size}"
    if request.method == "HEAD":
        return Response(status_code=status, headers=out)
    return StreamingResponse(
        _read(info.path, first, length), status_code=status, headers=out, media_type=None
    )


def is_readable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.R_OK)
