"""Continuous batching over one llama.cpp context: the engine thread's scheduler.

Every running request owns a *slot* (a llama.cpp sequence id). Each step builds one batch: the
last sampled token of every decoding slot plus a chunk of at most ``prefill_chunk`` prompt tokens
of each newcomer (while the batch has room), runs one ``llama_decode`` and samples each row that
asked for logits with that request's own sampler chain. Requests join between steps; finished or
cancelled ones leave at once.

Prefix cache: a slot keeps its KV cells after its request ends, tagged with the tokens they hold.
A newcomer takes the free slot whose cells share the longest prefix with its prompt (or has that
prefix copied from any slot with ``seq_cp``, which in the unified KV cache only tags cells) and
evaluates only the rest. Idle cells are dropped, least recently used first, when the cache is full.
"""

from __future__ import annotations

import codecs
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from core.engine.kvcells import CellMap
from core.engine.lowlevel import Context, Model, Sampler, common_prefix
from core.engine.stops import StopMatcher
from core.engine.stream import GenerationStream
from core.engine.types import Completion, FinishReason, GenerationRequest
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


@dataclass
class _Run:
    """A job's generation state while it holds a slot."""

    job: Job
    sampler: Sampler
    reused: int
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
        prefix_cache: bool = True,
        warm_up_token: int | None = None,
    ) -> None:
        self._model = model
        self._ctx = ctx
        self._slots = [_Slot(seq) for seq in range(slots)]
        self._cells = CellMap(slots)
        self._chunk = max(1, min(prefill_chunk, ctx.n_batch))
        self._max_waiting = max_waiting
        self._prefix_cache = prefix_cache
        self._warm_up_token = warm_up_token
        self._retry_after = str(retry_after_s)
        self._queue: deque[Job] = deque()
        self._cond = threading.Condition()
        self._active = 0
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._prompt_tokens = 0
        self._reused_tokens = 0
        self._steps = 0
        self._admitted = 0
        self._reuse_hits = 0

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
                raise EngineOverloadedError(
                    f"the engine is busy ({self._active} running, {len(self._queue)} waiting); "
                    "retry shortly",
                    headers={"Retry-After": self._retry_after},
                )
            self._queue.append(job)
            self._cond.notify_all()

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
        try:
            self._warm_up()
            while self._wait_for_work():
                self._admit()
                self._retire_cancelled()
                if any(s.run is not None for s in self._slots):
                    try:
                        self._step()
                    except Exception as exc:
                        # Fail the requests in flight, keep serving the next ones.
                        log.exception("decode step failed")
                        error = exc if isinstance(exc, NimbusError) else EngineError(str(exc))
                        self._fail_running(error)
        except BaseException as exc:  # never leave a stream hanging
            log.exception("engine loop crashed")
            self._fail_all(exc)
        finally:
            self._fail_all(ModelNotReadyError("server is shutting down"))

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
            while not self._stopping and not self._queue and self._active == 0:
                self._cond.wait()
            return not self._stopping

    def _admit(self) -> None:
        while True:
            with self._cond:
                free = [s for s in self._slots if s.run is None]
                if not free or not self._queue:
                    return
                job = self._queue.popleft()
                self._active += 1
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
        slot = max(free, key=lambda s: (min(common_prefix(s.cached, tokens), limit), -s.last_used))
        own = min(common_prefix(slot.cached, tokens), limit)
        donor, best = slot, own
        for other in self._slots:
            if other is not slot:
                shared = min(common_prefix(other.cached, tokens), limit)
                if shared > best:
                    donor, best = other, shared
        try:
            sampler = Sampler(self._model, job.request.sampling, job.request.grammar)
        except ValueError as exc:
            raise InvalidParameterError(str(exc), param="response_format") from exc
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
        run = _Run(
            job,
            sampler,
            reused=len(slot.cached),
            stops=StopMatcher(job.request.stop),
            order=self._admitted,
        )
        slot.run = run
        job.stream.mark_started()
        with self._cond:
            self._prompt_tokens += len(tokens)
            self._reused_tokens += run.reused
            self._reuse_hits += int(run.reused > 0)

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
            newcomers = [s for s in self._slots if s.run is not None and s.run.pending is None]
            if newcomers:
                slot = min(newcomers, key=lambda s: s.run.order if s.run else 0)
                assert slot.run is not None
                prompt = slot.run.job.tokens
                start = len(slot.cached)
                # Chunk it only while other streams are decoding, so they keep flowing.
                size = self._chunk if plan else ctx.n_batch
                chunk = prompt[start : start + min(size, ctx.n_batch - ctx.batch_size)]
                last = start + len(chunk) == len(prompt)
                logits_row: int | None = None
                for k, token in enumerate(chunk):
                    want = last and k == len(chunk) - 1
                    r = ctx.batch_add(token, start + k, slot.seq, want)
                    if want:
                        logits_row = r
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
        for slot, _, row in plan:
            if row is not None and slot.run is not None:
                self._on_token(slot, slot.run.sampler.sample(ctx, row))

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

    def _on_token(self, slot: _Slot, token: int) -> None:
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
        text, hit = run.stops.push(run.decoder.decode(self._model.piece(token)))
        run.pieces.append(text)
        job.stream.emit(text)
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
            tail = run.stops.push(run.decoder.decode(b"", final=True))[0] + run.stops.flush()
            run.pieces.append(tail)
            run.job.stream.emit(tail)
        run.sampler.close()
        slot.run = None
        slot.last_used = time.monotonic()
        completion = Completion(
            "".join(run.pieces), reason, len(run.job.tokens), run.count, cached_tokens=run.reused
        )
        with self._cond:
            self._active -= 1
        run.job.stream.finish(completion)

    def _end_unstarted(
        self, job: Job, reason: FinishReason | None, error: NimbusError | None = None
    ) -> None:
        with self._cond:
            self._active -= 1
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
            self._active = 0
        for job in pending:
            job.stream.fail(error)
