"""GenerationStream and Outbox: hand-over from the engine thread to the event loop."""

from __future__ import annotations

import asyncio
import threading

import pytest

from core.engine.stream import GenerationStream, Outbox
from core.engine.types import Completion
from core.errors import EngineError


def _on_thread(work: object) -> None:
    thread = threading.Thread(target=work)  # type: ignore[arg-type]
    thread.start()
    thread.join()


async def test_an_outbox_hands_a_steps_items_to_the_loop_in_one_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loop = asyncio.get_running_loop()
    calls: list[object] = []
    original = loop.call_soon_threadsafe

    def counting(callback: object, *args: object) -> object:
        calls.append(callback)
        return original(callback, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(loop, "call_soon_threadsafe", counting)
    outbox = Outbox()
    streams = [GenerationStream(1, loop, outbox=outbox) for _ in range(4)]

    def engine_step() -> None:
        outbox.claim()
        for step in range(3):  # three decode steps, a token per stream each
            for k, stream in enumerate(streams):
                stream.emit(f"{k}.{step} ")
            outbox.flush()
        for stream in streams:
            stream.finish(Completion("", "length", 1, 3))
        outbox.flush()

    _on_thread(engine_step)
    texts = [[t async for t in stream] for stream in streams]
    assert texts == [[f"{k}.{s} " for s in range(3)] for k in range(4)]
    assert len(calls) == 4  # one per flush, not one per item (16)
    assert all(s.result is not None for s in streams)


async def test_items_from_a_thread_that_does_not_own_the_outbox_go_at_once() -> None:
    loop = asyncio.get_running_loop()
    outbox = Outbox()
    outbox.claim()  # owned by this (the loop's) thread; the producer is another one
    stream = GenerationStream(1, loop, outbox=outbox)

    def produce() -> None:
        stream.emit("a")
        stream.fail(RuntimeError("boom"))

    _on_thread(produce)
    seen: list[str] = []
    with pytest.raises(EngineError, match="boom"):
        async for text in stream:
            seen.append(text)
    assert seen == ["a"]


async def test_a_consumer_waiting_for_items_is_woken_and_order_is_kept() -> None:
    loop = asyncio.get_running_loop()
    outbox = Outbox()
    stream = GenerationStream(1, loop, outbox=outbox)

    async def consume() -> list[str]:
        return [t async for t in stream]

    task = asyncio.ensure_future(consume())
    await asyncio.sleep(0)  # the consumer waits before anything arrives

    def produce() -> None:
        outbox.claim()
        for i in range(50):
            stream.emit(str(i))
            if i % 7 == 0:
                outbox.flush()
        stream.finish(Completion("", "stop", 1, 50))
        outbox.flush()

    await asyncio.to_thread(produce)
    assert await task == [str(i) for i in range(50)]


async def test_a_closed_loop_marks_the_stream_cancelled() -> None:
    other = asyncio.new_event_loop()
    outbox = Outbox()
    stream = GenerationStream(1, other, outbox=outbox)
    other.close()
    outbox.claim()
    stream.emit("x")
    outbox.flush()
    assert stream.cancelled
