"""The scenarios of the reliability suite. Each takes a `Plan` (sizes and durations) and the
server under test and returns a JSON-able dict: its figures and, where the suite sets one, the
target and whether it was met. Traffic goes to 127.0.0.1 only; every loop is bounded in time
and count."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import resource
import socket
import statistics
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from benchmarks.reliability.client import Answer, Connection, encode
from benchmarks.reliability.server import Server, serve

HOST = "127.0.0.1"
PROMPT = "Explain serverless computing in one sentence."


@dataclass(frozen=True)
class Plan:
    """Sizes and durations; ``quick`` is the smoke run of `make test`."""

    load_s: float = 30.0
    load_connections: int = 10
    flood_s: float = 20.0
    flood_rounds: int = 2
    flood_connections: tuple[int, int] = (10, 50)
    warmup_s: float = 2.0
    fuzz_cases: int = 600
    storm_streams: int = 100
    storm_concurrency: int = 10
    soak_s: float = 300.0
    soak_connections: int = 4
    log_dir: Path = Path("benchmarks/results/reliability-logs")

    @classmethod
    def quick(cls, log_dir: Path) -> Plan:
        return cls(
            load_s=8.0,
            flood_s=4.0,
            flood_rounds=1,
            warmup_s=1.0,
            fuzz_cases=40,
            storm_streams=12,
            storm_concurrency=4,
            soak_s=6.0,
            soak_connections=2,
            log_dir=log_dir,
        )


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 1)


def cpu_self_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def wait_drained(server: Server, timeout: float = 60) -> float:
    """Seconds until the engine has nothing running or waiting."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        queue = server.health().get("queue") or {}
        if isinstance(queue, dict) and not queue.get("active") and not queue.get("waiting"):
            return time.monotonic() - started
        time.sleep(0.05)
    raise TimeoutError(f"the engine did not drain within {timeout} s")


def generate_request(max_tokens: int = 10, **extra: Any) -> bytes:
    return encode("POST", "/api/generate", {"prompt": PROMPT, "maxTokens": max_tokens, **extra})


# -- closed-loop traffic -------------------------------------------------------------------
@dataclass
class Phase:
    connections: int
    seconds: float
    accepted: list[float] = field(default_factory=list)  # latency of each 200
    refused: list[float] = field(default_factory=list)  # latency of each 503
    tokens: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    transport_errors: int = 0
    connects: int = 0  # TCP connections opened: one per client while the server keeps them alive
    client_cpu_s: float = 0.0
    server_cpu_s: float = 0.0
    retry_after: Counter[str] = field(default_factory=Counter)

    def summary(self) -> dict[str, Any]:
        s = self.seconds
        return {
            "connections": self.connections,
            "seconds": round(s, 2),
            "goodput_rps": round(len(self.accepted) / s, 2),
            "tokens_per_s": round(self.tokens / s, 1),
            "accepted": len(self.accepted),
            "accepted_p50_ms": ms(percentile(self.accepted, 50)),
            "accepted_p99_ms": ms(percentile(self.accepted, 99)),
            "refused": len(self.refused),
            "refusals_per_s": round(len(self.refused) / s, 1),
            "refusal_p50_ms": ms(percentile(self.refused, 50)),
            "refusal_p99_ms": ms(percentile(self.refused, 99)),
            "refusal_max_ms": ms(max(self.refused, default=None)),
            "other_statuses": {str(k): v for k, v in self.statuses.items() if k not in (200, 503)},
            "transport_errors": self.transport_errors,
            "connects": self.connects,
            "retry_after_values": dict(self.retry_after),
            "client_cpu_cores": round(self.client_cpu_s / s, 2),
            "server_cpu_cores": round(self.server_cpu_s / s, 2),
        }


async def closed_loop(
    server: Server, connections: int, seconds: float, warmup_s: float, request: bytes
) -> Phase:
    """``connections`` clients each send ``request`` back to back (a refusal is retried at
    once, ignoring Retry-After: the worst case). Answers completed in the warm-up are not
    counted; at the end the clients hang up on what is still in flight (the server cancels
    it), so the next phase starts from an idle engine."""
    start = time.monotonic()
    counted_from, stop_at = start + warmup_s, start + warmup_s + seconds
    phase = Phase(connections, seconds)
    cpu0: tuple[float, float] | None = None

    conns: list[Connection] = []

    async def client() -> None:
        nonlocal cpu0
        conn = Connection(HOST, server.port)
        conns.append(conn)
        try:
            while time.monotonic() < stop_at:
                try:
                    answer = await conn.send(request, timeout=300)
                except (ConnectionError, TimeoutError, OSError):
                    now = time.monotonic()
                    if counted_from <= now <= stop_at:
                        phase.transport_errors += 1
                    await asyncio.sleep(0.01)
                    continue
                now = time.monotonic()
                if cpu0 is None and now >= counted_from:
                    cpu0 = (cpu_self_s(), server.cpu_s())
                if not counted_from <= now <= stop_at:
                    continue
                phase.statuses[answer.status] += 1
                if answer.status == 200:
                    phase.accepted.append(answer.seconds)
                    phase.tokens += int(answer.json().get("tokens", 0))
                elif answer.status == 503:
                    phase.refused.append(answer.seconds)
                    phase.retry_after[answer.headers.get("retry-after", "-")] += 1
        finally:
            conn.abort()

    tasks = [asyncio.ensure_future(client()) for _ in range(connections)]
    await asyncio.sleep(max(0.0, stop_at - time.monotonic()))
    if cpu0 is not None:
        phase.client_cpu_s = cpu_self_s() - cpu0[0]
        phase.server_cpu_s = server.cpu_s() - cpu0[1]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    phase.connects = sum(conn.connects for conn in conns)
    return phase


# -- scenarios ------------------------------------------------------------------------------
def load(plan: Plan, server: Server) -> dict[str, Any]:
    """The reference load: 10 connections for 30 s, maxTokens 10 on /api/generate."""
    phase = asyncio.run(
        closed_loop(server, plan.load_connections, plan.load_s, 0.0, generate_request(10))
    )
    wait_drained(server)
    summary = phase.summary()
    errors = sum(summary["other_statuses"].values()) + phase.transport_errors + len(phase.refused)
    summary["requests"] = len(phase.accepted) + errors
    summary["errors"] = errors
    answered = len(phase.accepted)
    summary["targets"] = {
        "zero_errors": {"target": 0, "measured": errors, "met": errors == 0},
        # Zero errors means nothing if nothing was answered in the window.
        "answered": {"target": "> 0", "measured": answered, "met": answered > 0},
    }
    return summary


def flood(plan: Plan, server: Server) -> dict[str, Any]:
    """Goodput with 10 connections and under a 50-connection retry flood, side by side in
    alternating rounds against the same server."""
    capacity = int((server.health().get("queue") or {}).get("capacity", 0))  # type: ignore[union-attr]
    low, high = plan.flood_connections
    rounds: list[dict[str, Any]] = []
    merged = {low: Phase(low, 0.0), high: Phase(high, 0.0)}
    admitting: set[int] = set()
    for _ in range(plan.flood_rounds):
        for connections in (low, high):
            phase = asyncio.run(
                closed_loop(server, connections, plan.flood_s, plan.warmup_s, generate_request(10))
            )
            if connections == high:  # within the overload hold: the places open while refusing
                queue = server.health().get("queue") or {}
                admitting.add(int(queue.get("admitting", capacity)))  # type: ignore[union-attr]
            wait_drained(server)
            rounds.append(phase.summary())
            m = merged[connections]
            m.seconds += phase.seconds
            m.accepted += phase.accepted
            m.refused += phase.refused
            m.tokens += phase.tokens
            m.statuses.update(phase.statuses)
            m.retry_after.update(phase.retry_after)
            m.transport_errors += phase.transport_errors
            m.connects += phase.connects
            m.client_cpu_s += phase.client_cpu_s
            m.server_cpu_s += phase.server_cpu_s
    base, flooded = merged[low].summary(), merged[high].summary()
    ratio = flooded["goodput_rps"] / base["goodput_rps"] if base["goodput_rps"] else 0.0
    # Service time: seconds per request at full load (1 / goodput of the 10-connection run);
    # queue depth: every place in the engine (slots + queue) a request can find taken.
    service_s = 1 / base["goodput_rps"] if base["goodput_rps"] else float("inf")
    bound_ms = round(capacity * service_s * 1000, 1)
    refusal_p99 = flooded["refusal_p99_ms"]
    accepted_p99 = flooded["accepted_p99_ms"]
    unexpected = sum(flooded["other_statuses"].values()) + flooded["transport_errors"]
    return {
        "capacity": capacity,
        "admitting_while_refusing": min(admitting) if admitting else None,
        "rounds": rounds,
        "baseline": base,
        "flood": flooded,
        "goodput_ratio": round(ratio, 3),
        "service_time_ms": round(service_s * 1000, 1),
        "accepted_p99_bound_ms": bound_ms,
        "targets": {
            "goodput_ratio": {"target": ">= 0.7", "measured": round(ratio, 3), "met": ratio >= 0.7},
            "refusal_p99_ms": {
                "target": "< 100",
                "measured": refusal_p99,
                "met": refusal_p99 is not None and refusal_p99 < 100,
            },
            "accepted_p99_ms": {
                "target": f"<= {bound_ms} (capacity {capacity} x service time)",
                "measured": accepted_p99,
                "met": accepted_p99 is not None and accepted_p99 <= bound_ms,
            },
            "no_other_errors": {"target": 0, "measured": unexpected, "met": unexpected == 0},
        },
    }


def fuzz(plan: Plan, server: Server) -> dict[str, Any]:
    """Schema-generated requests (valid and invalid) for every operation in /openapi.json,
    sent by schemathesis; no answer may be a 5xx other than a 503 refusal."""
    import requests
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode

    schema = schemathesis.openapi.from_url(f"{server.base_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    statuses: Counter[int] = Counter()
    transport: Counter[str] = Counter()
    by_operation: Counter[str] = Counter()
    failures: list[str] = []
    session = requests.Session()
    started = time.monotonic()
    per_round = max(5, plan.fuzz_cases // (2 * max(1, len(operations))))

    def fuzz_test(strategy: Any, label: str) -> Callable[[], None]:
        @settings(
            max_examples=per_round,
            deadline=None,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=strategy)
        def run(case: Any) -> None:
            # Never raise here: hypothesis would replay and shrink; every outcome is recorded.
            try:
                response = case.call(base_url=server.base_url, session=session, timeout=300)
            except Exception as exc:  # a timeout or a dropped connection
                transport[type(exc).__name__] += 1
                failures.append(f"{label}: {type(exc).__name__}: {str(exc)[:200]}")
                return
            statuses[response.status_code] += 1
            by_operation[label] += 1
            if response.status_code >= 500 and response.status_code != 503:
                failures.append(f"{label}: {response.status_code} {response.text[:200]}")

        return run  # type: ignore[no-any-return]

    for _ in range(50):  # rounds until the case count is reached (bounded)
        before = sum(statuses.values())
        for operation in operations:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                test = fuzz_test(operation.as_strategy(generation_mode=mode), operation.label)
                with contextlib.suppress(Unsatisfiable):  # e.g. no invalid input for a GET
                    test()
        total = sum(statuses.values())
        if total >= plan.fuzz_cases or total == before:
            break
    total = sum(statuses.values())
    server_errors = sum(n for s, n in statuses.items() if s >= 500 and s != 503)
    return {
        "cases": total,
        "seconds": round(time.monotonic() - started, 1),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "transport_errors": dict(transport),
        "by_operation": dict(by_operation),
        "failures": failures[:20],
        "server_alive": server.process.poll() is None,
        "targets": {
            "cases": {
                "target": f">= {plan.fuzz_cases}",
                "measured": total,
                "met": total >= plan.fuzz_cases,
            },
            "no_5xx": {"target": 0, "measured": server_errors, "met": server_errors == 0},
            "no_transport_errors": {
                "target": 0,
                "measured": sum(transport.values()),
                "met": not transport,
            },
        },
    }


def storm(plan: Plan, server: Server) -> dict[str, Any]:
    """Streams dropped by their clients right after the first event: the engine must drain
    (nothing running or waiting) and memory stay flat."""
    wait_drained(server)
    rss_before = server.rss_mb()
    request = encode(
        "POST",
        "/v1/completions",
        {"prompt": PROMPT, "max_tokens": 16, "stream": True, "temperature": 0.7},
    )
    first_events: list[float] = []
    statuses: Counter[int] = Counter()
    remaining = [plan.storm_streams]

    async def client() -> None:
        while remaining[0] > 0:
            remaining[0] -= 1
            answer = await Connection(HOST, server.port).first_event_then_abort(request)
            statuses[answer.status] += 1
            if answer.status == 200:
                first_events.append(answer.seconds)
            else:  # refused while full: try that stream again
                remaining[0] += 1
                await asyncio.sleep(0.05)

    async def run() -> None:
        await asyncio.wait_for(
            asyncio.gather(*(client() for _ in range(plan.storm_concurrency))), timeout=600
        )

    asyncio.run(run())
    drain_s = wait_drained(server, timeout=30)
    after = httpx.post(
        f"{server.base_url}/api/generate", json={"prompt": PROMPT, "maxTokens": 4}, timeout=120
    )
    rss_after = server.rss_mb()
    growth = (rss_after - rss_before) / rss_before * 100
    return {
        "streams_aborted": len(first_events),
        "statuses": {str(k): v for k, v in statuses.items()},
        "first_event_p50_ms": ms(percentile(first_events, 50)),
        "drain_s": round(drain_s, 2),
        "rss_before_mb": round(rss_before, 1),
        "rss_after_mb": round(rss_after, 1),
        "rss_growth_pct": round(growth, 2),
        "request_after_storm": after.status_code,
        "targets": {
            "drained": {"target": "< 5 s", "measured": round(drain_s, 2), "met": drain_s < 5},
            "serves_after": {
                "target": 200,
                "measured": after.status_code,
                "met": after.status_code == 200,
            },
            "rss_flat": {
                "target": "< 5 %",
                "measured": round(growth, 2),
                "met": growth < 5,
            },
        },
    }


def soak(plan: Plan, server: Server) -> dict[str, Any]:
    """Mixed traffic (whole and streamed answers on both APIs, dropped streams, bad requests)
    from a few connections, RSS sampled every second."""
    mix: list[tuple[str, bytes]] = [
        ("generate-stream", generate_request(16, stream=True)),
        ("bad-json", encode("POST", "/api/generate", b"{not json")),
        ("too-many-tokens", generate_request(10**6)),
        ("generate", generate_request(16)),
        (
            "chat",
            encode(
                "POST",
                "/v1/chat/completions",
                {"messages": [{"role": "user", "content": PROMPT}], "max_tokens": 16},
            ),
        ),
        (
            "completion-stream",
            encode("POST", "/v1/completions", {"prompt": PROMPT, "max_tokens": 16, "stream": True}),
        ),
    ]
    samples: list[tuple[float, float]] = []
    statuses: Counter[str] = Counter()
    stop_at = time.monotonic() + plan.soak_s

    async def client(offset: int) -> None:
        conn = Connection(HOST, server.port)
        i = offset
        try:
            while time.monotonic() < stop_at:
                i += 1
                if i % 7 == 0:  # every seventh: a stream dropped after its first event
                    request = mix[0][1]
                    answer = await Connection(HOST, server.port).first_event_then_abort(request)
                    statuses[f"dropped-stream {answer.status}"] += 1
                    continue
                name, request = mix[i % len(mix)]
                try:
                    answer = await conn.send(request, timeout=300)
                except (ConnectionError, TimeoutError, OSError):
                    statuses[f"{name} transport-error"] += 1
                    continue
                statuses[f"{name} {answer.status}"] += 1
        finally:
            conn.close()

    async def sampler() -> None:
        started = time.monotonic()
        while time.monotonic() < stop_at:
            samples.append((time.monotonic() - started, server.rss_mb()))
            await asyncio.sleep(1.0)

    async def run() -> None:
        await asyncio.gather(sampler(), *(client(k) for k in range(plan.soak_connections)))

    asyncio.run(run())
    wait_drained(server)
    samples.append((plan.soak_s, server.rss_mb()))
    # Growth from the first fifth (after warm-up allocations) to the last fifth, by medians.
    fifth = max(1, len(samples) // 5)
    early = statistics.median(r for _, r in samples[:fifth])
    late = statistics.median(r for _, r in samples[-fifth:])
    growth = (late - early) / early * 100
    server_errors = sum(
        n for k, n in statuses.items() if k.split()[-1].isdigit() and int(k.split()[-1]) >= 500
    )
    return {
        "seconds": plan.soak_s,
        "requests": sum(statuses.values()),
        "statuses": dict(sorted(statuses.items())),
        "rss_start_mb": round(samples[0][1], 1),
        "rss_early_median_mb": round(early, 1),
        "rss_late_median_mb": round(late, 1),
        "rss_max_mb": round(max(r for _, r in samples), 1),
        "rss_growth_pct": round(growth, 2),
        "rss_samples": [(round(t, 1), round(r, 1)) for t, r in samples],
        "targets": {
            "rss_growth": {"target": "< 2 %", "measured": round(growth, 2), "met": growth < 2},
            "no_5xx": {"target": 0, "measured": server_errors, "met": server_errors == 0},
        },
    }


# -- the API-key / rate-limit abuse set ----------------------------------------------------
ABUSE_KEYS = ["abuse-key-alpha-0123456789", "abuse-key-bravo-0123456789"]
ABUSE_KEYS += ["abuse-key-charlie-012345678", "abuse-key-delta-0123456789"]
ABUSE_LIMIT = 20
ABUSE_ENV = {
    "NIMBUS_SECURITY__AUTH__MODE": "on",
    "NIMBUS_SECURITY__AUTH__KEYS": ",".join(ABUSE_KEYS),
    "NIMBUS_SECURITY__RATE_LIMIT__REQUESTS_PER_WINDOW": str(ABUSE_LIMIT),
    # A long window: the checks count requests, however slowly the machine answers them.
    "NIMBUS_SECURITY__RATE_LIMIT__WINDOW_S": "3600",
    "NIMBUS_LIMITS__BODY_TIMEOUT_S": "1",
    "NIMBUS_LIMITS__ADMISSION_WAIT_MS": "0",
    "NIMBUS_LIMITS__MAX_QUEUE": "0",
    "NIMBUS_ENGINE__SLOTS": "1",
    # Speed is not under test in this scenario: one decode thread copes best with a busy shared CPU.
    "NIMBUS_ENGINE__N_THREADS": "1",
}


def abuse(plan: Plan, _: Server | None = None) -> dict[str, Any]:
    """Keys and limits under abuse, against a server with keys on, a 20-request limit, one slot
    and no queue (so refusals are easy to cause) and a 1 s body timeout."""
    checks: list[dict[str, Any]] = []

    def check(name: str, ok: bool, detail: str) -> None:
        checks.append({"check": name, "met": bool(ok), "detail": detail})

    with serve(ABUSE_ENV, log_dir=plan.log_dir, name="abuse") as server:
        url = server.base_url
        body = {"prompt": "hi", "maxTokens": 2}
        a, b, c, d = ABUSE_KEYS
        with httpx.Client(base_url=url, timeout=120) as http:

            def gen(headers: dict[str, str], payload: Any = body) -> httpx.Response:
                return http.post("/api/generate", json=payload, headers=headers)

            bad = [
                gen({}),
                gen({"authorization": "Bearer nope"}),
                gen({"x-api-key": a[:-1]}),
                gen({"authorization": f"Basic {a}"}),
            ]
            check(
                "missing, wrong or malformed keys get one identical 401",
                all(r.status_code == 401 for r in bad) and len({r.text for r in bad}) == 1,
                f"statuses {[r.status_code for r in bad]}",
            )
            for i in range(50):
                gen({"x-api-key": f"guess-{i:04d}-0123456789abcdef"})
            r = gen({"x-api-key": a})
            check("50 wrong guesses do not lock out a valid key", r.status_code == 200, str(r))
            sigv4 = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/eu-west-1/lambda/aws4_request"
            r = gen({"authorization": f"{sigv4}, SignedHeaders=host, Signature=00", "x-api-key": a})
            check(
                "SigV4 in Authorization + key in x-api-key (edge -> origin)",
                r.status_code == 200,
                str(r),
            )
            # Raw bytes: httpx refuses to send such values; some clients and gateways do.
            spaced = [
                _raw(server.port, encode("POST", "/api/generate", body, {name: value}))[:12]
                for name, value in (
                    ("Authorization", f"Bearer \t {a}  "),
                    ("x-api-key", f"  {a}\t"),
                )
            ]
            check(
                "whitespace around the key is trimmed in both headers",
                spaced == [b"HTTP/1.1 200"] * 2,
                f"{spaced}",
            )
            codes = [gen({"x-api-key": b}).status_code for _ in range(ABUSE_LIMIT + 1)]
            limited = gen({"x-api-key": b})
            check(
                f"a key gets {ABUSE_LIMIT} requests, then 429 with Retry-After",
                codes[:ABUSE_LIMIT] == [200] * ABUSE_LIMIT
                and codes[-1] == 429
                and int(limited.headers.get("retry-after", "0")) >= 1,
                f"200 x {codes.count(200)}, 429 x {codes.count(429)}",
            )
            r = gen({"x-api-key": c})
            check("another key keeps its own quota", r.status_code == 200, str(r))
            before = int(r.headers["x-ratelimit-remaining"])
            invalid = [
                gen({"x-api-key": c}, {"prompt": "hi", "maxTokens": 10**7}).status_code,
                http.post(
                    "/api/generate",
                    content=b"{not json",
                    headers={"x-api-key": c, "content-type": "application/json"},
                ).status_code,
                http.post(
                    "/v1/chat/completions", json={"messages": 5}, headers={"x-api-key": c}
                ).status_code,
            ]
            after = int(gen({"x-api-key": c}).headers["x-ratelimit-remaining"])
            check(
                "invalid requests (400/422) use no quota",
                invalid == [400, 422, 400] and after == before - 1,
                f"statuses {invalid}, remaining {before} -> {after}",
            )
            check(
                "405 carries Allow",
                (r := http.get("/api/generate")).status_code == 405
                and r.headers.get("allow") == "POST",
                f"{r.status_code} Allow={r.headers.get('allow')}",
            )
        # 503s while the only slot is busy use no quota.
        busy = asyncio.run(_busy_refusals(server, d))
        check(
            "503 refusals (engine full) use no quota",
            busy["refused"] > 0 and busy["remaining_after"] == busy["remaining_before"] - 2,
            json.dumps(busy),
        )
        check(
            "refusals come before the body is read (no body sent at all)",
            busy["refused_without_body"] == 503,
            f"status {busy['refused_without_body']}",
        )
        started = time.monotonic()
        loris = _slow_loris(server.port)
        check(
            "a body shorter than its Content-Length: 408 and the connection closed",
            loris.startswith(b"HTTP/1.1 408") and time.monotonic() - started < 10,
            f"{loris[:40]!r} after {time.monotonic() - started:.2f} s",
        )
        huge = _raw(
            server.port,
            b"POST /api/generate HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999\r\n\r\n",
        )
        check(
            "an oversized Content-Length gets 413 unread",
            huge.startswith(b"HTTP/1.1 413"),
            f"{huge[:40]!r}",
        )
        control = _raw(
            server.port,
            b"GET /api/health HTTP/1.1\r\nHost: t\r\nX-Bad: a\x1bb\r\nConnection: close\r\n\r\n",
        )
        check(
            "a header with a control character gets 400",
            control.startswith(b"HTTP/1.1 400"),
            f"{control[:40]!r}",
        )
        deep = httpx.post(
            f"{url}/api/generate",
            content=b"[" * 5000 + b"]" * 5000,
            headers={"x-api-key": a, "content-type": "application/json"},
            timeout=60,
        )
        check("JSON nested 5000 deep gets 400", deep.status_code == 400, str(deep))
        alive = server.process.poll() is None and server.health().get("status") == "ready"
        check("the server is still serving", alive, "health ready" if alive else "down")
    met = sum(1 for c in checks if c["met"])
    return {
        "checks": checks,
        "targets": {
            "all_checks": {"target": len(checks), "measured": met, "met": met == len(checks)}
        },
    }


async def _busy_refusals(server: Server, key: str) -> dict[str, Any]:
    """Hold the only slot with a long stream, send requests (refused), then check the quota."""
    headers = {"x-api-key": key}
    conn = Connection(HOST, server.port)
    first = await conn.send(
        encode("POST", "/api/generate", {"prompt": "hi", "maxTokens": 1}, headers)
    )
    before = int(first.headers["x-ratelimit-remaining"])
    holder = Connection(HOST, server.port)
    long = encode(
        "POST", "/api/generate", {"prompt": PROMPT, "maxTokens": 2048, "stream": True}, headers
    )
    reader, writer = await holder._ensure()
    writer.write(long)
    await reader.readuntil(b"data: ")  # the slot is now busy with this stream
    refused = 0
    for _ in range(5):
        answer = await conn.send(encode("POST", "/api/generate", {"prompt": "hi"}, headers))
        refused += answer.status == 503
    no_body = await Connection(HOST, server.port).send(
        b"POST /api/generate HTTP/1.1\r\nHost: t\r\nContent-Length: 50\r\n"
        + f"x-api-key: {key}\r\n\r\n".encode(),
        timeout=10,
    )
    holder.abort()
    # The dropped stream frees the slot at the engine's next step; until then: 503 (no quota).
    one = encode("POST", "/api/generate", {"prompt": "hi", "maxTokens": 1}, headers)
    last = await conn.send(one)
    for _ in range(600):
        if last.status != 503:
            break
        await asyncio.sleep(0.1)
        last = await conn.send(one)
    conn.close()
    return {
        "refused": refused,
        "remaining_before": before,
        "remaining_after": int(last.headers.get("x-ratelimit-remaining", "-1")),
        "refused_without_body": no_body.status,
    }


def _raw(port: int, data: bytes, timeout: float = 10) -> bytes:
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        sock.sendall(data)
        return sock.recv(65536)


def _slow_loris(port: int) -> bytes:
    with socket.create_connection((HOST, port), timeout=10) as sock:
        sock.sendall(
            b"POST /api/generate HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n" + b'{"prompt": "h'
        )
        data = b""
        while chunk := sock.recv(65536):  # until the server closes the connection
            data += chunk
        return data


def injection(plan: Plan, _: Server | None = None) -> dict[str, Any]:
    """The injection policy on the labelled set kept in the tests."""
    from core.security.injection import InjectionDetector
    from tests.core.security.injection_cases import ATTACKS, INNOCENT

    detector = InjectionDetector()
    misses = [t for t, _ in ATTACKS if not detector.attacks(t)]
    false_positives = [t for t, _ in INNOCENT if detector.attacks(t)]
    started = time.perf_counter()
    for text, _ in ATTACKS + INNOCENT:
        detector.attacks(text)
    per_prompt_us = (time.perf_counter() - started) / (len(ATTACKS) + len(INNOCENT)) * 1e6
    long_prompt = ("The quick brown fox jumps over the lazy dog. " * 728)[:32768]
    started = time.perf_counter()
    detector.attacks(long_prompt)
    long_ms = (time.perf_counter() - started) * 1000
    miss_rate = len(misses) / len(ATTACKS)
    fp_rate = len(false_positives) / len(INNOCENT)
    return {
        "attacks": len(ATTACKS),
        "innocent": len(INNOCENT),
        "miss_rate": round(miss_rate, 4),
        "false_positive_rate": round(fp_rate, 4),
        "misses": misses,
        "false_positives": false_positives,
        "check_us_per_prompt": round(per_prompt_us, 1),
        "check_ms_32k_chars": round(long_ms, 1),
        "targets": {
            "miss_rate": {
                "target": "<= 5 %",
                "measured": round(miss_rate * 100, 1),
                "met": miss_rate <= 0.05,
            },
            "false_positive_rate": {
                "target": "<= 6 %",
                "measured": round(fp_rate * 100, 1),
                "met": fp_rate <= 0.06,
            },
        },
    }


Scenario = Callable[[Plan, Server], dict[str, Any]]
ON_DEFAULT_SERVER: dict[str, Scenario] = {
    "load": load,
    "flood": flood,
    "fuzz": fuzz,
    "storm": storm,
    "soak": soak,
}
STANDALONE: dict[str, Callable[[Plan, Server | None], dict[str, Any]]] = {
    "abuse": abuse,
    "injection": injection,
}
ALL = [*ON_DEFAULT_SERVER, *STANDALONE]
_ = Awaitable, Answer  # re-exported names used by the tests
