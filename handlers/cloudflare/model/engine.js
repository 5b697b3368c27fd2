// The model the Worker holds: loaded from R2 on the first request that needs it, kept for the
// isolate's life, and run for one generation at a time (the wasm is single-threaded and not
// re-entrant); later requests wait in a bounded queue, and beyond it are refused with a 503.
import { EdgeError } from "../errors.js";
import { LIMITS } from "../limits.js";
import { EdgeWasmRuntime } from "./edgewasm.js";
import { EngineFailure, WllamaRuntime } from "./wllama.js";

// EDGE_WASM: which build of llama.cpp runs the model.
const RUNTIMES = { wllama: WllamaRuntime, nimbus: EdgeWasmRuntime };

// workerd runs each request in its own context and does not let one request resume another's
// promise, so waiters poll their place in line instead of being woken. Every holder and waiter
// also proves it is alive on each turn: a request that workerd cancelled (its client went away)
// stops running its code, and its place is skipped instead of blocking the line for good.
const POLL_MS = 20;
// The holder beats after every step of the wasm (a token, a batch of prompt tokens, a chunk of the
// model from R2). A waiter only runs when the holder yields, which it does right after beating,
// so a live holder never looks stale; one whose request workerd dropped stops beating. The abort
// event usually frees the model at once; this is the bound when it does not come.
const HOLDER_STALE_MS = 10_000;
// Waiters beat every POLL_MS, but not while another request's wasm step runs (one thread).
const WAITER_STALE_MS = HOLDER_STALE_MS;

// What a generation whose client went away "returns" (to nobody): it just stops.
const ABANDONED = Object.freeze({ finishReason: "length", promptTokens: 0, completionTokens: 0 });

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

class Gate {
  constructor() {
    this.holder = null; // {beat}
    this.waiting = []; // [{beat}], first come first served
  }

  get running() {
    if (this.holder !== null && Date.now() - this.holder.beat > HOLDER_STALE_MS) {
      console.warn("edge model: a generation stopped without releasing the model; moving on");
      this.holder = null;
    }
    return this.holder !== null;
  }

  live() {
    const now = Date.now();
    this.waiting = this.waiting.filter((w) => now - w.beat <= WAITER_STALE_MS);
    return this.waiting;
  }

  /**
   * Resolves with a ticket when the caller may run; engine_overloaded when the line is full.
   * An aborted `signal` (the client went away) gives up the place or the model at once.
   */
  async enter(maxWaiting, retryAfterS, signal) {
    if (!this.running && this.live().length === 0) {
      this.holder = { beat: Date.now() };
      this.releaseOnAbort(this.holder, signal);
      return this.holder;
    }
    if (this.live().length >= maxWaiting) {
      throw new EdgeError(
        "engine_overloaded",
        `the edge model is busy (1 running, ${this.waiting.length} waiting); retry shortly`,
        { headers: { "retry-after": String(retryAfterS) } },
      );
    }
    const ticket = { beat: Date.now() };
    this.waiting.push(ticket);
    this.releaseOnAbort(ticket, signal);
    for (;;) {
      await sleep(POLL_MS);
      ticket.beat = Date.now();
      if (ticket.released) throw new EdgeError("engine_overloaded", "the client went away");
      // Dropped as stale after a long pause of the whole isolate: back in line, at the end.
      if (!this.waiting.includes(ticket)) this.waiting.push(ticket);
      if (!this.running && this.live()[0] === ticket) {
        this.waiting.shift();
        this.holder = ticket;
        return ticket;
      }
    }
  }

  leave(ticket) {
    ticket.released = true;
    if (this.holder === ticket) this.holder = null;
    this.waiting = this.waiting.filter((w) => w !== ticket);
  }

  // workerd stops running a cancelled request's code at its next await, so no `finally` of it
  // would ever free the model; the abort event (compatibility flag enable_request_signal) does.
  releaseOnAbort(ticket, signal) {
    signal?.addEventListener("abort", () => this.leave(ticket), { once: true });
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
      wasm: this.settings.wasm,
      status: this.state,
      detail: this.detail,
      ...(this.info ?? {}),
      heap_bytes: this.runtime?.heapBytes() ?? 0,
      ...(this.runtime?.heapUsedBytes
        ? {
            heap_used_bytes: this.runtime.heapUsedBytes(),
            heap_live_bytes: this.runtime.heapLiveBytes(),
          }
        : {}),
      queue: {
        active: this.gate.running ? 1 : 0,
        waiting: this.gate.live().length,
        capacity: this.settings.maxQueue,
      },
      max_tokens: this.settings.maxTokens,
      context_tokens: this.settings.contextTokens,
    };
  }

  // Called with the gate held, so only one load ever runs. A failed load leaves nothing behind:
  // the next request starts again from a fresh runtime.
  async ensureLoaded(bucket, beat) {
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
      const runtime = await RUNTIMES[this.settings.wasm].start();
      beat();
      runtime.allocModel(object.size);
      let offset = 0;
      const reader = object.body.getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        runtime.writeModel(value, offset);
        offset += value.byteLength;
        beat();
      }
      if (offset !== object.size) throw new Error(`read ${offset} of ${object.size} model bytes`);
      const copiedMs = Date.now() - started;
      const loaded = await runtime.load({
        nCtx: this.settings.contextTokens,
        nBatch: this.settings.batchTokens,
        log: this.settings.log,
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
   * {finishReason, promptTokens, completionTokens}. `body` is the OpenAI-style request for
   * llama.cpp. The gate is taken on the first next(); returning early (a client that left)
   * cancels the generation and passes the model on.
   */
  async *generate(bucket, body, isChat, signal) {
    const ticket = await this.gate.enter(this.settings.maxQueue, LIMITS.retry_after_s, signal);
    try {
      const beat = () => (ticket.beat = Date.now());
      await this.ensureLoaded(bucket, beat);
      beat();
      const runtime = this.runtime;
      const steps = runtime.generate(body, isChat, beat);
      try {
        for (;;) {
          // Released (the client went away): the wasm may already be another request's.
          if (ticket.released) return ABANDONED;
          const step = await steps.next();
          ticket.beat = Date.now();
          if (step.done) return step.value;
          yield step.value;
          // A turn of the event loop per token: the piece just yielded goes out on the wire, and
          // other requests (health, queued ones) get their turn between tokens.
          await new Promise((resolve) => setTimeout(resolve, 0));
        }
      } catch (error) {
        if (error instanceof EngineFailure) throw engineError(error.detail);
        // Anything else came from inside the wasm (an abort, a trap): its state cannot be
        // trusted, so the next request loads a fresh runtime.
        this.state = "failed";
        this.detail = String(error?.message ?? error);
        this.runtime = null;
        throw error;
      } finally {
        if (!ticket.released) await steps.return(undefined);
      }
    } finally {
      this.gate.leave(ticket);
    }
  }
}

// llama.cpp's own errors, in core's shapes where core has the same error.
function engineError(error) {
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
