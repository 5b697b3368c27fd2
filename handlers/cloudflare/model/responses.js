// Answers from the edge's model in core's shapes: the OpenAI chat/text completion objects and
// chunks (core/api/openai_routes.py), the native /api/generate body and events (core/api/native.py),
// and the same SSE framing (core/api/sse.py). Every answer says that the edge answered.
import { EdgeError, errorBody } from "../errors.js";

export const ANSWERED_BY = "x-nimbus-answered-by";
const encoder = new TextEncoder();

function meta(kind, modelId) {
  const prefix = kind === "chat" ? "chatcmpl" : "cmpl";
  return {
    id: `${prefix}-${crypto.randomUUID().replaceAll("-", "")}`,
    created: Math.floor(Date.now() / 1000),
    model: modelId,
  };
}

function usage(result) {
  return {
    prompt_tokens: result.promptTokens,
    completion_tokens: result.completionTokens,
    total_tokens: result.promptTokens + result.completionTokens,
  };
}

function headers(model, extra = {}) {
  return {
    [ANSWERED_BY]: "edge",
    "x-nimbus-edge-heap-bytes": String(model.stats().heap_bytes),
    ...extra,
  };
}

/** Runs the whole generation and answers with one JSON body. */
export async function answerWhole(request, model, generation, started) {
  let text = "";
  let step = await generation.next();
  while (!step.done) {
    text += step.value.text;
    step = await generation.next();
  }
  const result = step.value;
  const { kind } = request;
  let body;
  if (kind === "generate") {
    body = {
      text,
      tokens: result.completionTokens,
      latencyMs: Math.round((Date.now() - started) * 100) / 100,
    };
  } else {
    const m = meta(kind, model.settings.modelId);
    const choice =
      kind === "chat"
        ? { index: 0, message: { role: "assistant", content: text } }
        : { index: 0, text: request.echo + text };
    body = {
      id: m.id,
      object: kind === "chat" ? "chat.completion" : "text_completion",
      created: m.created,
      model: m.model,
      choices: [{ ...choice, finish_reason: result.finishReason, logprobs: null }],
      usage: usage(result),
      ...(kind === "chat" ? { system_fingerprint: null } : {}),
    };
  }
  return new Response(JSON.stringify(body), {
    headers: headers(model, { "content-type": "application/json" }),
  });
}

function event(payload) {
  return encoder.encode(`data: ${JSON.stringify(payload)}\n\n`);
}

const DONE = encoder.encode("data: [DONE]\n\n");

/** Per-kind event builders: the first events, one per piece of text, and the closing ones. */
function events(request, modelId) {
  const { kind } = request;
  if (kind === "generate") {
    return { opening: [], text: (text) => [event({ token: text })], closing: () => [DONE] };
  }
  const m = meta(kind, modelId);
  const object = kind === "chat" ? "chat.completion.chunk" : "text_completion";
  const base = { id: m.id, created: m.created, model: m.model, object };
  const chunk = (part, finish = null) => ({
    ...base,
    choices: [{ index: 0, ...part, logprobs: null, finish_reason: finish }],
  });
  const piece = (text) => (kind === "chat" ? { delta: { content: text } } : { text });
  const opening =
    kind === "chat"
      ? [event(chunk({ delta: { role: "assistant", content: "" } }))]
      : request.echo
        ? [event(chunk(piece(request.echo)))]
        : [];
  return {
    opening,
    text: (text) => [event(chunk(piece(text)))],
    closing: (result) => [
      event(chunk(kind === "chat" ? { delta: {} } : { text: "" }, result.finishReason)),
      ...(request.includeUsage ? [event({ ...base, choices: [], usage: usage(result) })] : []),
      DONE,
    ],
  };
}

/**
 * Streams the generation as server-sent events, each piece as soon as the model has it. The
 * first piece has already been produced (so a refusal or a failed load was a plain error answer);
 * a failure after that is sent as a final error event, as core does. A client that goes away
 * cancels the generation and frees the model for the next request.
 */
export function answerStream(request, model, generation, first) {
  const build = events(request, model.settings.modelId);
  let pending = [...build.opening];
  let step = first;
  let ended = false;
  const stream = new ReadableStream({
    async pull(controller) {
      if (pending.length === 0) {
        try {
          step ??= await generation.next();
          if (step.done) {
            pending = build.closing(step.value);
            ended = true;
          } else {
            pending = build.text(step.value.text);
          }
          step = null;
        } catch (error) {
          if (!(error instanceof EdgeError)) console.error("edge generation failed", error?.stack);
          const known =
            error instanceof EdgeError ? error : new EdgeError("engine_error", "generation failed");
          pending = [event(errorBody(known))];
          ended = true;
        }
      }
      for (const bytes of pending) controller.enqueue(bytes);
      pending = [];
      if (ended) controller.close();
    },
    async cancel() {
      await generation.return(undefined);
    },
  });
  return new Response(stream, {
    headers: headers(model, {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-cache",
      "x-accel-buffering": "no",
    }),
  });
}
