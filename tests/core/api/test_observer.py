"""The completion observer hook adapters use for per-request metrics (fake engine, no model)."""

from __future__ import annotations

import httpx

from core.app import create_app
from core.engine.types import Completion
from core.settings import Settings
from tests.support.fakes import FakeEngine


def client_with(observer: object) -> httpx.AsyncClient:
    app = create_app(Settings(), FakeEngine(), observer=observer)  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def test_observer_sees_whole_and_streamed_generations() -> None:
    seen: list[Completion] = []
    async with client_with(seen.append) as client:
        whole = await client.post("/api/generate", json={"prompt": "hi", "maxTokens": 3})
        assert whole.status_code == 200
        streamed = await client.post(
            "/v1/chat/completions",
            json={"messages": [{"role": "user", "content": "hi"}], "stream": True},
        )
        assert streamed.text.endswith("data: [DONE]\n\n")
        await client.get("/api/health")  # no generation, no call
    assert [c.completion_tokens for c in seen] == [3, 6]
    assert [c.finish_reason for c in seen] == ["length", "stop"]
    assert seen[0].text == "Hello from the" and seen[0].total_s > 0
    assert seen[1].time_to_first_token_s is not None


async def test_a_failing_observer_never_breaks_the_response() -> None:
    def broken(_: Completion) -> None:
        raise RuntimeError("metrics backend down")

    async with client_with(broken) as client:
        resp = await client.post("/api/generate", json={"prompt": "hi", "maxTokens": 2})
    assert resp.status_code == 200 and resp.json()["tokens"] == 2


async def test_without_an_observer_only_the_apps_metrics_observe() -> None:
    app = create_app(Settings(), FakeEngine())  # type: ignore[arg-type]
    assert app.state.service.observer == app.state.telemetry.completion


async def test_observer_sees_a_generation_nobody_read_to_its_end() -> None:
    # A client that goes away mid-stream still cost its tokens: they must be counted.
    import asyncio

    from core.engine.types import GenerationRequest, PromptSegment

    seen: list[Completion] = []
    app = create_app(Settings(), FakeEngine(), observer=seen.append)  # type: ignore[arg-type]
    stream = app.state.service.submit(
        GenerationRequest(prompt=(PromptSegment("hi", special=False),), max_tokens=3)
    )
    for _ in range(500):
        if seen:
            break
        await asyncio.sleep(0.01)
    assert [c.completion_tokens for c in seen] == [3]
    assert seen[0].queue_wait_s is not None and stream.result is seen[0]
