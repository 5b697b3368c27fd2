"""Build llama.cpp's `llama-server` from the llama.cpp vendored in the llama-cpp-python sdist.

The same llama.cpp commit as our engine, so the comparison is C++ server vs Python server on one
library version. The sdist comes from PyPI (`pip download --no-binary`); the build is cached
under benchmarks/.cache and reused. Run alone: `python -m benchmarks.build_llama_server`."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

CACHE = Path(__file__).resolve().parent / ".cache"


class BuildError(RuntimeError):
    pass


def _run(cmd: list[str], log: Path, cwd: Path | None = None) -> None:
    with log.open("a") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        out.flush()
        proc = subprocess.run(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise BuildError(f"`{' '.join(cmd[:3])} ...` failed (exit {proc.returncode}); see {log}")


def llama_server(jobs: int = 2, say: Callable[[str], None] = print, cache: Path = CACHE) -> Path:
    """Path to a built llama-server binary (built on first use). Raises BuildError."""
    ver = version("llama-cpp-python")
    root = cache / f"llama-server-{ver}"
    binary = root / "build" / "bin" / "llama-server"
    if binary.exists():
        return binary
    if shutil.which("cmake") is None:
        raise BuildError("cmake is not installed")
    root.mkdir(parents=True, exist_ok=True)
    log = root / "build.log"
    sdists = cache / "sdist"
    tarball = next(sdists.glob(f"llama_cpp_python-{ver}.tar.gz"), None)
    if tarball is None:
        say(f"downloading the llama-cpp-python {ver} sdist from PyPI ...")
        _run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-binary",
                ":all:",
                "--no-deps",
                f"llama-cpp-python=={ver}",
                "-d",
                str(sdists),
            ],
            log,
        )
        tarball = next(sdists.glob(f"llama_cpp_python-{ver}.tar.gz"), None)
        if tarball is None:
            raise BuildError("pip download produced no sdist")
    src = root / "src"
    if not (src / "CMakeLists.txt").exists():
        say(f"extracting the vendored llama.cpp from {tarball.name} ...")
        with tarfile.open(tarball) as tar:
            prefix = f"llama_cpp_python-{ver}/vendor/llama.cpp/"
            members = [m for m in tar.getmembers() if m.name.startswith(prefix)]
            for m in members:
                m.name = m.name[len(prefix) :]
            tar.extractall(src, members=[m for m in members if m.name], filter="data")
    say(f"building llama-server with cmake (-j{jobs}; several minutes the first time) ...")
    build = root / "build"
    _run(
        [
            "cmake",
            "-S",
            str(src),
            "-B",
            str(build),
            "-DCMAKE_BUILD_TYPE=Release",
            "-DBUILD_SHARED_LIBS=OFF",
            "-DLLAMA_CURL=OFF",
            "-DLLAMA_OPENSSL=OFF",
            "-DLLAMA_BUILD_TESTS=OFF",
            "-DLLAMA_BUILD_EXAMPLES=OFF",
            "-DLLAMA_BUILD_TOOLS=ON",
            "-DLLAMA_BUILD_SERVER=ON",
        ],
        log,
    )
    _run(["cmake", "--build", str(build), "--target", "llama-server", f"-j{jobs}"], log)
    if not binary.exists():
        raise BuildError(f"the build finished but {binary} is missing; see {log}")
    return binary


if __name__ == "__main__":
    try:
        print(llama_server())
    except BuildError as exc:
        print(f"llama-server build failed: {exc}", file=sys.stderr)
        sys.exit(1)
