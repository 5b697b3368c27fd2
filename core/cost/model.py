"""What serving a workload costs on each platform, from measured throughput and dated prices.

How each platform bills (the whole model; docs/cost.md says the same in prose):

* AWS Lambda: an execution environment serves one request at a time, so a request holds the
  function for its prefill plus its single-stream decode, at the vCPUs its memory brings
  (1 per 1,769 MB; 6 at 10,240 MB). Billed: memory GB x seconds, plus a fee per request.
  Nothing is billed while idle.
* Modal: a container decodes up to ``slots`` requests together (more wait in its queue), so a
  request holds 1/slots of the container for its decode and the whole container for its
  prefill. Billed: CPU cores + memory (+ GPU) per second; ``min_containers`` are billed around
  the clock, and traffic runs on them before extra containers start.
* Cloudflare Worker: in front of an origin, a monthly plan with included requests and CPU time,
  then a price per million of each; the origin's cost comes on top.
* An API: input and output tokens at list price.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from core.cost.prices import PriceBook
from core.cost.throughput import Throughput
from core.errors import InvalidParameterError

HOURS_PER_MONTH = 730  # 365 * 24 / 12, as AWS's and Modal's calculators count a month
MONTH_S = HOURS_PER_MONTH * 3600
LAMBDA_MB_PER_VCPU = 1769
LAMBDA_MAX_MB = 10240
LAMBDA_MAX_VCPUS = 6
LAMBDA_MIN_MB = 128
# deploy/aws/template.yaml's MemorySize default (a test keeps them equal); the Modal defaults
# are the settings tree's (NIMBUS_MODAL__*).
LAMBDA_TEMPLATE_MB = 3008
DEFAULT_LAMBDA_SIZES = (
    LAMBDA_MB_PER_VCPU,
    LAMBDA_TEMPLATE_MB,
    2 * LAMBDA_MB_PER_VCPU,
    LAMBDA_MAX_MB,
)


@dataclass(frozen=True)
class Workload:
    prompt_tokens: int
    completion_tokens: int

    def __post_init__(self) -> None:
        if self.prompt_tokens < 0 or self.completion_tokens < 1:
            raise InvalidParameterError(
                "a request needs >= 0 prompt tokens and >= 1 completion token", param="workload"
            )

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def lambda_vcpus(memory_mb: int) -> float:
    """vCPUs a Lambda function gets: proportional to memory, 6 at the 10,240 MB maximum."""
    if memory_mb >= LAMBDA_MAX_MB:
        return float(LAMBDA_MAX_VCPUS)
    return min(float(LAMBDA_MAX_VCPUS), memory_mb / LAMBDA_MB_PER_VCPU)


@dataclass
class Option:
    """One way to serve the workload, with what a request and a month cost there."""

    key: str
    label: str
    platform: str
    threads: int
    streams: int
    seconds_per_request: float | None
    """Billed unit-seconds one request takes (None: no measurement for this shape)."""
    usd_per_second: float
    """Price of the billed unit (a Lambda environment, a Modal container) per second."""
    request_fee: float = 0.0
    idle_units: int = 0
    """Units billed around the clock whether busy or not (Modal min_containers)."""
    throughput: Throughput | None = None
    decode_tps: float | None = None
    """The decode rate the cost is built on: single-stream, or aggregate at ``streams``."""
    missing: str | None = None
    notes: list[str] = field(default_factory=list)
    edge: EdgeFees | None = None
    origin: Option | None = None

    @property
    def measured(self) -> bool:
        return self.missing is None

    def per_request(self) -> float | None:
        """Busy cost of one request (no idle floor, no plan fee)."""
        if self.origin is not None and self.edge is not None:
            base = self.origin.per_request()
            return None if base is None else base + self.edge.marginal_per_request()
        if self.seconds_per_request is None:
            return None
        return self.seconds_per_request * self.usd_per_second + self.request_fee

    def per_m_completion(self, workload: Workload) -> float | None:
        cost = self.per_request()
        return None if cost is None else cost / workload.completion_tokens * 1_000_000

    def fixed_monthly(self) -> float:
        if self.origin is not None and self.edge is not None:
            return self.origin.fixed_monthly() + self.edge.plan
        return self.idle_units * self.usd_per_second * MONTH_S

    def monthly(self, tokens: float, workload: Workload) -> float | None:
        """Cost of ``tokens`` (prompt + completion) a month."""
        requests = tokens / workload.tokens
        if self.origin is not None and self.edge is not None:
            base = self.origin.monthly(tokens, workload)
            return None if base is None else base + self.edge.monthly(requests)
        if self.seconds_per_request is None:
            return None
        busy_s = requests * self.seconds_per_request
        # Warm units absorb traffic up to their capacity; beyond it, extra units bill only while
        # busy (perfect packing: real bursts and scale-down windows cost more).
        billed_s = max(busy_s, self.idle_units * MONTH_S)
        return billed_s * self.usd_per_second + requests * self.request_fee


@dataclass(frozen=True)
class EdgeFees:
    """Cloudflare Workers Paid: plan, included allowances, then per-million prices."""

    plan: float
    included_requests: float
    request_price_per_m: float
    included_cpu_ms: float
    cpu_ms_price_per_m: float
    cpu_ms_per_request: float | None

    def marginal_per_request(self) -> float:
        cpu = (self.cpu_ms_per_request or 0.0) * self.cpu_ms_price_per_m / 1_000_000
        return self.request_price_per_m / 1_000_000 + cpu

    def monthly(self, requests: float) -> float:
        over = max(0.0, requests - self.included_requests)
        cost = self.plan + over * self.request_price_per_m / 1_000_000
        if self.cpu_ms_per_request is not None:
            cpu_over = max(0.0, requests * self.cpu_ms_per_request - self.included_cpu_ms)
            cost += cpu_over * self.cpu_ms_price_per_m / 1_000_000
        return cost


@dataclass(frozen=True)
class ApiOption:
    name: str
    input_per_m: float
    output_per_m: float

    def per_request(self, workload: Workload) -> float:
        return (
            workload.prompt_tokens * self.input_per_m
            + workload.completion_tokens * self.output_per_m
        ) / 1_000_000

    def per_m_completion(self, workload: Workload) -> float:
        return self.per_request(workload) / workload.completion_tokens * 1_000_000

    def per_token(self, workload: Workload) -> float:
        """Blended price of one token of the workload (prompt and completion together)."""
        return self.per_request(workload) / workload.tokens

    def monthly(self, tokens: float, workload: Workload) -> float:
        return tokens * self.per_token(workload)


def break_even_tokens(
    cost: Callable[[float], float], api_per_token: float, high: float = 1e15
) -> float | None:
    """The smallest monthly token volume at which ``cost`` is no more than the API's; None when
    the API is cheaper at every volume up to ``high``. ``cost`` is convex (fixed costs plus
    per-token costs that never fall), so the volumes where self-hosting wins form one interval:
    find a point in it on a log grid, then bisect down to its start."""

    def gain(v: float) -> float:
        return api_per_token * v - cost(v)

    grid = [10 ** (k / 100) for k in range(0, int(math.log10(high) * 100) + 1)]
    hit = next((i for i, v in enumerate(grid) if gain(v) >= 0), None)
    if hit is None:
        return None
    if hit == 0:
        return 0.0 if gain(0.0) >= 0 or cost(0.0) == 0 else 1.0
    lo, hi = grid[hit - 1], grid[hit]
    while hi - lo > 0.5:
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if gain(mid) >= 0 else (mid, hi)
    return hi


@dataclass(frozen=True)
class Shape:
    """What to price: sizes and settings of each platform."""

    modal_cpu: float
    modal_memory_mb: int
    modal_min_containers: int
    slots: int
    lambda_memory_mb: tuple[int, ...] = DEFAULT_LAMBDA_SIZES
    lambda_arch: str = "x86_64"
    modal_gpus: tuple[tuple[str, Throughput | None], ...] = ()
    edge: bool = True
    edge_origin_mb: int | None = None
    """The Lambda size behind the Worker (default: the template's, else the first priced)."""
    edge_cpu_ms: float | None = None

    def lambda_threads(self) -> dict[int, int]:
        """Memory size -> whole vCPUs (the threads whose measurement prices it)."""
        return {mb: max(1, math.floor(lambda_vcpus(mb) + 1e-9)) for mb in self.lambda_memory_mb}

    def modal_threads(self) -> int:
        # The Modal adapter sizes its thread pool to ceil(cpu) (NIMBUS_ENGINE__N_THREADS).
        return max(1, math.ceil(self.modal_cpu))

    def thread_counts(self) -> set[int]:
        return {*self.lambda_threads().values(), self.modal_threads()}


def _missing(threads: int, have: Sequence[int]) -> str:
    shown = ", ".join(str(t) for t in sorted(have)) or "none"
    return (
        f"not measured: needs a throughput at {threads} thread(s) (have: {shown}): --measure "
        f"on a machine with >= {threads} cores, or --bench FILE from `nimbus bench --threads "
        f"{threads}` run on one"
    )


def lambda_option(
    memory_mb: int,
    threads: int,
    shape: Shape,
    book: PriceBook,
    tput: Throughput | None,
    workload: Workload,
    have: Sequence[int],
) -> Option:
    if not LAMBDA_MIN_MB <= memory_mb <= LAMBDA_MAX_MB:
        raise InvalidParameterError(
            f"Lambda memory must be {LAMBDA_MIN_MB}..{LAMBDA_MAX_MB} MB, not {memory_mb}",
            param="lambda-memory",
        )
    gb = memory_mb / 1024
    price = book.get(f"lambda.gb_second_{shape.lambda_arch}")
    vcpus = lambda_vcpus(memory_mb)
    option = Option(
        key=f"lambda-{memory_mb}",
        label=f"AWS Lambda {memory_mb} MB ({shape.lambda_arch})",
        platform="lambda",
        threads=threads,
        streams=1,
        seconds_per_request=None,
        usd_per_second=gb * price,
        request_fee=book.get("lambda.requests_per_m") / 1_000_000,
    )
    if abs(vcpus - round(vcpus)) > 1e-9:
        option.notes.append(
            f"{vcpus:.2f} vCPUs: priced on a {threads}-thread measurement, the extra "
            f"{vcpus - threads:.2f} vCPU uncounted (an upper bound on cost)"
        )
    if tput is None:
        option.missing = _missing(threads, have)
        return option
    if tput.rss_mb is not None and tput.rss_mb > memory_mb:
        option.missing = f"does not fit: the measured process peaked at {tput.rss_mb:.0f} MB"
        return option
    option.throughput, option.decode_tps = tput, tput.single_tps
    option.seconds_per_request = (
        workload.prompt_tokens / tput.prefill_tps + workload.completion_tokens / tput.single_tps
    )
    return option


def modal_option(
    shape: Shape,
    book: PriceBook,
    tput: Throughput | None,
    workload: Workload,
    have: Sequence[int],
    gpu: str | None = None,
) -> Option:
    per_s = shape.modal_cpu * book.get(
        "modal.cpu_core_second"
    ) + shape.modal_memory_mb / 1024 * book.get("modal.memory_gib_second")
    label = f"Modal {shape.modal_cpu:g} cores {shape.modal_memory_mb} MiB"
    if gpu is not None:
        if gpu not in book.gpus():
            raise InvalidParameterError(
                f"no price for GPU {gpu!r}; priced: {', '.join(book.gpus())} "
                f"(add one with --price modal.gpu_second.{gpu}=X)",
                param="modal-gpu",
            )
        per_s += book.get(f"modal.gpu_second.{gpu}")
        label += f" + {gpu}"
    threads = shape.modal_threads()
    option = Option(
        key=f"modal-{gpu or 'cpu'}",
        label=f"{label}, min_containers={shape.modal_min_containers}",
        platform="modal",
        threads=threads,
        streams=shape.slots,
        seconds_per_request=None,
        usd_per_second=per_s,
        idle_units=shape.modal_min_containers,
    )
    if tput is None:
        option.missing = (
            f"no throughput measured on a {gpu}: --modal-gpu {gpu}=FILE.json with a "
            f"`nimbus bench` result from one"
            if gpu is not None
            else _missing(threads, have)
        )
        return option
    at = tput.aggregate_at(shape.slots)
    if at is None:
        option.missing = f"no aggregate throughput at <= {shape.slots} streams in {tput.source}"
        return option
    streams, agg = at
    if streams != shape.slots:
        option.notes.append(
            f"{shape.slots} slots priced on the aggregate at {streams} streams (a lower bound on "
            "throughput, so an upper bound on cost)"
        )
    option.throughput, option.decode_tps = tput, agg
    option.seconds_per_request = (
        workload.prompt_tokens / tput.prefill_tps + workload.completion_tokens / agg
    )
    return option


def edge_option(origin: Option, shape: Shape, book: PriceBook) -> Option:
    fees = EdgeFees(
        plan=book.get("cloudflare.plan_monthly"),
        included_requests=book.get("cloudflare.included_requests"),
        request_price_per_m=book.get("cloudflare.requests_per_m"),
        included_cpu_ms=book.get("cloudflare.included_cpu_ms"),
        cpu_ms_price_per_m=book.get("cloudflare.cpu_ms_per_m"),
        cpu_ms_per_request=shape.edge_cpu_ms,
    )
    option = Option(
        key=f"edge-{origin.key}",
        label=f"Cloudflare Worker -> {origin.label}",
        platform="edge",
        threads=origin.threads,
        streams=origin.streams,
        seconds_per_request=origin.seconds_per_request,
        usd_per_second=origin.usd_per_second,
        throughput=origin.throughput,
        decode_tps=origin.decode_tps,
        missing=origin.missing,
        edge=fees,
        origin=origin,
    )
    if shape.edge_cpu_ms is None:
        option.notes.append(
            "Worker CPU time not priced (not measured; pass --edge-cpu-ms): the plan includes "
            f"{fees.included_cpu_ms / 1e6:.0f}M CPU-ms a month"
        )
    return option


def build_options(
    shape: Shape, book: PriceBook, throughputs: dict[int, Throughput], workload: Workload
) -> list[Option]:
    if shape.lambda_arch not in ("x86_64", "arm64"):
        raise InvalidParameterError("--lambda-arch is x86_64 or arm64", param="lambda-arch")
    have = sorted(throughputs)
    options = [
        lambda_option(mb, threads, shape, book, throughputs.get(threads), workload, have)
        for mb, threads in shape.lambda_threads().items()
    ]
    modal_tput = throughputs.get(shape.modal_threads())
    options.append(modal_option(shape, book, modal_tput, workload, have))
    for gpu, tput in shape.modal_gpus:
        options.append(modal_option(shape, book, tput, workload, have, gpu=gpu))
    if shape.edge and shape.lambda_memory_mb:
        mb = shape.edge_origin_mb
        if mb is None:
            sizes = shape.lambda_memory_mb
            mb = LAMBDA_TEMPLATE_MB if LAMBDA_TEMPLATE_MB in sizes else sizes[0]
        origin = next((o for o in options if o.key == f"lambda-{mb}"), None)
        if origin is None:
            raise InvalidParameterError(
                f"--edge-origin {mb} is not one of the Lambda sizes priced "
                f"({', '.join(str(m) for m in shape.lambda_memory_mb)})",
                param="edge-origin",
            )
        options.append(edge_option(origin, shape, book))
    return options


@dataclass
class Report:
    workload: Workload
    tokens_per_month: float
    api: ApiOption
    """The API the break-even volumes are computed against."""
    options: list[Option]
    apis: list[ApiOption]
    throughputs: dict[int, Throughput]
    book: PriceBook

    def break_even(self, option: Option) -> float | None:
        if not option.measured:
            return None
        per_token = self.api.per_token(self.workload)

        def cost(v: float) -> float:
            value = option.monthly(v, self.workload)
            assert value is not None
            return value

        return break_even_tokens(cost, per_token)


def build_report(
    workload: Workload,
    tokens_per_month: float,
    api: str,
    shape: Shape,
    book: PriceBook,
    throughputs: dict[int, Throughput],
) -> Report:
    if not math.isfinite(tokens_per_month) or tokens_per_month <= 0:
        raise InvalidParameterError("--tokens-per-month must be > 0", param="tokens-per-month")
    apis = [ApiOption(name, *book.api(name)) for name in book.apis()]
    chosen = ApiOption(api, *book.api(api))
    return Report(
        workload=workload,
        tokens_per_month=tokens_per_month,
        api=chosen,
        options=build_options(shape, book, throughputs, workload),
        apis=apis,
        throughputs=throughputs,
        book=book,
    )
