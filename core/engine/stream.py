"""GenerationStream: text from an engine thread to an asyncio consumer; cancellation back.

Hand-over costs the event loop a wakeup, and on a machine with few cores every microsecond the
loop spends per token is taken from the decode threads. So an engine that produces tokens in
steps gives its streams an ``Outbox``: what the streams get during a step is collected there
and handed to each event loop in one call when the step ends (one wakeup per step for all the
streams on that loop, instead of one per token)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable

from core.engine.types import Completion, Delta
from core.errors import EngineError, NimbusError


class _End:
    __slots__ = ()


_END = _End()

log = logging.getLogger("nimbus.engine")

# Called with the finished Completion on the consumer's event loop (metrics, logs).
DoneCallback = Callable[[Completion], None]

_Item = str | Delta | _End | BaseException


class Outbox:
    """Items for streams, collected on the producing thread and handed to each consumer's
    event loop in one ``call_soon_threadsafe`` per ``flush()``. Only the thread that owns it
    (``claim()``) collects; items from any other thread go to their loop at once."""

    def __init__(self) -> None:
        self._owner: int | None = None
        self._pending: dict[asyncio.AbstractEventLoop, list[tuple[GenerationStream, _Item]]] = {}

    def claim(self) -> None:
        """Make the calling thread the one whose items wait for ``flush()``."""
        self._owner = threading.get_ident()

    def owned(self) -> bool:
        return self._owner == threading.get_ident()

    def put(self, stream: GenerationStream, item: _Item) -> None:
        batch = self._pending.get(stream._loop)
        if batch is None:
            batch = self._pending[stream._loop] = []
        batch.append((stream, item))

    def flush(self) -> None:
        pending, self._pending = self._pending, {}
        for loop, batch in pending.items():
            try:
                loop.call_soon_threadsafe(_deliver, batch)
            except RuntimeError:  # the consumers' loop is gone: nobody is listening
                for stream, _ in batch:
                    stream._cancelled.set()


def _deliver(batch: list[tuple[GenerationStream, _Item]]) -> None:
    for stream, item in batch:
        stream._push(item)


class GenerationStream:
    """One request's output. The producer (engine thread) calls ``emit``/``finish``/``fail``;
    the consumer iterates text deltas with ``async for`` (choice 0's text) or ``deltas()``
    (every choice, with log-probabilities) and reads ``result`` afterwards.
    ``cancel()`` (e.g. on client disconnect) makes the producer stop at its next token."""

    def __init__(
        self,
        prompt_tokens: int,
        loop: asyncio.AbstractEventLoop | None = None,
        *,
        outbox: Outbox | None = None,
    ) -> None:
        self.prompt_tokens = prompt_tokens
        self.submitted_at = time.monotonic()
        self.started_at: float | None = None  # when a slot took it (queue wait ends)
        self.first_token_at: float | None = None
        self.result: Completion | None = None
        self._loop = loop or asyncio.get_running_loop()
        self._outbox = outbox
        # Read on the loop only: a deque and one waiter, lighter per item than asyncio.Queue.
        self._items: deque[_Item] = deque()
        self._waiter: asyncio.Future[None] | None = None
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

    def emit_delta(self, delta: Delta) -> None:
        """A choice's text with its tokens' log-probabilities (sent even when the text is
        empty: the bytes of a character split across tokens are held back)."""
        if not delta.text and not delta.logprobs:
            return
        if self.first_token_at is None:
            self.first_token_at = time.monotonic()
        self._put(delta)

    def finish(self, completion: Completion) -> None:
        now = time.monotonic()
        completion.total_s = now - self.submitted_at
        if self.first_token_at is not None:
            completion.time_to_first_token_s = self.first_token_at - self.submitted_at
        if self.started_at is not None:
            completion.queue_wait_s = self.started_at - self.submitted_at
        self.result = completion
        # Observers run (in _push, on the loop) even when nobody reads the stream to its end (a
        # client that went away still cost its tokens), and before the consumer sees the end: a
        # request's log line written when the response is done already has its completion.
        self._put(_END)

    def fail(self, error: BaseException) -> None:
        self._put(error)

    def _put(self, item: _Item) -> None:
        outbox = self._outbox
        if outbox is not None and outbox.owned():
            outbox.put(self, item)
            return
        try:
            self._loop.call_soon_threadsafe(self._push, item)
        except RuntimeError:
            # The consumer's loop is gone (process shutting down): nobody is listening.
            self._cancelled.set()

    def _push(self, item: _Item) -> None:
        """On the consumer's loop: queue an item and wake the consumer."""
        if item is _END:
            self._notify_done()
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _get(self) -> _Item:
        items = self._items
        while not items:
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return items.popleft()

    # -- consumer side (event loop) -------------------------------------------------------
    def cancel(self) -> None:
        self._cancelled.set()

    def add_done_callback(self, callback: DoneCallback) -> None:
        """Call ``callback(result)`` once the consumer has read the whole stream; it runs on the
        event loop, never on the engine thread, and its errors are logged, not raised."""
        self._on_done.append(callback)

    def _notify_done(self) -> None:
        assert self.result is not None
        for callback in self._on_done:
            try:
                callback(self.result)
            except Exception:
                log.exception("completion callback failed")

    async def __aiter__(self) -> AsyncIterator[str]:
        """Choice 0's text deltas (for requests with n = 1). Its own loop rather than a filter
        over ``deltas()``: one generator hop less on every token of every ordinary request."""
        items = self._items
        while not self._done:
            # Items already delivered are taken without a trip through the loop.
            raw = items.popleft() if items else await self._get()
            if type(raw) is str:
                yield raw
                continue
            item = self._settle(raw)
            if item is not None and not isinstance(item, str) and item.index == 0 and item.text:
                yield item.text

    async def deltas(self) -> AsyncIterator[Delta]:
        """Every choice's deltas, in the order they were generated."""
        while not self._done:
            item = self._settle(await self._get())
            if isinstance(item, str):
                yield Delta(0, item)
            elif item is not None:
                yield item

    def _settle(self, item: _Item) -> str | Delta | None:
        """The item to hand out; None at the end (raises the producer's error)."""
        if isinstance(item, _End):
            self._done = True  # the observers already ran, when the end was delivered
            return None
        if isinstance(item, BaseException):
            self._done = True
            if isinstance(item, NimbusError):
                raise item
            raise EngineError(f"generation failed: {item}") from item
        return item

    async def collect(self) -> Completion:
        """Drain the stream; the returned Completion carries the whole text."""
        async for _ in self:
            pass
        assert self.result is not None
        return self.result
