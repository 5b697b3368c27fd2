"""Continuous batching over one llama.cpp context: the engine thread's scheduler.

Every running request owns a *slot* (a llama.cpp sequence id). Each step builds one batch: the
last sampled token of every decoding slot plus a chunk of at most ``prefill_chunk`` prompt tokens
of each newcomer (while the batch has room), runs one ``llama_decode`` and samples each row that
asked for logits with that request's own sampler chain. Requests join between steps; finished or
cancelled ones leave at once.

n > 1 choices: the job takes n slots at once; the first (the leader) evaluates the prompt, the
others wait, get the prompt's cells copied (``seq_cp``, which only tags cells) and draw their
first token from the leader's logits row; from then on each decodes as its own row.

Log-probabilities are computed only for requests that ask for them (``Sampler.sample_scored``);
every other row samples exactly as before.

Work that must run on this thread but is not a generation (the embedding context's decodes) is
queued as an ``EngineTask`` and run between steps, one per step.

Prefix cache: a slot keeps its KV cells after its request ends, tagged with the tokens they hold.
A newcomer takes the free slot whose cells share the longest prefix with its prompt (or has that
prefix copied from any slot with ``seq_cp``, which in the unified KV cache only tags cells) and
evaluates only the rest. Idle cells are dropped, least recently used first, when the cache is full.
"""

from __future__ import annotations

import codecs
import dataclasses
import logging
import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

from core.engine.idlecache import IdleCache
from core.engine.kvcells import CellMap
from core.engine.lowlevel import Context, Model, Sampler, Scored, common_prefix
from core.engine.stops import StopMatcher
from core.engine.stream import GenerationStream, Outbox
from core.engine.types import (
    ChoiceResult,
    Completion,
    Delta,
    FinishReason,
    GenerationRequest,
    TokenLogprob,
)
from core.errors import (
    EngineError,
    EngineOverloadedError,
    InvalidParameterError,
    ModelNotReadyError,
    NimbusError,
)

log = logging.getLogger("nimbus.engine")

# Copy a prefix from another slot only when it saves at least this many tokens of prefill over
# what the chosen slot already holds (a copy is cheap, but reusing one's own cells is free).
_MIN_COPY_GAIN = 8


@dataclass
class Job:
    request: GenerationRequest
    tokens: list[int]
    max_new: int
    stream: GenerationStream


class EngineTask(Protocol):
    """Work for the engine thread (see BatchScheduler.call)."""

    def run(self) -> None: ...

    def fail(self, error: NimbusError) -> None: ...


@dataclass
class _Group:
    """The choices of one job: its stream finishes when the last of them ends."""

    job: Job
    choices: list[ChoiceResult | None]
    left: int
    reused: int = 0


@dataclass
class _Run:
    """One choice's generation state while it holds a slot."""

    job: Job
    sampler: Sampler
    reused: int
    group: _Group
    index: int = 0
    plain: bool = True  # choice 0 of n = 1 without log-probabilities: text goes out as str
    logprobs: list[TokenLogprob] | None = None
    waiting: bool = False  # a follower: its prompt cells come from the leader
    followers: list[_Slot] = field(default_factory=list)  # waiting for this run's prompt
    decoder: Any = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")(errors="replace")
    )
    stops: StopMatcher = field(default_factory=lambda: StopMatcher(()))
    pieces: list[str] = field(default_factory=list)
    order: int = 0  # admission order: prompts are evaluated first come, first served
    count: int = 0
    pending: int | None = None  # sampled, not yet decoded (fed in the next step)


@dataclass
class _Slot:
    seq: int
    cached: list[int] = field(default_factory=list)  # tokens whose KV cells this sequence holds
    run: _Run | None = None
    last_used: float = 0.0


@dataclass
class SchedulerStats:
    active: int
    waiting: int
    prompt_tokens: int = 0
    reused_tokens: int = 0
    steps: int = 0
    placed: int = 0  # requests that got a slot
    reuse_hits: int = 0  # of which reused at least one cached prompt token
    kv_cells_used: int = 0
    tokens_per_s: float = 0.0
    """Generated tokens per second of decoding, all slots together (recent, smoothed)."""
    tokens_per_request: float = 0.0
    """Completion tokens of recently finished requests (smoothed)."""
    retry_after_s: int = 1
    """How long a refused request should wait: see ``BatchScheduler.retry_after_s``."""
    idle_cache_bytes: int = 0
    """Idle slots' KV cells held in host memory (see ``core.engine.idlecache``)."""


class Throughput:
    """Recent generation speed, written by the engine thread only and read by any thread
    without a lock (float assignments are atomic): tokens per second of decode steps, folded
    into a moving average every ``period_s`` of step time, and tokens per finished request."""

    def __init__(self, period_s: float = 0.5, weight: float = 0.3) -> None:
        self.period_s = period_s
        self.weight = weight
        self.tokens_per_s = 0.0
        self.tokens_per_request = 0.0
        self._tokens = 0
        self._seconds = 0.0

    def step(self, tokens: int, seconds: float) -> None:
        self._tokens += tokens
        self._seconds += seconds
        if self._seconds >= self.period_s:
            rate = self._tokens / self._seconds
            self.tokens_per_s = self._blend(self.tokens_per_s, rate)
            self._tokens, self._seconds = 0, 0.0

    def finished(self, tokens: int) -> None:
        self.tokens_per_request = self._blend(self.tokens_per_request, float(max(tokens, 1)))

    def _blend(self, old: float, new: float) -> float:
        return new if old <= 0 else old + self.weight * (new - old)


class BatchScheduler:
    def __init__(
        self,
        model: Model,
        ctx: Context,
        *,
        slots: int,
        prefill_chunk: int,
        max_waiting: int,
        retry_after_s: int,
        retry_after_max_s: int = 60,
        prefix_cache: bool = True,
        idle_cache_bytes: int = 0,
        warm_up_token: int | None = None,
    ) -> None:
        self._model = model
        self._ctx = ctx
        self._slots = [_Slot(seq) for seq in range(slots)]
        self._cells = CellMap(slots)
        self._chunk = max(1, min(prefill_chunk, ctx.n_batch))
        self._max_waiting = max_waiting
        self._prefix_cache = prefix_cache
        # Idle slots' cells leave the context when a request starts (kept in host memory for
        # the prefix cache); without a budget they stay.
        self._idle: IdleCache | None = IdleCache(idle_cache_bytes) if idle_cache_bytes > 0 else None
        self._warm_up_token = warm_up_token
        self._retry_floor = retry_after_s
        self._retry_cap = max(retry_after_s, retry_after_max_s)
        self.throughput = Throughput()
        self._queue: deque[Job] = deque()
        self._tasks: deque[EngineTask] = deque()
        # What this thread hands to streams during one pass of the loop reaches each event loop
        # in one call at the end of it (one wakeup per step, not one per token).
        self.outbox = Outbox()
        self._cond = threading.Condition()
        self._active = 0
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._prompt_tokens = 0
        self._reused_tokens = 0
        self._steps = 0
        self._admitted = 0
        self._reuse_hits = 0
        self._generated = 0

    # -- any thread ---------------------------------------------------------------------------
    @property
    def capacity(self) -> int:
        return len(self._slots) + self._max_waiting

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="nimbus-engine", daemon=True)
        self._thread.start()

    def submit(self, job: Job) -> None:
        with self._cond:
            if self._stopping:
                raise ModelNotReadyError("server is shutting down")
            # Every slot busy and max_waiting more queued: refuse at once rather than hang.
            if self._active + len(self._queue) >= self.capacity:
                retry = self.retry_after_s()
                raise EngineOverloadedError(
                    f"the engine is busy ({self._active} running, {len(self._queue)} waiting); "
                    f"retry in {retry} s",
                    headers={"Retry-After": str(retry)},
                )
            self._queue.append(job)
            self._cond.notify_all()

    def call(self, task: EngineTask) -> None:
        """Run ``task`` on the engine thread between two decode steps (one task per step, so
        generations keep flowing). Refused at once when ``max_waiting`` tasks are queued."""
        with self._cond:
            if self._stopping:
                raise ModelNotReadyError("server is shutting down")
            if len(self._tasks) >= max(1, self._max_waiting):
                raise EngineOverloadedError(
                    f"the engine is busy ({len(self._tasks)} tasks waiting); retry shortly",
                    headers={"Retry-After": str(self.retry_after_s())},
                )
            self._tasks.append(task)
            self._cond.notify_all()

    def retry_after_s(self) -> int:
        """Seconds until a request refused now would likely find a place: the queued requests
        plus one must finish first, at (tokens per second) / (tokens per request) requests per
        second. Within [retry_after_s, retry_after_max_s]; the floor until anything is measured.
        Reads without the lock: an estimate needs no consistent snapshot."""
        rate = self.throughput.tokens_per_s
        per_request = self.throughput.tokens_per_request
        if rate <= 0 or per_request <= 0:
            return self._retry_floor
        wait = (len(self._queue) + 1) * per_request / rate
        return min(self._retry_cap, max(self._retry_floor, math.ceil(wait)))

    def stats(self) -> SchedulerStats:
        # Slot lengths and cell runs are read while the engine thread runs: the gauge can be a
        # step behind, or off for the instant a request is being placed.
        cells = self._cells.used([len(s.cached) for s in self._slots])
        with self._cond:
            return SchedulerStats(
                self._active,
                len(self._queue),
                self._prompt_tokens,
                self._reused_tokens,
                self._steps,
                self._admitted,
                self._reuse_hits,
                cells,
                self.throughput.tokens_per_s,
                self.throughput.tokens_per_request,
                self.retry_after_s(),
                self._idle.bytes if self._idle is not None else 0,
            )

    def close(self) -> list[Job]:
        """Stop the loop; returns the jobs that never started (the caller fails them)."""
        with self._cond:
            self._stopping = True
            pending = list(self._queue)
            self._queue.clear()
            self._cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)
        return pending

    # -- engine thread ------------------------------------------------------------------------
    def _loop(self) -> None:
        self.outbox.claim()
        try:
            self._warm_up()
            while self._wait_for_work():
                self._run_task()
                self._admit()
                self._retire_cancelled()
                if any(s.run is not None for s in self._slots):
                    started, before = time.perf_counter(), self._generated
                    try:
                        self._step()
                        self.throughput.step(
                            self._generated - before, time.perf_counter() - started
                        )
                    except Exception as exc:
                        # Fail the requests in flight, keep serving the next ones.
                        log.exception("decode step failed")
                        error = exc if isinstance(exc, NimbusError) else EngineError(str(exc))
                        self._fail_running(error)
                self.outbox.flush()
        except BaseException as exc:  # never leave a stream hanging
            log.exception("engine loop crashed")
            self._fail_all(exc)
        finally:
            self._fail_all(ModelNotReadyError("server is shutting down"))
            self.outbox.flush()

    def _warm_up(self) -> None:
        # Here, on the engine thread, and nowhere else: llama.cpp's OpenMP build gives every
        # thread that decodes its own team of worker threads, and once more threads exist than
        # cores libgomp stops spinning at barriers. A warm-up decoded on the loading thread
        # (which stays alive in-process) left in-process decoding 3x slower (measured).
        if self._warm_up_token is None:
            return
        try:
            self._ctx.warm_up(self._warm_up_token)
        except Exception:  # only a speed-up: the first request pays instead
            log.warning("warm-up decode failed", exc_info=True)

    def _wait_for_work(self) -> bool:
        with self._cond:
            while not self._stopping and not self._queue and not self._tasks and self._active == 0:
                self._cond.wait()
            return not self._stopping

    def _run_task(self) -> None:
        with self._cond:
            if not self._tasks:
                return
            task = self._tasks.popleft()
        try:
            task.run()
        except Exception as exc:
            log.exception("engine task failed")
            task.fail(exc if isinstance(exc, NimbusError) else EngineError(str(exc)))

    def _admit(self) -> None:
        while True:
            with self._cond:
                free = [s for s in self._slots if s.run is None]
                # A job with n choices waits for n free slots (first come, first served).
                if not self._queue or len(free) < self._queue[0].request.n:
                    return
                job = self._queue.popleft()
                self._active += job.request.n
            if job.stream.cancelled:
                self._end_unstarted(job, "cancelled")
                continue
            try:
                self._place(job, free)
            except NimbusError as exc:
                self._end_unstarted(job, None, exc)
            except Exception as exc:
                log.exception("could not start a request")
                self._end_unstarted(job, None, EngineError(f"generation failed: {exc}"))

    def _place(self, job: Job, free: list[_Slot]) -> None:
        tokens = job.tokens
        # The last prompt token is always evaluated: it gives the logits.
        limit = len(tokens) - 1 if self._prefix_cache else 0
        # Each slot's reusable prefix, measured once: it picks the slot, the donor and whether a
        # saved copy in host memory beats them all.
        shared = {s.seq: min(common_prefix(s.cached, tokens), limit) for s in self._slots}
        slot = max(free, key=lambda s: (shared[s.seq], -s.last_used))
        restored = (
            self._idle is not None
            and limit > 0
            and self._restore_into(slot, tokens, limit, max(shared.values()))
        )
        if restored:
            shared[slot.seq] = min(common_prefix(slot.cached, tokens), limit)
        own = shared[slot.seq]
        donor, best = slot, own
        for other in self._slots:
            if other is not slot and shared[other.seq] > best:
                donor, best = other, shared[other.seq]
        samplers = self._samplers(job.request)
        if donor is not slot and best - own >= _MIN_COPY_GAIN:
            self._ctx.seq_rm(slot.seq)
            self._ctx.seq_cp(donor.seq, slot.seq, 0, best)
            self._cells.copy(donor.seq, slot.seq, best, len(donor.cached))
            slot.cached = tokens[:best]
        elif self._ctx.seq_rm(slot.seq, own, -1):
            self._cells.keep(slot.seq, own, len(slot.cached))
            slot.cached = slot.cached[:own]
        else:  # this memory type cannot cut a sequence in the middle: start it afresh
            self._ctx.seq_rm(slot.seq)
            self._cells.keep(slot.seq, 0, 0)
            slot.cached = []
        self._admitted += 1
        n = job.request.n
        group = _Group(job, [None] * n, n, reused=len(slot.cached))
        run = self._run(job, group, samplers[0], 0, reused=len(slot.cached))
        slot.run = run
        job.stream.mark_started()
        # The other choices take the least recently used free slots and wait for the prompt.
        rest = sorted((s for s in free if s is not slot), key=lambda s: s.last_used)
        for index, follower in enumerate(rest[: n - 1], start=1):
            self._ctx.seq_rm(follower.seq)
            self._cells.clear(follower.seq)
            follower.cached = []
            follower.run = self._run(job, group, samplers[index], index, reused=0)
            follower.run.waiting = True
            run.followers.append(follower)
        with self._cond:
            self._prompt_tokens += len(tokens)
            self._reused_tokens += run.reused
            self._reuse_hits += int(run.reused > 0)
        if self._idle is not None:
            for other in self._slots:
                if other.run is None and other.cached:
                    self._move_out(other)

    def _restore_into(self, slot: _Slot, tokens: list[int], limit: int, in_slots: int) -> bool:
        """Bring back saved cells into ``slot`` when they share more of ``tokens`` than the
        ``in_slots`` tokens any slot holds (by at least what a copy must gain); True when
        ``slot``'s cells changed."""
        assert self._idle is not None
        hit = self._idle.best(tokens, limit)
        if hit is None or hit[0] - in_slots < _MIN_COPY_GAIN:
            return False
        entry = self._idle.take(hit[1])
        self._ctx.seq_rm(slot.seq)
        if self._ctx.seq_restore(slot.seq, entry.state):
            self._cells.keep(slot.seq, 0, 0)
            slot.cached = list(entry.tokens)
        else:  # no room for them now: the slot starts afresh (llama.cpp clears a failed restore;
            # the seq_rm makes sure of it whatever its version)
            self._ctx.seq_rm(slot.seq)
            self._cells.clear(slot.seq)
            slot.cached = []
        return True

    def _move_out(self, slot: _Slot) -> None:
        """An idle slot's cells to host memory (for the prefix cache), then out of the context.
        Cells of at most one prefill chunk are not kept (evaluating them again takes one step);
        cells too large for the whole budget stay where they are."""
        assert self._idle is not None
        if self._prefix_cache and len(slot.cached) > self._chunk:
            size = self._ctx.seq_state_size(slot.seq)
            if size > self._idle.budget_bytes:
                return
            self._idle.put(slot.cached, self._ctx.seq_state(slot.seq, size))
        self._ctx.seq_rm(slot.seq)
        self._cells.clear(slot.seq)
        slot.cached = []

    def _samplers(self, request: GenerationRequest) -> list[Sampler]:
        """One chain per choice; choice i of a seeded request draws with seed + i."""
        samplers: list[Sampler] = []
        try:
            for index in range(request.n):
                sampling = request.sampling
                if index and sampling.seed is not None:
                    seed = (sampling.seed + index) % 0xFFFFFFFF
                    sampling = dataclasses.replace(sampling, seed=seed)
                samplers.append(
                    Sampler(
                        self._model,
                        sampling,
                        request.grammar,
                        grammar_triggers=request.grammar_triggers,
                        logit_bias=request.logit_bias,
                    )
                )
        except ValueError as exc:
            for sampler in samplers:
                sampler.close()
            raise InvalidParameterError(str(exc), param="response_format") from exc
        return samplers

    def _run(self, job: Job, group: _Group, sampler: Sampler, index: int, *, reused: int) -> _Run:
        wants = job.request.logprobs is not None
        return _Run(
            job,
            sampler,
            reused=reused,
            group=group,
            index=index,
            plain=job.request.n == 1 and not wants,
            logprobs=[] if wants else None,
            stops=StopMatcher(job.request.stop),
            order=self._admitted,
        )

    def _retire_cancelled(self) -> None:
        now = time.monotonic()
        for slot in self._slots:
            run = slot.run
            if run is None:
                continue
            if run.job.stream.cancelled:
                self._finish(slot, "cancelled")
            elif run.job.request.deadline is not None and now >= run.job.request.deadline:
                self._finish(slot, "length")

    def _step(self) -> None:
        ctx = self._ctx
        while True:
            ctx.batch_clear()
            plan: list[tuple[_Slot, list[int], int | None]] = []  # slot, tokens fed, logits row
            for slot in self._slots:
                run = slot.run
                if run is not None and run.pending is not None:
                    plan.append(
                        (
                            slot,
                            [run.pending],
                            ctx.batch_add(run.pending, len(slot.cached), slot.seq, True),
                        )
                    )
            # One newcomer's prompt per step, oldest first. Mixing several prompts in one batch
            # changes llama.cpp's float rounding for them (measured: greedy output then differs
            # from a solo run); one prompt chunk next to single-token rows does not.
            newcomers = [
                s
                for s in self._slots
                if s.run is not None and s.run.pending is None and not s.run.waiting
            ]
            if newcomers:
                slot = min(newcomers, key=lambda s: s.run.order if s.run else 0)
                assert slot.run is not None
                prompt = slot.run.job.tokens
                start = len(slot.cached)
                # Chunk it only while other streams are decoding, so they keep flowing.
                size = self._chunk if plan else ctx.n_batch
                chunk = prompt[start : start + min(size, ctx.n_batch - ctx.batch_size)]
                last = start + len(chunk) == len(prompt)
                logits_row = ctx.batch_add_span(chunk, start, slot.seq, logits_last=last)
                plan.append((slot, chunk, logits_row))
            if not plan:
                return
            status = ctx.decode()
            if status == 0:
                break
            if status == 1 and self._make_room():
                continue  # nothing was changed by the failed call: rebuild and retry
            raise EngineError(f"llama_decode failed with status {status}")
        self._steps += 1
        for slot, fed, _ in plan:
            slot.cached.extend(fed)
            if slot.run is not None:
                slot.run.pending = None
        # Greedy rows without log-probabilities: one argmax over the whole batch's logits.
        greedy = [
            (slot, row)
            for slot, _, row in plan
            if row is not None
            and slot.run is not None
            and slot.run.sampler.greedy_only
            and slot.run.logprobs is None
            and not slot.run.followers
        ]
        picked = (
            dict(zip((id(s) for s, _ in greedy), ctx.argmax([r for _, r in greedy]), strict=True))
            if greedy
            else {}
        )
        for slot, _, row in plan:
            run = slot.run
            if row is None or run is None:
                continue
            token = picked.get(id(slot))
            if token is not None:
                self._on_token(slot, token)
                continue
            if run.logprobs is None and not run.followers:  # a sampler chain: one call
                self._on_token(slot, run.sampler.sample(ctx, row))
                continue
            followers, run.followers = run.followers, []
            self._on_token(slot, *self._sample(run, row))
            for follower in followers:  # the prompt is in: the other choices start here
                other = follower.run
                if other is None or other.group is not run.group:
                    continue
                self._ctx.seq_cp(slot.seq, follower.seq, 0, len(run.job.tokens))
                self._cells.copy(slot.seq, follower.seq, len(run.job.tokens), len(slot.cached))
                follower.cached = list(run.job.tokens)
                other.waiting = False
                self._on_token(follower, *self._sample(other, row))

    def _sample(self, run: _Run, row: int) -> tuple[int, Scored | None]:
        if run.logprobs is None:
            return run.sampler.sample(self._ctx, row), None
        scored = run.sampler.sample_scored(self._ctx, row, run.job.request.logprobs or 0)
        return scored[0], scored

    def _make_room(self) -> bool:
        """The KV cache is full: drop idle cached prefixes (LRU), else cut the longest run."""
        idle = [s for s in self._slots if s.run is None and s.cached]
        if idle:
            victim = min(idle, key=lambda s: s.last_used)
            self._ctx.seq_rm(victim.seq)
            self._cells.clear(victim.seq)
            victim.cached = []
            return True
        busy = [s for s in self._slots if s.run is not None]
        if len(busy) <= 1:
            return False  # a single request that does not fit: nothing else to free
        victim = max(busy, key=lambda s: len(s.cached))
        log.warning("KV cache full: ending the longest request (%d tokens)", len(victim.cached))
        self._finish(victim, "length")
        self._ctx.seq_rm(victim.seq)
        self._cells.clear(victim.seq)
        victim.cached = []
        return True

    def _on_token(self, slot: _Slot, token: int, scored: Scored | None = None) -> None:
        run = slot.run
        assert run is not None
        job = run.job
        if job.stream.cancelled:
            self._finish(slot, "cancelled")
            return
        if self._model.is_eog(token):
            self._finish(slot, "stop")
            return
        run.count += 1
        piece = self._model.piece(token)
        text, hit = run.stops.push(run.decoder.decode(piece))
        self._generated += 1
        run.pieces.append(text)
        if run.plain:
            job.stream.emit(text)
        else:
            entries = None
            if scored is not None and run.logprobs is not None:
                top = tuple((self._model.piece(t), lp) for t, lp in scored[2])
                entries = [TokenLogprob(piece, scored[1], top)]
                run.logprobs += entries
            job.stream.emit_delta(Delta(run.index, text, entries))
        if hit:
            self._finish(slot, "stop", stop_hit=True)
        elif run.count >= job.max_new or (
            job.request.deadline is not None and time.monotonic() >= job.request.deadline
        ):
            self._finish(slot, "length")
        else:
            run.pending = token

    def _finish(self, slot: _Slot, reason: FinishReason, *, stop_hit: bool = False) -> None:
        run = slot.run
        assert run is not None
        if not stop_hit:
            # Bytes of a character the last token left incomplete (a length cut inside it) are
            # dropped: the text never ends in U+FFFD.
            run.decoder.reset()
            tail = run.stops.flush()
            run.pieces.append(tail)
            if run.plain:
                run.job.stream.emit(tail)
            else:
                run.job.stream.emit_delta(Delta(run.index, tail))
        run.sampler.close()
        slot.run = None
        slot.last_used = time.monotonic()
        if reason != "cancelled":
            self.throughput.finished(run.count)
        with self._cond:
            self._active -= 1
        group = run.group
        group.choices[run.index] = ChoiceResult(
            run.index, "".join(run.pieces), reason, run.count, run.logprobs
        )
        group.left -= 1
        for follower in run.followers:  # ended before its prompt was in: they end with it
            if follower.run is not None and follower.run.group is group:
                self._finish(follower, reason)
        if group.left == 0:
            run.job.stream.finish(_completion(group))

    def _end_unstarted(
        self, job: Job, reason: FinishReason | None, error: NimbusError | None = None
    ) -> None:
        with self._cond:
            self._active -= job.request.n
        if error is not None:
            job.stream.fail(error)
        else:
            assert reason is not None
            job.stream.finish(Completion("", reason, len(job.tokens), 0))

    def _fail_running(self, error: NimbusError) -> None:
        for slot in self._slots:
            run = slot.run
            if run is not None:
                run.sampler.close()
                slot.run = None
                self._ctx.seq_rm(slot.seq)
                self._cells.clear(slot.seq)
                slot.cached = []
                with self._cond:
                    self._active -= 1
                run.job.stream.fail(error)

    @property
    def stopped(self) -> bool:
        return self._thread is None or not self._thread.is_alive()

    def _fail_all(self, exc: BaseException) -> None:
        error = exc if isinstance(exc, NimbusError) else EngineError(f"engine failure: {exc}")
        for slot in self._slots:
            run = slot.run
            if run is not None:
                run.sampler.close()
                slot.run = None
                run.job.stream.fail(error)
        with self._cond:
            pending = list(self._queue)
            self._queue.clear()
            tasks = list(self._tasks)
            self._tasks.clear()
            self._active = 0
        for job in pending:
            job.stream.fail(error)
        for task in tasks:
            task.fail(error)


def _completion(group: _Group) -> Completion:
    choices = [c for c in group.choices if c is not None]
    first = choices[0]
    return Completion(
        first.text,
        first.finish_reason,
        len(group.job.tokens),
        sum(c.completion_tokens for c in choices),
        cached_tokens=group.reused,
        logprobs=first.logprobs,
        choices=choices if len(choices) > 1 else [],
    )
