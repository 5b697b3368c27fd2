"""The OpenAI use-cases: chat completions and text completions, whole or streamed.

model check -> prompt checks -> engine request -> submit -> stream or complete -> charge ->
redact -> payload

A plain request (one choice, no log-probabilities, no tools) streams through pre-encoded
per-token events; any other streams through per-choice state (``_ChoiceState``): tool calls read
from the text, log-probabilities released as the output filter passes their text."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Literal

from core.api.events import (
    SSE_DONE,
    ChoiceChunks,
    EventStream,
    finish_reason,
    response_meta,
    usage_of,
)
from core.api.logprobs import LogprobGate, chat_logprobs, completion_logprobs
from core.api.protocol import ChatCompletionRequest, CompletionRequest, TextPart
from core.api.service import Disconnect, GenerationService
from core.api.tools import CallEvent, ToolPlan, ToolScanner
from core.engine.stream import GenerationStream
from core.engine.types import ChoiceResult, Delta, GenerationRequest
from core.security import RequestSecurity
from core.security.output import StreamRedactor

Kind = Literal["chat", "text"]


async def chat_completion(
    service: GenerationService,
    sec: RequestSecurity,
    body: ChatCompletionRequest,
    *,
    deadline: float | None = None,
    disconnected: Disconnect | None = None,
) -> dict[str, Any] | EventStream:
    service.check_model(body.model)
    body = _checked_chat(body, sec)
    request, plan = service.from_chat(body, deadline=deadline)
    stream = service.submit(request)
    meta = response_meta("chatcmpl", service.engine.model_id)
    if body.stream:
        usage = bool(body.stream_options and body.stream_options.include_usage)
        chunks = ChoiceChunks(meta, "chat")
        if plan is None and request.n == 1 and request.logprobs is None:
            events = _choice_events(stream, chunks, sec, usage, opening=chunks.role())
        else:
            states = [_ChoiceState(i, sec, request, plan) for i in range(request.n)]
            events = _rich_events(stream, chunks, sec, usage, states)
        return EventStream(stream, events)
    completion = await service.complete(stream, disconnected)
    await sec.charge(completion.prompt_tokens, completion.completion_tokens)
    payload = {
        **meta,
        "object": "chat.completion",
        "choices": [_chat_choice(c, sec, plan) for c in completion.all_choices()],
        "usage": usage_of(completion).model_dump(),
        "system_fingerprint": None,
    }
    return _with_report(payload, sec)


async def text_completion(
    service: GenerationService,
    sec: RequestSecurity,
    body: CompletionRequest,
    *,
    deadline: float | None = None,
    disconnected: Disconnect | None = None,
) -> dict[str, Any] | EventStream:
    service.check_model(body.model)
    prompt = body.prompt
    if isinstance(prompt, str):
        prompt = sec.text(prompt, "prompt")
    elif prompt and isinstance(prompt[0], str):
        prompt = [sec.text(p, f"prompt.{i}") for i, p in enumerate(prompt) if isinstance(p, str)]
    sec.finish_prompt()
    body = body.model_copy(update={"prompt": prompt})
    request = service.from_completion(body, deadline=deadline)
    stream = service.submit(request)
    meta = response_meta("cmpl", service.engine.model_id)
    prefix = _echo(body)
    if body.stream:
        usage = bool(body.stream_options and body.stream_options.include_usage)
        chunks = ChoiceChunks(meta, "text")
        if request.n == 1 and request.logprobs is None:
            opening = chunks.text(prefix) if prefix else b""
            events = _choice_events(stream, chunks, sec, usage, opening=opening)
        else:
            states = [
                _ChoiceState(i, sec, request, None, kind="text", prefix=prefix)
                for i in range(request.n)
            ]
            events = _rich_events(stream, chunks, sec, usage, states)
        return EventStream(stream, events)
    completion = await service.complete(stream, disconnected)
    await sec.charge(completion.prompt_tokens, completion.completion_tokens)
    choices = []
    for c in completion.all_choices():
        choice: dict[str, Any] = {
            "index": c.index,
            "text": prefix + sec.filter(c.text),
            "logprobs": None,
            "finish_reason": finish_reason(c),
        }
        if c.logprobs is not None:
            entries = LogprobGate(sec.security.output).settle(c.logprobs, c.text)
            choice["logprobs"] = completion_logprobs(entries, len(prefix))
        choices.append(choice)
    payload = {
        **meta,
        "object": "text_completion",
        "choices": choices,
        "usage": usage_of(completion).model_dump(),
    }
    return _with_report(payload, sec)


def _echo(body: CompletionRequest) -> str:
    return body.prompt if body.echo and isinstance(body.prompt, str) else ""


def _chat_choice(c: ChoiceResult, sec: RequestSecurity, plan: ToolPlan | None) -> dict[str, Any]:
    finish: str = finish_reason(c)
    message: dict[str, Any] = {"role": "assistant"}
    if plan is None:
        message["content"] = sec.filter(c.text)
    else:
        scanner = ToolScanner(plan)
        scanner.feed(c.text)
        scanner.finish()
        content = "".join(scanner.output.content)
        calls = scanner.output.calls
        # Text beside calls is kept (a model may explain first); with none, content is null.
        message["content"] = sec.filter(content) if content.strip() or not calls else None
        if calls:
            message["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": sec.filter(call.arguments)},
                }
                for call in calls
            ]
            if finish == "stop":
                finish = "tool_calls"
    choice: dict[str, Any] = {
        "index": c.index,
        "message": message,
        "logprobs": None,
        "finish_reason": finish,
    }
    if c.logprobs is not None:
        entries = LogprobGate(sec.security.output).settle(c.logprobs, c.text)
        choice["logprobs"] = chat_logprobs(entries)
    return choice


def _checked_chat(body: ChatCompletionRequest, sec: RequestSecurity) -> ChatCompletionRequest:
    """Every text field of every message through the prompt checks."""
    messages = []
    for i, m in enumerate(body.messages):
        param = f"messages.{i}.content"
        if isinstance(m.content, str):
            content: str | list[TextPart] | None = sec.text(m.content, param)
        elif m.content is not None:
            content = [
                p.model_copy(update={"text": sec.text(p.text, f"{param}.{j}.text")})
                for j, p in enumerate(m.content)
            ]
        else:
            content = None
        messages.append(m.model_copy(update={"content": content}))
    sec.finish_prompt()
    return body.model_copy(update={"messages": messages})


def _with_report(payload: dict[str, Any], sec: RequestSecurity) -> dict[str, Any]:
    """Adds a `nimbus` object (prompt warnings, redaction count) when there is anything."""
    info = sec.body_fields()
    return {**payload, "nimbus": info} if info else payload


async def _choice_events(
    stream: GenerationStream,
    chunks: ChoiceChunks,
    sec: RequestSecurity,
    include_usage: bool,
    *,
    opening: bytes,
) -> AsyncIterator[bytes]:
    if opening:
        yield opening
    async for text in sec.stream_text(stream):
        yield chunks.text(text)
    assert stream.result is not None
    yield chunks.finish(stream.result, sec.body_fields())
    if include_usage:
        yield chunks.usage(stream.result)
    yield SSE_DONE


class _ChoiceState:
    """One choice of a streamed response: its redactors, tool-call reader and log-probability
    gate. ``events`` turns a delta into chunks; ``close`` gives the last ones."""

    def __init__(
        self,
        index: int,
        sec: RequestSecurity,
        request: GenerationRequest,
        plan: ToolPlan | None,
        *,
        kind: Kind = "chat",
        prefix: str = "",
    ) -> None:
        self.index = index
        self.kind = kind
        self.prefix = prefix
        self.offset = len(prefix)  # legacy logprobs: where the next token's text starts
        self.output = sec.security.output
        self.redactor = self.output.stream()
        self.gate = (
            LogprobGate(self.output, self.redactor) if request.logprobs is not None else None
        )
        self.scanner = ToolScanner(plan) if plan is not None else None
        self.arguments: dict[int, StreamRedactor] = {}
        self.called = False

    @property
    def redactions(self) -> int:
        return self.redactor.redactions + sum(r.redactions for r in self.arguments.values())

    def opening(self, chunks: ChoiceChunks) -> list[bytes]:
        if self.kind == "chat":
            return [chunks.role(self.index)]
        return [chunks.choice(self.index, self.prefix)] if self.prefix else []

    def events(self, chunks: ChoiceChunks, delta: Delta) -> list[bytes]:
        pieces: list[str | CallEvent] = (
            self.scanner.feed(delta.text) if self.scanner else [delta.text]
        )
        return self._emit(chunks, pieces, delta.logprobs or [])

    def close(self, chunks: ChoiceChunks) -> list[bytes]:
        out = self._emit(chunks, self.scanner.finish() if self.scanner else [], [])
        rest = self.redactor.flush()
        entries = self.gate.release(final=True) if self.gate else []
        if rest or entries:
            out.append(self._text_chunk(chunks, rest, entries))
        for index, redactor in self.arguments.items():
            if tail := redactor.flush():
                out.append(chunks.choice(self.index, tool_calls=[_arguments(index, tail)]))
        return out

    def _emit(
        self, chunks: ChoiceChunks, pieces: list[str | CallEvent], entries: list[Any]
    ) -> list[bytes]:
        out: list[bytes] = []
        fed = ""
        safe = ""
        for piece in pieces:
            if isinstance(piece, str):
                fed += piece
                safe += self.redactor.feed(piece)
                continue
            if safe:  # text before a call goes out before it
                out.append(self._text_chunk(chunks, safe, []))
                safe = ""
            out.append(self._call_chunk(chunks, piece))
        released: list[Any] = []
        if self.gate is not None:
            self.gate.add(entries, fed)
            released = self.gate.release()
        if safe or released:
            out.append(self._text_chunk(chunks, safe, released))
        return out

    def _text_chunk(self, chunks: ChoiceChunks, text: str, entries: list[Any]) -> bytes:
        logprobs = None
        if self.gate is not None:
            if self.kind == "chat":
                logprobs = chat_logprobs(entries)
            else:
                logprobs = completion_logprobs(entries, self.offset)
                self.offset += sum(len(t) for t in logprobs["tokens"])
        return chunks.choice(self.index, text, logprobs=logprobs)

    def _call_chunk(self, chunks: ChoiceChunks, event: CallEvent) -> bytes:
        self.called = True
        if event.name is not None:  # the call's first delta: id, type and name
            self.arguments[event.index] = self.output.stream()
            call = {
                "index": event.index,
                "id": event.id,
                "type": "function",
                "function": {"name": event.name, "arguments": ""},
            }
            return chunks.choice(self.index, tool_calls=[call])
        safe = self.arguments[event.index].feed(event.arguments)
        return chunks.choice(self.index, tool_calls=[_arguments(event.index, safe)])

    def finish(self, result: ChoiceResult | None) -> str:
        reason: str = finish_reason(result) if result is not None else "length"
        return "tool_calls" if self.called and reason == "stop" else reason


def _arguments(index: int, text: str) -> dict[str, Any]:
    return {"index": index, "function": {"arguments": text}}


async def _rich_events(
    stream: GenerationStream,
    chunks: ChoiceChunks,
    sec: RequestSecurity,
    include_usage: bool,
    states: list[_ChoiceState],
) -> AsyncIterator[bytes]:
    """Chunks of every choice, interleaved as they are generated; each choice's finish chunk
    once the whole generation is done; then usage. Tokens are charged at the end or when the
    client goes away (prompt + the tokens seen so far), as for plain streams."""
    seen = 0
    counted = False
    try:
        for state in states:
            for chunk in state.opening(chunks):
                yield chunk
        async for delta in stream.deltas():
            seen += 1 if delta.text or delta.logprobs else 0
            for chunk in states[delta.index].events(chunks, delta):
                yield chunk
        result = stream.result
        assert result is not None
        results = result.all_choices()
        for state in states:
            for chunk in state.close(chunks):
                yield chunk
        sec.redactions += sum(state.redactions for state in states)
        counted = True
        for i, state in enumerate(states):
            last = i == len(states) - 1
            report = sec.body_fields() if last else None
            yield chunks.choice(state.index, finish=state.finish(results[i]), report=report)
        if include_usage:
            yield chunks.usage(result)
        yield SSE_DONE
    finally:
        if not counted:
            sec.redactions += sum(state.redactions for state in states)
        done = stream.result
        used = (
            done.prompt_tokens + done.completion_tokens
            if done is not None
            else stream.prompt_tokens + seen
        )
        sec.security.spawn(sec.security.limiter.charge(sec.client, used))
