"""Platform sizes from a memory estimate."""

from __future__ import annotations

import pytest

from core.models.estimate import MB, MemoryEstimate
from core.models.platforms import lambda_cores, lambda_vcpus, recommend

GB = 1000**3


def estimate(total_mb: int) -> MemoryEstimate:
    return MemoryEstimate(
        weights=total_mb * MB, kv_cache=0, compute=0, runtime=0, n_ctx=2048, slots=4, n_batch=512
    )


def test_lambda_memory_with_headroom_and_the_vcpus_it_brings() -> None:
    fit = recommend("lambda", estimate(2000), file_size=2 * GB)
    assert fit.fits and fit.settings == {"MemorySize": "2432"}  # 2000 x 1.2 -> next 64 MB
    assert fit.summary == "MemorySize 2,432 MB (1.4 vCPU, 2 cores)"
    assert "EphemeralStorageMB >= 2,099" in fit.notes[1]
    # Small models still get the template's floor.
    assert recommend("lambda", estimate(300), file_size=GB // 10).settings["MemorySize"] == "1024"
    assert lambda_vcpus(10_240) == pytest.approx(5.79, abs=0.01) and lambda_vcpus(1_769) == 1
    assert [lambda_cores(m) for m in (1_024, 3_009, 5_307, 8_846, 10_240)] == [2, 3, 3, 6, 6]


def test_lambda_refuses_what_does_not_fit() -> None:
    fit = recommend("lambda", estimate(9_000), file_size=8 * GB)
    assert not fit.fits and fit.summary.startswith("does not fit in 10,240 MB")
    assert "10,800 MB" in fit.summary
    big_file = recommend("lambda", estimate(5_000), file_size=11 * GB)
    assert not big_file.fits and "exceeds a container image's 10 GB" in big_file.summary


def test_modal_cpu_memory_and_gpu_above_a_size() -> None:
    small = recommend("modal", estimate(700), file_size=GB // 4)
    assert small.settings == {"NIMBUS_MODAL__CPU": "2", "NIMBUS_MODAL__MEMORY_MB": "1024"}
    mid = recommend("modal", estimate(3_000), file_size=2 * GB)
    assert mid.settings["NIMBUS_MODAL__CPU"] == "4" and "NIMBUS_MODAL__GPU" not in mid.settings
    large = recommend("modal", estimate(9_000), file_size=8 * GB)
    assert large.settings["NIMBUS_MODAL__GPU"] == "T4" and large.summary.endswith("gpu=T4")
    huge = recommend("modal", estimate(35_000), file_size=34 * GB)
    assert huge.settings["NIMBUS_MODAL__GPU"] == "L40S"
    too_big = recommend("modal", estimate(200_000), file_size=190 * GB)
    assert "NIMBUS_MODAL__GPU" not in too_big.settings and "more than one GPU" in too_big.notes[0]


def test_cloudflare_forwards_to_an_origin() -> None:
    fit = recommend("cloudflare", estimate(300), file_size=GB // 10)
    assert not fit.fits
    assert "128 MB" in fit.summary and "forwards to an origin" in fit.summary
    assert "INFERENCE_ORIGIN" in fit.settings


def test_unknown_platform() -> None:
    with pytest.raises(ValueError, match="lambda, modal, cloudflare"):
        recommend("azure", estimate(1), file_size=1)
