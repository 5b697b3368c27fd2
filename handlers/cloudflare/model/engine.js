// The model the Worker holds: loaded from R2 on the first request that needs it, kept for the
// isolate's life, and run for one generation at a time (the wasm is single-threaded and not
// re-entrant); later requests wait in a bounded queue, and beyond it are refused with a 503.
import { EdgeError } from "../errors.js";
import { LIMITS } from "../limits.js";
import { WasmRuntime } from "./runtime.js";

class Gate {
  constructor() {
    this.running = false;
    this.waiting = [];
  }

  /** Resolves when the caller may run; throws engine_overloaded when `maxWaiting` already wait. */
  async enter(maxWaiting, retryAfterS) {
    if (!this.running) {
      this.running = true;
      return;
    }
    if (this.waiting.length >= maxWaiting) {
      throw new EdgeError(
        "engine_overloaded",
        `the edge model is busy (1 running, ${this.waiting.length} waiting); retry shortly`,
        { headers: { "retry-after": String(retryAfterS) } },
      );
    }
    await new Promise((resolve) => this.waiting.push(resolve));
  }

  leave() {
    const next = this.waiting.shift();
    if (next) next(); // the slot passes straight on: `running` stays true
    else this.running = false;
  }
}

export class EdgeModel {
  constructor(settings) {
    this.settings = settings;
    this.gate = new Gate();
    this.runtime = null;
    this.state = "unloaded"; // unloaded | loading | ready | failed
    this.detail = null;
    this.info = null;
  }

  stats() {
    return {
      id: this.settings.modelId,
      status: this.state,
      detail: this.detail,
      ...(this.info ?? {}),
      heap_bytes: this.runtime?.heapBytes() ?? 0,
      queue: {
        active: this.gate.running ? 1 : 0,
        waiting: this.gate.waiting.length,
        capacity: this.settings.maxQueue,
      },
      max_tokens: this.settings.maxTokens,
      context_tokens: this.settings.contextTokens,
    };
  }

  // Called with the gate held, so only one load ever runs. A failed load leaves nothing behind:
  // the next request starts again from a fresh runtime.
  async ensureLoaded(bucket) {
    if (this.state === "ready") return;
    this.state = "loading";
    const started = Date.now();
    try {
      if (!bucket) throw new EdgeError("edge_misconfigured", "the edge has no MODEL_BUCKET binding");
      const object = await bucket.get(this.settings.modelKey);
      if (object === null) {
        throw new EdgeError(
          "edge_misconfigured",
          `the model ${this.settings.modelKey} is not in the MODEL_BUCKET bucket`,
        );
      }
      const runtime = await WasmRuntime.start();
      runtime.allocModel(object.size);
      let offset = 0;
      const reader = object.body.getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        runtime.writeModel(value, offset);
        offset += value.byteLength;
      }
      if (offset !== object.size) throw new Error(`read ${offset} of ${object.size} model bytes`);
      const copiedMs = Date.now() - started;
      const loaded = await runtime.load({
        nCtx: this.settings.contextTokens,
        nBatch: this.settings.batchTokens,
      });
      this.runtime = runtime;
      this.info = {
        model_bytes: object.size,
        load_ms: Date.now() - started,
        fetch_ms: copiedMs,
        n_ctx: loaded.n_ctx,
      };
      this.state = "ready";
      this.detail = null;
    } catch (error) {
      this.state = "failed";
      this.detail = String(error?.message ?? error);
      this.runtime = null;
      if (error instanceof EdgeError) throw error;
      console.error("edge model load failed", error?.stack ?? error);
      throw new EdgeError("model_not_ready", `the edge model could not be loaded: ${this.detail}`);
    }
  }

  /**
   * Runs one generation: yields {text} per piece of text, then returns
   * {finishReason, promptTokens, completionTokens}. `body` is llama.cpp's OpenAI-style request.
   * The gate is taken before the first yield; returning early (a client that left) cancels.
   */
  async *generate(bucket, body, isChat) {
    await this.gate.enter(this.settings.maxQueue, LIMITS.retry_after_s);
    let reqId = null;
    let finished = false;
    try {
      await this.ensureLoaded(bucket);
      const runtime = this.runtime;
      reqId = await runtime.startCompletion(body, isChat);
      let finishReason = null;
      let usage = null;
      for (;;) {
        const step = await runtime.next(reqId);
        if (step.isError) throw engineError(step.data);
        for (const chunk of [step.data ?? []].flat()) {
          if (chunk.usage) usage = chunk.usage;
          const choice = chunk.choices?.[0];
          if (!choice) continue;
          const text = isChat ? choice.delta?.content : choice.text;
          if (text) yield { text };
          if (choice.finish_reason) finishReason = choice.finish_reason;
        }
        if (!step.hasMore) break;
      }
      finished = true;
      return {
        finishReason: finishReason === "stop" ? "stop" : "length",
        promptTokens: usage?.prompt_tokens ?? 0,
        completionTokens: usage?.completion_tokens ?? 0,
      };
    } finally {
      if (reqId !== null && !finished) await this.runtime?.cancel(reqId).catch(() => {});
      this.gate.leave();
    }
  }
}

// llama.cpp's own errors, in core's shapes where core has the same error.
function engineError(data) {
  const error = data?.error ?? data ?? {};
  const message = String(error.message ?? "generation failed");
  if (error.type === "exceed_context_size_error") {
    const n = error.n_prompt_tokens;
    return new EdgeError(
      "context_overflow",
      n ? `the prompt is ${n} tokens; this model's context window is ${error.n_ctx}` : message,
      { param: "messages" },
    );
  }
  if (error.code === 400 || error.type === "invalid_request_error") {
    return new EdgeError("invalid_request", message);
  }
  return new EdgeError("engine_error", message);
}

let held = null;

/** The isolate's model for these settings (one per isolate; new settings replace it). */
export function edgeModel(settings) {
  const key = JSON.stringify(settings);
  if (held === null || held.key !== key) held = { key, model: new EdgeModel(settings) };
  return held.model;
}
