"""A stand-in for the Hugging Face Hub's HTTP file API, on loopback, for the real
``huggingface_hub`` client (pointed at it with HF_ENDPOINT).

It answers what ``hf_hub_download``, ``model_info``, ``list_repo_files`` and ``get_paths_info``
ask: ``/api/models/{repo}/revision/{rev}`` (with ``?blobs=true``: sizes and LFS sha256),
``/api/models/{repo}/tree/{rev}``, ``/api/models/{repo}/paths-info/{rev}``, and
``HEAD``/``GET /{repo}/resolve/{rev}/{path}`` with the headers the Hub sends for LFS files
(``X-Repo-Commit``, ``ETag``, ``X-Linked-Etag`` = the sha256, ``X-Linked-Size``) and byte ranges.
Errors carry the Hub's ``X-Error-Code`` header (RepoNotFound, GatedRepo, RevisionNotFound,
EntryNotFound) that the client turns into its exception types.

Failures to test with: a repository that is private or gated (a token in ``tokens`` opens it),
a file whose download stops part-way (``break_after``), a file served with wrong bytes
(``corrupt``)."""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

CHUNK = 1 << 20


@dataclass(frozen=True)
class HubFile:
    source: Path | bytes
    size: int
    sha256: str

    @classmethod
    def of(cls, source: Path | bytes, sha256: str | None = None) -> HubFile:
        if isinstance(source, bytes):
            return cls(source, len(source), sha256 or hashlib.sha256(source).hexdigest())
        if sha256 is None:
            digest = hashlib.sha256()
            with source.open("rb") as fh:
                for block in iter(lambda: fh.read(CHUNK), b""):
                    digest.update(block)
            sha256 = digest.hexdigest()
        return cls(source, source.stat().st_size, sha256)

    def read(self, start: int, end: int) -> Any:
        """Chunks of bytes [start, end)."""
        if isinstance(self.source, bytes):
            yield self.source[start:end]
            return
        with self.source.open("rb") as fh:
            fh.seek(start)
            left = end - start
            while left > 0:
                block = fh.read(min(CHUNK, left))
                if not block:
                    return
                left -= len(block)
                yield block

    @property
    def git_oid(self) -> str:
        return hashlib.sha1(self.sha256.encode()).hexdigest()


@dataclass
class HubRepo:
    repo_id: str
    refs: dict[str, str] = field(default_factory=dict)  # branch/tag -> commit
    commits: dict[str, dict[str, HubFile]] = field(default_factory=dict)
    gated: bool = False
    private: bool = False


class StandInHub:
    def __init__(self) -> None:
        self.repos: dict[str, HubRepo] = {}
        self.tokens: set[str] = set()
        self.broken: dict[str, int] = {}  # repo path -> bytes sent before the connection drops
        self.corrupted: set[str] = set()
        self.gets: list[str] = []  # repo_id/path of every file GET
        self.requests: list[str] = []  # "METHOD path" of every request
        self.before_body: Any = None  # called with (repo_id/path) before a file's bytes go out
        self._server: ThreadingHTTPServer | None = None

    # -- content --------------------------------------------------------------------------
    def add_repo(
        self,
        repo_id: str,
        files: dict[str, HubFile],
        *,
        revision: str = "main",
        gated: bool = False,
        private: bool = False,
    ) -> str:
        """Add (or add a commit to) a repository; returns the commit id."""
        repo = self.repos.setdefault(repo_id, HubRepo(repo_id, gated=gated, private=private))
        repo.gated, repo.private = gated, private
        commit = hashlib.sha1(
            (repo_id + revision + json.dumps(sorted(files)) + str(len(repo.commits))).encode()
        ).hexdigest()
        repo.commits[commit] = dict(files)
        repo.refs[revision] = commit
        return commit

    def break_after(self, repo_id: str, path: str, n_bytes: int) -> None:
        self.broken[f"{repo_id}/{path}"] = n_bytes

    def corrupt(self, repo_id: str, path: str) -> None:
        self.corrupted.add(f"{repo_id}/{path}")

    def heal(self) -> None:
        self.broken.clear()
        self.corrupted.clear()

    # -- server ---------------------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> StandInHub:
        hub = self

        class Handler(_Handler):
            pass

        Handler.hub = hub
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


class _Handler(BaseHTTPRequestHandler):
    hub: StandInHub
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    # -- plumbing -------------------------------------------------------------------------
    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, payload: Any) -> None:
        self._send(200, json.dumps(payload).encode(), {"Content-Type": "application/json"})

    def _error(self, status: int, code: str, message: str) -> None:
        body = json.dumps({"error": message}).encode()
        self._send(status, body, {"X-Error-Code": code, "X-Error-Message": message})

    def _authorized(self) -> bool:
        auth = self.headers.get("Authorization", "")
        return auth.startswith("Bearer ") and auth[7:] in self.hub.tokens

    def _repo(self, repo_id: str, *, download: bool) -> HubRepo | None:
        repo = self.hub.repos.get(repo_id)
        if repo is None or (repo.private and not self._authorized()):
            self._error(401, "RepoNotFound", "Repository not found")
            return None
        if download and repo.gated and not self._authorized():
            self._error(
                401,
                "GatedRepo",
                f"Access to model {repo_id} is restricted. You must be authenticated.",
            )
            return None
        return repo

    def _commit(self, repo: HubRepo, revision: str) -> str | None:
        commit = repo.refs.get(revision, revision if revision in repo.commits else None)
        if commit is None:
            self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return commit

    # -- routes ---------------------------------------------------------------------------
    def do_HEAD(self) -> None:
        self._route()

    def do_GET(self) -> None:
        self._route()

    def do_POST(self) -> None:
        self._route()

    def _route(self) -> None:
        self.hub.requests.append(f"{self.command} {self.path}")
        url = urlsplit(self.path)
        parts = [unquote(p) for p in url.path.strip("/").split("/")]
        query = parse_qs(url.query)
        if parts[:2] == ["api", "models"] and len(parts) >= 4:
            repo_id = f"{parts[2]}/{parts[3]}"
            rest = parts[4:]
            if not rest:
                return self._model_info(repo_id, "main", query)
            kind, tail = rest[0], rest[1:]
            if kind == "revision" and tail:
                return self._model_info(repo_id, "/".join(tail), query)
            if kind == "tree" and tail:
                return self._tree(repo_id, tail[0], "/".join(tail[1:]))
            if kind == "paths-info" and tail:
                return self._paths_info(repo_id, "/".join(tail))
        if len(parts) >= 5 and parts[2] == "resolve":
            return self._resolve(f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:]))
        self._error(404, "NotFound", f"no route for {url.path}")

    def _entry(self, path: str, f: HubFile) -> dict[str, Any]:
        return {
            "type": "file",
            "path": path,
            "size": f.size,
            "oid": f.git_oid,
            "lfs": {"oid": f.sha256, "size": f.size, "pointerSize": 134},
        }

    def _model_info(self, repo_id: str, revision: str, query: dict[str, list[str]]) -> None:
        repo = self._repo(repo_id, download=False)
        commit = self._commit(repo, revision) if repo else None
        if repo is None or commit is None:
            return
        blobs = query.get("blobs", ["false"])[0].lower() == "true"
        siblings = []
        for path, f in sorted(repo.commits[commit].items()):
            entry: dict[str, Any] = {"rfilename": path}
            if blobs:
                entry.update(
                    size=f.size,
                    blobId=f.git_oid,
                    lfs={"sha256": f.sha256, "size": f.size, "pointerSize": 134},
                )
            siblings.append(entry)
        self._json(
            {
                "_id": repo_id,
                "id": repo_id,
                "modelId": repo_id,
                "sha": commit,
                "private": repo.private,
                "gated": "manual" if repo.gated else False,
                "disabled": False,
                "tags": ["gguf"],
                "siblings": siblings,
            }
        )

    def _tree(self, repo_id: str, revision: str, prefix: str) -> None:
        repo = self._repo(repo_id, download=False)
        commit = self._commit(repo, revision) if repo else None
        if repo is None or commit is None:
            return
        files = repo.commits[commit]
        self._json([self._entry(p, f) for p, f in sorted(files.items()) if p.startswith(prefix)])

    def _paths_info(self, repo_id: str, revision: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        form = parse_qs(self.rfile.read(length).decode())
        repo = self._repo(repo_id, download=False)
        commit = self._commit(repo, revision) if repo else None
        if repo is None or commit is None:
            return
        files = repo.commits[commit]
        wanted = form.get("paths", [])
        self._json([self._entry(p, files[p]) for p in wanted if p in files])

    def _resolve(self, repo_id: str, revision: str, path: str) -> None:
        repo = self._repo(repo_id, download=True)
        commit = self._commit(repo, revision) if repo else None
        if repo is None or commit is None:
            return
        f = repo.commits[commit].get(path)
        if f is None:
            self._error(404, "EntryNotFound", f"{path} does not exist on {revision}")
            return
        headers = {
            "X-Repo-Commit": commit,
            "ETag": f'"{f.git_oid}"',
            "X-Linked-Etag": f'"{f.sha256}"',
            "X-Linked-Size": str(f.size),
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        start, status = 0, 200
        ranged = self.headers.get("Range", "")
        if ranged.startswith("bytes=") and ranged[6:].split("-")[0].isdigit():
            start, status = int(ranged[6:].split("-")[0]), 206
            headers["Content-Range"] = f"bytes {start}-{f.size - 1}/{f.size}"
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(f.size - start))
        self.end_headers()
        if self.command == "HEAD":
            return
        key = f"{repo_id}/{path}"
        self.hub.gets.append(key)
        if self.hub.before_body is not None:
            self.hub.before_body(key)
        limit = self.hub.broken.get(key)
        sent = start
        for block in f.read(start, f.size):
            if key in self.hub.corrupted and sent <= 8 < sent + len(block):
                block = block[: 8 - sent] + bytes([block[8 - sent] ^ 0xFF]) + block[9 - sent :]
            if limit is not None and sent + len(block) > limit:
                self.wfile.write(block[: max(0, limit - sent)])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)  # the peer sees the body end early
                return
            self.wfile.write(block)
            sent += len(block)
