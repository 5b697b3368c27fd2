"""Turns API requests into engine requests (limits, sampling, prompts) and runs them."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from core.api.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    GenerateRequest,
    ModelCard,
    ResponseFormat,
    SamplingFields,
)
from core.api.tools import ToolPlan, chat_messages, plan_tools
from core.engine.base import Engine
from core.engine.grammar import grammar_for
from core.engine.stream import DoneCallback, GenerationStream
from core.engine.types import (
    ChatMessage,
    Completion,
    GenerationRequest,
    PromptSegment,
    SamplingParams,
)
from core.errors import InvalidParameterError, ModelNotFoundError, PayloadTooLargeError
from core.settings import LimitSettings, Settings
from core.sources import BUNDLED_MODEL_ALIASES

# Waits until the client has gone away (an HTTP disconnect).
Disconnect = Callable[[], Awaitable[None]]

# Sees every finished generation (streamed or not), e.g. a platform adapter's metrics.
CompletionObserver = DoneCallback


class GenerationService:
    def __init__(
        self,
        engine: Engine,
        limits: LimitSettings,
        observer: CompletionObserver | None = None,
        *,
        aliases: Sequence[str] = (),
        embedding_aliases: Sequence[str] = (),
    ) -> None:
        """``aliases``: more names ``model`` may give for the served model (its id always
        works); ``embedding_aliases`` the same for /v1/embeddings."""
        self.engine = engine
        self.limits = limits
        self.observer = observer
        self.aliases = frozenset(aliases)
        self.embedding_aliases = frozenset(embedding_aliases)
        self._extra: CompletionObserver | None = None

    def also_observed_by(self, observer: CompletionObserver) -> GenerationService:
        """A per-request view (same engine, limits and observer) whose generations ``observer``
        sees too: how a request's log record gets its completion."""
        view = GenerationService(
            self.engine,
            self.limits,
            self.observer,
            aliases=tuple(self.aliases),
            embedding_aliases=tuple(self.embedding_aliases),
        )
        view._extra = observer
        return view

    # -- model names -----------------------------------------------------------------------
    def check_model(self, name: str | None, *, embeddings: bool = False) -> None:
        """404 model_not_found for a name this server does not serve (no name: the default)."""
        if name is None:
            return
        if embeddings:
            known = {self.engine.embedding_model_id, *self.embedding_aliases}
        else:
            known = {self.engine.model_id, *self.aliases}
        if name not in known:
            raise ModelNotFoundError(
                f"the model {name!r} does not exist; this server serves {', '.join(sorted(known))}",
                param="model",
            )

    def model_cards(self, created: int) -> list[ModelCard]:
        ids = dict.fromkeys((self.engine.model_id, self.engine.embedding_model_id))
        return [ModelCard(id=name, created=created) for name in ids]

    def model_card(self, name: str, created: int) -> ModelCard:
        if name in {self.engine.embedding_model_id, *self.embedding_aliases}:
            return ModelCard(id=self.engine.embedding_model_id, created=created)
        self.check_model(name)
        return ModelCard(id=self.engine.model_id, created=created)

    # -- building engine requests ----------------------------------------------------------
    def _max_tokens(self, requested: int | None, param: str) -> int:
        if requested is None:
            return self.limits.max_tokens_default
        if requested > self.limits.max_tokens_cap:
            raise InvalidParameterError(
                f"{param} must be at most {self.limits.max_tokens_cap}", param=param
            )
        return requested

    def check_text(self, text: str, param: str) -> None:
        if len(text) > self.limits.max_prompt_chars:
            raise PayloadTooLargeError(
                f"{param} is {len(text)} characters; the limit is {self.limits.max_prompt_chars}",
                param=param,
            )

    def _stops(self, stop: str | list[str] | None) -> tuple[str, ...]:
        stops = (stop,) if isinstance(stop, str) else tuple(stop or ())
        if len(stops) > self.limits.max_stop_sequences:
            raise InvalidParameterError(
                f"at most {self.limits.max_stop_sequences} stop sequences are allowed", param="stop"
            )
        return tuple(s for s in stops if s)

    def _n(self, n: int) -> int:
        if n > self.limits.max_n:
            raise InvalidParameterError(f"n must be at most {self.limits.max_n}", param="n")
        return n

    def _logit_bias(self, bias: dict[str, float] | None) -> tuple[tuple[int, float], ...]:
        if not bias:
            return ()
        n_vocab = self.engine.n_vocab
        pairs = tuple((int(token), float(value)) for token, value in bias.items())
        for token, _ in pairs:
            if token >= n_vocab:
                raise InvalidParameterError(
                    f"logit_bias names token {token}; the vocabulary has {n_vocab}",
                    param="logit_bias",
                )
        return pairs

    @staticmethod
    def _sampling(fields: SamplingFields) -> SamplingParams:
        return SamplingParams(
            temperature=fields.temperature,
            top_p=fields.top_p,
            top_k=fields.top_k,
            min_p=fields.min_p,
            repeat_penalty=fields.repeat_penalty,
            presence_penalty=fields.presence_penalty,
            frequency_penalty=fields.frequency_penalty,
            seed=fields.seed,
        )

    def chat_prompt(
        self, messages: Sequence[ChatMessage], tools: Sequence[dict[str, Any]] | None = None
    ) -> tuple[PromptSegment, ...]:
        if len(messages) > self.limits.max_messages:
            raise InvalidParameterError(
                f"at most {self.limits.max_messages} messages are allowed", param="messages"
            )
        for i, message in enumerate(messages):
            self.check_text(message.content, f"messages.{i}.content")
            for j, call in enumerate(message.tool_calls):
                self.check_text(call.arguments, f"messages.{i}.tool_calls.{j}.function.arguments")
        return self.engine.render_chat(messages, tools)

    def from_generate(
        self, body: GenerateRequest, deadline: float | None = None
    ) -> GenerationRequest:
        self.check_text(body.prompt, "prompt")
        if body.raw:
            prompt: tuple[PromptSegment, ...] = (PromptSegment(body.prompt, special=False),)
        else:
            prompt = self.chat_prompt([ChatMessage("user", body.prompt)])
        return GenerationRequest(
            prompt=prompt,
            max_tokens=self._max_tokens(body.max_tokens, "maxTokens"),
            sampling=SamplingParams(temperature=body.temperature, seed=body.seed),
            deadline=deadline,
        )

    def from_chat(
        self, body: ChatCompletionRequest, deadline: float | None = None
    ) -> tuple[GenerationRequest, ToolPlan | None]:
        """The engine request and, when the reply may call tools, what they mean."""
        messages = chat_messages(body)
        plan = plan_tools(
            body,
            tag=self.engine.tool_call_tag,
            max_tools=self.limits.max_tools,
            max_calls=self.limits.max_tool_calls,
        )
        requested = body.max_completion_tokens or body.max_tokens
        param = "max_completion_tokens" if body.max_completion_tokens else "max_tokens"
        if body.top_logprobs is not None and not body.logprobs:
            raise InvalidParameterError("top_logprobs needs logprobs: true", param="top_logprobs")
        request = GenerationRequest(
            prompt=self.chat_prompt(messages, plan.tools if plan else None),
            max_tokens=self._max_tokens(requested, param),
            sampling=self._sampling(body),
            stop=self._stops(body.stop),
            grammar=plan.grammar if plan else _grammar(body.response_format),
            grammar_triggers=plan.triggers if plan else (),
            n=self._n(body.n),
            logprobs=(body.top_logprobs or 0) if body.logprobs else None,
            logit_bias=self._logit_bias(body.logit_bias),
            deadline=deadline,
        )
        return request, plan

    def from_completion(
        self, body: CompletionRequest, deadline: float | None = None
    ) -> GenerationRequest:
        prompt = body.prompt
        if isinstance(prompt, list) and prompt and isinstance(prompt[0], list | str):
            if len(prompt) != 1:
                raise InvalidParameterError(
                    "exactly one prompt per request is supported", param="prompt"
                )
            prompt = prompt[0]
        if isinstance(prompt, list) and not prompt:
            raise InvalidParameterError("the prompt is empty", param="prompt")
        if body.best_of is not None and body.best_of != body.n:
            raise InvalidParameterError(
                "best_of is only supported equal to n (every choice is returned)",
                param="best_of",
            )
        if body.logprobs is not None and body.echo:
            raise InvalidParameterError(
                "logprobs of an echoed prompt are not supported", param="logprobs"
            )
        tokens: tuple[int, ...] | None = None
        if isinstance(prompt, str):
            self.check_text(prompt, "prompt")
            text = prompt
        else:
            tokens, text = tuple(t for t in prompt if isinstance(t, int)), ""
            n_vocab = self.engine.n_vocab
            if any(not 0 <= t < n_vocab for t in tokens):
                raise InvalidParameterError(
                    f"prompt token ids must be in 0..{n_vocab - 1}", param="prompt"
                )
        # A raw completion prompt is the caller's own template: special tokens are honoured.
        return GenerationRequest(
            prompt=(PromptSegment(text, special=True),),
            tokens=tokens,
            max_tokens=self._max_tokens(body.max_tokens, "max_tokens"),
            sampling=self._sampling(body),
            stop=self._stops(body.stop),
            grammar=_grammar(body.response_format),
            n=self._n(body.n),
            logprobs=body.logprobs,
            logit_bias=self._logit_bias(body.logit_bias),
            deadline=deadline,
        )

    # -- running ----------------------------------------------------------------------------
    def submit(self, request: GenerationRequest) -> GenerationStream:
        stream = self.engine.submit(request)
        if self.observer is not None:
            stream.add_done_callback(self.observer)
        if self._extra is not None:
            stream.add_done_callback(self._extra)
        return stream

    async def complete(
        self, stream: GenerationStream, disconnected: Disconnect | None = None
    ) -> Completion:
        """Run to the end; when ``disconnected()`` returns first (the client went away), the
        generation is cancelled."""
        if disconnected is None:
            return await stream.collect()
        watcher = asyncio.ensure_future(disconnected())
        try:
            collect = asyncio.ensure_future(stream.collect())
            done, _ = await asyncio.wait({collect, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if collect not in done:
                stream.cancel()
            return await collect
        finally:
            watcher.cancel()
            stream.cancel()


def _grammar(response_format: ResponseFormat | None) -> str | None:
    if response_format is None:
        return None
    if response_format.type == "json_schema" and response_format.json_schema is None:
        raise InvalidParameterError(
            "response_format json_schema needs a 'json_schema' object",
            param="response_format.json_schema",
        )
    schema = response_format.json_schema.schema_ if response_format.json_schema else None
    return grammar_for(response_format.type, schema)


def model_aliases(settings: Settings) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The names ``model`` may give besides the model ids: for generation, then for
    embeddings. The bundled model also answers to its short names ('default', 'smollm2')."""

    def names(spec: str, alias: str | None, extra: list[str]) -> tuple[str, ...]:
        bundled = BUNDLED_MODEL_ALIASES if spec.strip().lower() in BUNDLED_MODEL_ALIASES else ()
        return tuple(dict.fromkeys([*extra, *([alias] if alias else []), *sorted(bundled)]))

    served = names(settings.model, settings.model_alias, settings.model_aliases)
    emb = settings.embeddings
    if emb.model is None:
        return served, served
    return served, names(emb.model, emb.model_alias, [])
