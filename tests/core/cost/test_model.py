"""The cost model against cases computed by hand (prices overridden to round numbers)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from core.cost import model as m
from core.cost.prices import load_book
from core.cost.throughput import Throughput
from core.errors import InvalidParameterError

ROOT = Path(__file__).resolve().parents[3]

ROUND_PRICES = [
    "lambda.gb_second_x86_64=0.00001",
    "lambda.gb_second_arm64=0.000008",
    "lambda.requests_per_m=1",
    "modal.cpu_core_second=0.00001",
    "modal.memory_gib_second=0.000001",
    "api.test.input=1",
    "api.test.output=2",
    "api.cheap.input=0.1",
    "api.cheap.output=0.1",
]
WORK = m.Workload(prompt_tokens=200, completion_tokens=300)
ONE_THREAD = Throughput(
    threads=1, single_tps=50, prefill_tps=100, aggregate={1: 45, 4: 120}, source="hand"
)


def shape(**kw: object) -> m.Shape:
    base: dict[str, object] = {
        "lambda_memory_mb": (2048,),
        "modal_cpu": 1.0,
        "modal_memory_mb": 1024,
        "modal_min_containers": 1,
        "slots": 4,
        "edge": False,
    }
    base.update(kw)
    return m.Shape(**base)  # type: ignore[arg-type]


def report(api: str = "test", tokens: float = 5_000_000, **kw: object) -> m.Report:
    return m.build_report(
        WORK, tokens, api, shape(**kw), load_book([], ROUND_PRICES), {1: ONE_THREAD}
    )


def test_lambda_by_hand() -> None:
    lam = report().options[0]
    assert (lam.platform, lam.threads, lam.streams) == ("lambda", 1, 1)
    # 200 / 100 prefill + 300 / 50 decode = 8 s; 2 GB x 8 s x $0.00001 + $1 / 1M requests
    assert lam.seconds_per_request == pytest.approx(8.0)
    assert lam.per_request() == pytest.approx(0.000161)
    assert lam.per_m_completion(WORK) == pytest.approx(0.000161 / 300 * 1e6)
    assert lam.fixed_monthly() == 0
    # 5M tokens = 10,000 requests of 500 tokens
    assert lam.monthly(5_000_000, WORK) == pytest.approx(1.61)
    # 2048 MB is 1.16 vCPUs: priced on the 1-thread measurement, and says so.
    assert any("1.16 vCPUs" in n for n in lam.notes)


def test_modal_by_hand() -> None:
    mod = report().options[1]
    assert (mod.platform, mod.threads, mod.streams) == ("modal", 1, 4)
    # 200 / 100 prefill + 300 / 120 (aggregate at 4 streams) = 4.5 s at $0.000011 / s
    assert mod.seconds_per_request == pytest.approx(4.5)
    assert mod.per_request() == pytest.approx(4.95e-5)
    # one warm container: 730 h x 3600 s x $0.000011
    assert mod.fixed_monthly() == pytest.approx(28.908)
    assert mod.monthly(5_000_000, WORK) == pytest.approx(28.908)  # inside the warm capacity
    # 1e9 tokens = 2M requests x 4.5 s = 9M container-seconds > one container's 2.628M
    assert mod.monthly(1e9, WORK) == pytest.approx(99.0)


def test_break_even_by_hand() -> None:
    r = report()
    lam, mod = r.options
    # The API: (200 x $1 + 300 x $2) / 1M = $0.0008 a request, $1.6e-6 a token.
    assert r.api.per_request(WORK) == pytest.approx(0.0008)
    assert r.api.per_m_completion(WORK) == pytest.approx(0.0008 / 300 * 1e6)
    assert r.break_even(lam) == 0  # no fixed cost and cheaper per token: from the first one
    assert r.break_even(mod) == pytest.approx(28.908 / 1.6e-6, abs=1)  # 18,067,500 tokens


def test_a_cheap_api_is_never_beaten_by_lambda_and_late_by_modal() -> None:
    r = report(api="cheap")
    lam, mod = r.options
    # $0.1 per 1M tokens either way = 1e-7 a token; Lambda costs 3.22e-7 a token.
    assert r.break_even(lam) is None
    # Modal's 9.9e-8 a token is just below it: 28.908 / 1e-7 = 289,080,000 tokens, still inside
    # one warm container's capacity (2,628,000 s / 4.5 s x 500 = 292,000,000 tokens).
    assert r.break_even(mod) == pytest.approx(289_080_000, abs=1)


def test_cloudflare_in_front_of_lambda_by_hand() -> None:
    r = report(edge=True, edge_origin_mb=2048)
    edge = r.options[-1]
    assert edge.platform == "edge" and edge.origin is r.options[0]
    # $5 plan, 10M requests included: 10,000 requests cost the origin's $1.61 + $5
    assert edge.fixed_monthly() == pytest.approx(5.0)
    assert edge.monthly(5_000_000, WORK) == pytest.approx(6.61)
    # 12M requests (6e9 tokens): 2M over the allowance at $0.30 / 1M
    assert edge.monthly(6e9, WORK) == pytest.approx(12e6 * 0.000161 + 5 + 0.6)
    # break-even well inside the included requests: $5 / (1.6e-6 - 0.000161 / 500) a token
    assert r.break_even(edge) == pytest.approx(5 / (1.6e-6 - 0.000161 / 500), abs=1)
    assert any("CPU time not priced" in n for n in edge.notes)


def test_cloudflare_cpu_time_beyond_the_allowance_is_priced() -> None:
    edge = report(edge=True, edge_cpu_ms=5.0).options[-1]
    # 12M requests x 5 ms = 60M CPU-ms, 30M over at $0.02 / 1M
    assert edge.monthly(6e9, WORK) == pytest.approx(12e6 * 0.000161 + 5 + 0.6 + 0.6)


def test_arm_and_the_largest_lambda() -> None:
    r = report(lambda_memory_mb=(10240,), lambda_arch="arm64")
    lam = r.options[0]
    assert lam.threads == 6  # 10,240 MB brings 6 vCPUs
    assert lam.missing is not None and "needs a throughput at 6 thread(s)" in lam.missing
    assert lam.per_request() is None and lam.monthly(1e6, WORK) is None
    assert r.break_even(lam) is None
    assert lam.usd_per_second == pytest.approx(10 * 0.000008)  # 10 GB at the arm price


def test_a_model_bigger_than_the_function_does_not_fit() -> None:
    fat = Throughput(threads=1, single_tps=5, prefill_tps=10, aggregate={}, source="x", rss_mb=3000)
    r = m.build_report(WORK, 1e6, "test", shape(), load_book([], ROUND_PRICES), {1: fat})
    lam, mod = r.options
    assert lam.missing is not None and "does not fit" in lam.missing
    assert mod.missing is not None and "no aggregate throughput" in mod.missing


def test_modal_falls_back_to_fewer_streams_and_says_so() -> None:
    two = Throughput(threads=1, single_tps=50, prefill_tps=100, aggregate={2: 80}, source="x")
    r = m.build_report(WORK, 1e6, "test", shape(), load_book([], ROUND_PRICES), {1: two})
    mod = r.options[1]
    assert mod.decode_tps == 80
    assert mod.seconds_per_request == pytest.approx(2 + 300 / 80)
    assert any("aggregate at 2 streams" in n for n in mod.notes)


def test_lambda_vcpus() -> None:
    assert m.lambda_vcpus(1769) == 1
    assert m.lambda_vcpus(3538) == 2
    assert m.lambda_vcpus(3008) == pytest.approx(1.7004, abs=1e-4)
    assert m.lambda_vcpus(10240) == 6
    assert shape(lambda_memory_mb=(1769, 3008, 3538, 10240)).lambda_threads() == {
        1769: 1,
        3008: 1,
        3538: 2,
        10240: 6,
    }


@pytest.mark.parametrize(
    ("kw", "needle"),
    [
        ({"lambda_memory_mb": (64,)}, "Lambda memory must be"),
        ({"lambda_arch": "sparc"}, "x86_64 or arm64"),
        ({"edge": True, "edge_origin_mb": 4096}, "--edge-origin 4096"),
    ],
)
def test_bad_shapes_are_refused(kw: dict[str, object], needle: str) -> None:
    with pytest.raises(InvalidParameterError, match=re.escape(needle)):
        report(**kw)


def test_unknown_api_and_gpu_are_refused() -> None:
    with pytest.raises(InvalidParameterError, match="unknown API 'gpt-0'"):
        report(api="gpt-0")
    with pytest.raises(InvalidParameterError, match="no price for GPU 'Z9'"):
        report(modal_gpus=(("Z9", ONE_THREAD),))


def test_a_gpu_container_adds_the_gpu_price() -> None:
    r = m.build_report(
        WORK,
        1e6,
        "test",
        shape(modal_gpus=(("T4", ONE_THREAD),)),
        load_book([], [*ROUND_PRICES, "modal.gpu_second.T4=0.0001"]),
        {1: ONE_THREAD},
    )
    gpu = r.options[2]
    assert gpu.usd_per_second == pytest.approx(0.000011 + 0.0001)
    assert "T4" in gpu.label


def test_the_lambda_default_is_the_templates() -> None:
    template = (ROOT / "deploy" / "aws" / "template.yaml").read_text()
    memory = re.search(r"MemorySize:\n\s+Type: Number\n\s+Default: (\d+)", template)
    assert memory is not None and int(memory.group(1)) == m.LAMBDA_TEMPLATE_MB
    assert m.LAMBDA_TEMPLATE_MB in m.DEFAULT_LAMBDA_SIZES
