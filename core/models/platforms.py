"""Turn a memory estimate into a size on each platform nimbus deploys to."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from core.models.estimate import MB, MemoryEstimate

PLATFORMS = ("lambda", "modal", "cloudflare")
# Headroom over the estimate: allocator slack, request buffers, the estimate's own error.
HEADROOM = 1.2

# AWS Lambda: memory 128..10,240 MB in 1 MB steps; CPU in proportion, 1,769 MB = 1 vCPU, at
# most 6 vCPUs. The template's own floor is 1,024 MB. A container image holds at most 10 GB.
LAMBDA_MAX_MB = 10_240
LAMBDA_MIN_MB = 1_024
LAMBDA_MB_PER_VCPU = 1_769
LAMBDA_MAX_VCPU = 6
LAMBDA_IMAGE_LIMIT = 10 * 1000**3

# Modal: whole-MiB memory requests; a GPU is suggested once the weights pass this size (CPU
# decoding of larger models is slow).
MODAL_GPU_ABOVE = 4 * 1000**3
MODAL_GPUS = (("T4", 16), ("L4", 24), ("L40S", 48), ("A100-80GB", 80), ("H100", 80))

CLOUDFLARE_WORKER_MB = 128


@dataclass(frozen=True)
class Recommendation:
    platform: str
    fits: bool
    summary: str
    settings: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


def recommend(platform: str, estimate: MemoryEstimate, *, file_size: int) -> Recommendation:
    if platform == "lambda":
        return lambda_fit(estimate, file_size=file_size)
    if platform == "modal":
        return modal_fit(estimate, file_size=file_size)
    if platform == "cloudflare":
        return cloudflare_fit(estimate)
    raise ValueError(f"unknown platform {platform!r} (one of {', '.join(PLATFORMS)})")


def _with_headroom_mb(estimate: MemoryEstimate) -> int:
    return math.ceil(estimate.total * HEADROOM / MB)


# Cores a function sees at each memory size (AWS's published steps); compute is shared in
# proportion to memory below that.
LAMBDA_CORE_STEPS = ((3_008, 2), (5_307, 3), (7_076, 4), (8_845, 5), (10_240, 6))


def lambda_vcpus(memory_mb: int) -> float:
    """Compute share: 1,769 MB buys one full vCPU, up to six."""
    return min(float(LAMBDA_MAX_VCPU), memory_mb / LAMBDA_MB_PER_VCPU)


def lambda_cores(memory_mb: int) -> int:
    return next(cores for limit, cores in LAMBDA_CORE_STEPS if memory_mb <= limit)


def lambda_fit(estimate: MemoryEstimate, *, file_size: int) -> Recommendation:
    need = _with_headroom_mb(estimate)
    if need > LAMBDA_MAX_MB:
        return Recommendation(
            "lambda",
            False,
            f"does not fit in {LAMBDA_MAX_MB:,} MB (needs about {need:,} MB with headroom): "
            "use a smaller quantization or context, or Modal",
        )
    if file_size > LAMBDA_IMAGE_LIMIT:
        return Recommendation(
            "lambda",
            False,
            f"memory fits ({need:,} MB) but the {file_size / 1e9:.1f} GB file exceeds a "
            "container image's 10 GB",
        )
    memory = max(LAMBDA_MIN_MB, -(-need // 64) * 64)
    vcpus = lambda_vcpus(memory)
    notes = [
        f"Lambda gives CPU with memory: {memory:,} MB is {vcpus:.1f} vCPU of compute on "
        f"{lambda_cores(memory)} cores; {LAMBDA_MAX_MB:,} MB gives the most "
        f"({LAMBDA_MAX_VCPU} vCPUs) and the fastest decoding",
        "bake the model into the image (MODEL build argument) or fetch it from S3 into /tmp "
        f"(EphemeralStorageMB >= {max(512, math.ceil(file_size / MB * 1.1)):,})",
    ]
    return Recommendation(
        "lambda",
        True,
        f"MemorySize {memory:,} MB ({vcpus:.1f} vCPU, {lambda_cores(memory)} cores)",
        {"MemorySize": str(memory)},
        tuple(notes),
    )


def modal_fit(estimate: MemoryEstimate, *, file_size: int) -> Recommendation:
    need = _with_headroom_mb(estimate)
    memory = max(512, -(-need // 256) * 256)
    cpu = 2.0 if file_size < 1000**3 else 4.0 if file_size < 4 * 1000**3 else 8.0
    settings = {"NIMBUS_MODAL__CPU": f"{cpu:g}", "NIMBUS_MODAL__MEMORY_MB": str(memory)}
    notes: list[str] = []
    if file_size > MODAL_GPU_ABOVE:
        vram_gb = estimate.total * HEADROOM / 1e9
        gpu = next((name for name, gb in MODAL_GPUS if gb >= vram_gb), None)
        if gpu is None:
            notes.append(f"needs about {vram_gb:.0f} GB: more than one GPU holds; split it")
        else:
            settings["NIMBUS_MODAL__GPU"] = gpu
            notes.append(
                f"{file_size / 1e9:.1f} GB of weights decode slowly on CPU: a {gpu} "
                f"(>= {vram_gb:.0f} GB of GPU memory) offloads every layer"
            )
    summary = f"cpu={cpu:g}, memory={memory:,} MB" + (
        f", gpu={settings['NIMBUS_MODAL__GPU']}" if "NIMBUS_MODAL__GPU" in settings else ""
    )
    return Recommendation("modal", True, summary, settings, tuple(notes))


def cloudflare_fit(estimate: MemoryEstimate) -> Recommendation:
    return Recommendation(
        "cloudflare",
        False,
        f"a Worker has {CLOUDFLARE_WORKER_MB} MB and no llama.cpp; this model needs about "
        f"{estimate.total_mb:,} MB: the Worker forwards to an origin (Lambda or Modal)",
        {"INFERENCE_ORIGIN": "<the Lambda function URL or Modal web URL>"},
    )
