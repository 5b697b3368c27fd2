"""GenerationStream: text from an engine thread to an asyncio consumer; cancellation back."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable

from core.engine.types import Completion
from core.errors import EngineError, NimbusError


class _End:
    __slots__ = ()


_END = _End()

log = logging.getLogger("nimbus.engine")

# Called with the finished Completion on the consumer's event loop (metrics, logs).
DoneCallback = Callable[[Completion], None]


class GenerationStream:
    """One request's output. The producer (engine thread) calls ``emit``/``finish``/``fail``;
    the consumer iterates text deltas with ``async for`` and reads ``result`` afterwards.
    ``cancel()`` (e.g. on client disconnect) makes the producer stop at its next token."""

    def __init__(self, prompt_tokens: int, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.prompt_tokens = prompt_tokens
        self.submitted_at = time.monotonic()
        self.started_at: float | None = None  # when a slot took it (queue wait ends)
        self.first_token_at: float | None = None
        self.result: Completion | None = None
        self._loop = loop or asyncio.get_running_loop()
        self._queue: asyncio.Queue[str | _End | BaseException] = asyncio.Queue()
        self._cancelled = threading.Event()
        self._done = False
        self._on_done: list[DoneCallback] = []

    # -- producer side (any thread) -------------------------------------------------------
    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def mark_started(self) -> None:
        self.started_at = time.monotonic()

    def emit(self, text: str) -> None:
        if not text:
            return
        if self.first_token_at is None:
            self.first_token_at = time.monotonic()
        self._put(text)

    def finish(self, completion: Completion) -> None:
        now = time.monotonic()
        completion.total_s = now - self.submitted_at
        if self.first_token_at is not None:
            completion.time_to_first_token_s = self.first_token_at - self.submitted_at
        if self.started_at is not None:
            completion.queue_wait_s = self.started_at - self.submitted_at
        self.result = completion
        # Observers run even when nobody reads the stream to its end (a client that went away
        # still cost its tokens), and before the consumer sees the end: a request's log line
        # written when the response is done already has its completion.
        self._call(self._notify_done)
        self._put(_END)

    def fail(self, error: BaseException) -> None:
        self._put(error)

    def _put(self, item: str | _End | BaseException) -> None:
        self._call(self._queue.put_nowait, item)

    def _call(self, fn: Callable[..., None], *args: object) -> None:
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:
            # The consumer's loop is gone (process shutting down): nobody is listening.
            self._cancelled.set()

    # -- consumer side (event loop) -------------------------------------------------------
    def cancel(self) -> None:
        self._cancelled.set()

    def add_done_callback(self, callback: DoneCallback) -> None:
        """Call ``callback(result)`` once the generation has finished (also when the consumer
        stopped reading); it runs on the event loop, never on the engine thread, before the
        consumer sees the end, and its errors are logged, not raised."""
        self._on_done.append(callback)

    def _notify_done(self) -> None:
        assert self.result is not None
        for callback in self._on_done:
            try:
                callback(self.result)
            except Exception:
                log.exception("completion callback failed")

    async def __aiter__(self) -> AsyncIterator[str]:
        while not self._done:
            item = await self._queue.get()
            if isinstance(item, _End):
                self._done = True
                return
            if isinstance(item, BaseException):
                self._done = True
                if isinstance(item, NimbusError):
                    raise item
                raise EngineError(f"generation failed: {item}") from item
            yield item

    async def collect(self) -> Completion:
        """Drain the stream; the returned Completion carries the whole text."""
        async for _ in self:
            pass
        assert self.result is not None
        return self.result
