"""Copy the browser libraries pinned in core/ui/npm/package-lock.json into the package.

The copies are committed (core/ui/static/vendor/), so a wheel, the Lambda image and Modal serve
them with no npm and no network; tests/core/ui/test_vendor.py checks that they equal the pinned
npm package's files. After changing the pin: `make vendor-ui` (npm ci there, then this module).

    python -m core.ui.vendor          # write the copies
    python -m core.ui.vendor --check  # exit 1 if a copy differs from node_modules
"""

from __future__ import annotations

import gzip
import json
import sys
from dataclasses import dataclass
from pathlib import Path

UI = Path(__file__).resolve().parent
NPM = UI / "npm"
NODE_MODULES = NPM / "node_modules"
VENDOR = UI / "static" / "vendor"


@dataclass(frozen=True)
class Copy:
    package: str
    source: str  # path inside the npm package
    target: str  # path under VENDOR
    # Stored gzip-compressed and served with Content-Encoding: gzip (the WebAssembly binary
    # is 8.8 MB raw, 2.4 MB compressed: it then fits a buffered Lambda answer).
    gzipped: bool = False


COPIES = (
    Copy("@wllama/wllama", "esm/index.js", "wllama/index.js"),
    Copy("@wllama/wllama", "esm/wasm/wllama.wasm", "wllama/wllama.wasm.gz", gzipped=True),
    Copy("@wllama/wllama", "LICENCE", "wllama/LICENCE"),
)


def pinned_version(package: str) -> str:
    lock = json.loads((NPM / "package-lock.json").read_text())
    return str(lock["packages"][f"node_modules/{package}"]["version"])


def installed_version(package: str) -> str:
    manifest = NODE_MODULES / package / "package.json"
    if not manifest.is_file():
        raise SystemExit(f"vendor: {package} is not installed: run `cd core/ui/npm && npm ci`")
    return str(json.loads(manifest.read_text())["version"])


def source_bytes(copy: Copy) -> bytes:
    return (NODE_MODULES / copy.package / copy.source).read_bytes()


def shipped_bytes(copy: Copy) -> bytes:
    """The shipped file as the browser receives it (decompressed)."""
    data = (VENDOR / copy.target).read_bytes()
    return gzip.decompress(data) if copy.gzipped else data


def differences() -> list[str]:
    problems = []
    for package in sorted({c.package for c in COPIES}):
        if installed_version(package) != pinned_version(package):
            problems.append(
                f"{package}: node_modules has {installed_version(package)}, "
                f"the lockfile pins {pinned_version(package)} (run `cd core/ui/npm && npm ci`)"
            )
    for copy in COPIES:
        if not (VENDOR / copy.target).is_file():
            problems.append(f"{copy.target}: missing")
        elif shipped_bytes(copy) != source_bytes(copy):
            problems.append(f"{copy.target}: differs from {copy.package}/{copy.source}")
    return problems


def write() -> None:
    for copy in COPIES:
        target = VENDOR / copy.target
        target.parent.mkdir(parents=True, exist_ok=True)
        data = source_bytes(copy)
        # mtime=0: the same input gives the same bytes, so re-running changes nothing in git.
        target.write_bytes(gzip.compress(data, 9, mtime=0) if copy.gzipped else data)
        print(f"vendor: {copy.package}/{copy.source} -> {target}")


def main(argv: list[str]) -> int:
    if argv[1:] == ["--check"]:
        problems = differences()
        for problem in problems:
            print(f"vendor: {problem}", file=sys.stderr)
        return 1 if problems else 0
    if argv[1:]:
        print("usage: python -m core.ui.vendor [--check]", file=sys.stderr)
        return 2
    for package in sorted({c.package for c in COPIES}):
        if installed_version(package) != pinned_version(package):
            raise SystemExit(f"vendor: {package} in node_modules is not the pinned version")
    write()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
