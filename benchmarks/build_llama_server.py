"""Build llama.cpp's own programs from the llama.cpp vendored in the llama-cpp-python sdist.

- ``llama-server``: the C++ server peer (C++ server vs Python server on one library version).
- ``llama-bench``: the single-sequence ceiling (tg128 decode, pp512 prefill).
- ``llama-batched-bench``: the batched-decode ceiling (S_TG at 1/4/8/16 sequences).

The same llama.cpp commit as the engine and the same CMake flags as the engine's wheel
(``LLAMA_CMAKE_ARGS``, which the Makefile exports; a portable x86-64-v3 baseline by default, never
``-march=native``, which dies with "Illegal instruction" on virtual machines that report AMX
without granting it). The sdist comes from PyPI (``pip download --no-binary``); one build tree per
version and flag set is cached under benchmarks/.cache and reused, all three programs in it.
Run alone: ``python -m benchmarks.build_llama_server``."""

from __future__ import annotations

import hashlib
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Callable, Sequence
from importlib.metadata import version
from pathlib import Path

CACHE = Path(__file__).resolve().parent / ".cache"
TOOLS = ("llama-server", "llama-bench", "llama-batched-bench")
# The Makefile's default (keep the two equal; tests/benchmarks checks): used when the benchmark
# runs without make, so `python -m benchmarks` builds what `make install` built.
PORTABLE_X86 = (
    "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON "
    "-DGGML_BMI2=ON -DGGML_AVX512=OFF"
)
PORTABLE_OTHER = "-DGGML_NATIVE=OFF"
# Only the programs: no network code, no tests or examples.
_BASE_ARGS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DLLAMA_CURL=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_TOOLS=ON",
    "-DLLAMA_BUILD_SERVER=ON",
)


class BuildError(RuntimeError):
    pass


def cmake_flags(env: dict[str, str] | None = None) -> list[str]:
    """The engine wheel's llama.cpp flags: $LLAMA_CMAKE_ARGS, else the portable baseline."""
    env = dict(os.environ) if env is None else env
    given = env.get("LLAMA_CMAKE_ARGS", "").strip()
    if given:
        return shlex.split(given)
    return shlex.split(PORTABLE_X86 if platform.machine() == "x86_64" else PORTABLE_OTHER)


def build_root(ver: str, flags: Sequence[str], cache: Path = CACHE) -> Path:
    """One build tree per llama-cpp-python version and flag set (a flag change rebuilds)."""
    digest = hashlib.sha256(" ".join(flags).encode()).hexdigest()[:10]
    return cache / f"llama.cpp-{ver}-{digest}"


def _run(cmd: list[str], log: Path, cwd: Path | None = None) -> None:
    with log.open("a") as out:
        out.write(f"$ {shlex.join(cmd)}\n")
        out.flush()
        proc = subprocess.run(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise BuildError(f"`{' '.join(cmd[:3])} ...` failed (exit {proc.returncode}); see {log}")


def _sdist(ver: str, cache: Path, log: Path, say: Callable[[str], None]) -> Path:
    sdists = cache / "sdist"
    tarball = next(sdists.glob(f"llama_cpp_python-{ver}.tar.gz"), None)
    if tarball is not None:
        return tarball
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
    return tarball


def llama_tools(
    jobs: int = 2,
    say: Callable[[str], None] = print,
    cache: Path = CACHE,
    tools: Sequence[str] = TOOLS,
) -> dict[str, Path]:
    """{program name: path} of llama.cpp's programs (built on first use). Raises BuildError."""
    ver = version("llama-cpp-python")
    flags = cmake_flags()
    root = build_root(ver, flags, cache)
    binaries = {tool: root / "build" / "bin" / tool for tool in tools}
    missing = [tool for tool, path in binaries.items() if not path.exists()]
    if not missing:
        return binaries
    if shutil.which("cmake") is None:
        raise BuildError("cmake is not installed")
    root.mkdir(parents=True, exist_ok=True)
    log = root / "build.log"
    tarball = _sdist(ver, cache, log, say)
    src = root / "src"
    if not (src / "CMakeLists.txt").exists():
        say(f"extracting the vendored llama.cpp from {tarball.name} ...")
        with tarfile.open(tarball) as tar:
            prefix = f"llama_cpp_python-{ver}/vendor/llama.cpp/"
            members = [m for m in tar.getmembers() if m.name.startswith(prefix)]
            for m in members:
                m.name = m.name[len(prefix) :]
            tar.extractall(src, members=[m for m in members if m.name], filter="data")
    say(
        f"building {', '.join(missing)} with cmake (-j{jobs}, {' '.join(flags)}; "
        "tens of minutes on 2 cores the first time) ..."
    )
    build = root / "build"
    _run(["cmake", "-S", str(src), "-B", str(build), *_BASE_ARGS, *flags], log)
    _run(["cmake", "--build", str(build), "--target", *missing, f"-j{jobs}"], log)
    absent = [str(binaries[t]) for t in missing if not binaries[t].exists()]
    if absent:
        raise BuildError(f"the build finished but {', '.join(absent)} is missing; see {log}")
    return binaries


def llama_server(jobs: int = 2, say: Callable[[str], None] = print, cache: Path = CACHE) -> Path:
    """Path to a built llama-server binary (built on first use, with the other programs)."""
    return llama_tools(jobs, say, cache)["llama-server"]


if __name__ == "__main__":
    try:
        for name, path in llama_tools(jobs=os.cpu_count() or 2).items():
            print(f"{name}: {path}")
    except BuildError as exc:
        print(f"llama.cpp build failed: {exc}", file=sys.stderr)
        sys.exit(1)
