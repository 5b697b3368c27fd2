// llama.cpp as WebAssembly (the @wllama/wllama build, vendored by deploy/cloudflare/vendor_wllama.mjs)
// driven directly in the Worker's own isolate: no Web Worker, no threads, no file system beyond one
// file whose bytes live in the wasm heap and are memory-mapped in place (no second copy).
import { decode, encode } from "./glue.js";
import wllamaRuntime from "./vendor/wllama-runtime.js";
import wasm from "./vendor/wllama.wasm";

const MODEL_DIR = "/models";
const MODEL_FILE = "model.gguf";

// What emscripten's runtime reads from `navigator`: WebGPU answers "no adapter", so llama.cpp
// registers the CPU backend only; one core; the C locale.
const NAVIGATOR = Object.freeze({
  gpu: { requestAdapter: async () => null },
  hardwareConcurrency: 1,
  language: "C",
  userAgent: "nimbus-edge",
});
// workerd has a WorkerGlobalScope, so the runtime takes the Web Worker path and reads its own
// script address from `self.location` (only to resolve the .wasm, which is handed over instead).
const SELF = Object.freeze({ location: { href: "file:///wllama.js" }, name: "nimbus-edge" });

// ggml_log_level: only warnings and errors reach the Worker's log.
const LOG_WARN = 3;

// llama.cpp unmaps the parts of a mapped file that hold no tensors; ours is heap, not a mapping,
// so that fails harmlessly and is not worth a warning on every load.
const EXPECTED = /munmap failed/;

function logLine(text) {
  const match = /@@(DEBUG|INFO|WARN|ERROR)@@(.*)/s.exec(text);
  if (!match || EXPECTED.test(match[2])) return;
  if (match[1] === "ERROR") console.error(`llama.cpp: ${match[2].trim()}`);
  else if (match[1] === "WARN") console.warn(`llama.cpp: ${match[2].trim()}`);
}

export class WllamaRuntime {
  static async start() {
    let failure = null;
    const Module = {
      noInitialRun: true,
      pthreadPoolSize: 0,
      print: () => {},
      printErr: logLine,
      locateFile: (name) => name,
      // workerd compiles the .wasm at upload; instantiating the compiled module is all that is left.
      instantiateWasm(imports, receive) {
        WebAssembly.instantiate(wasm, imports).then(
          (instance) => receive(instance, wasm),
          (error) => (failure = error),
        );
        return {};
      },
      onAbort: (reason) => (failure = new Error(`llama.cpp aborted: ${reason}`)),
    };
    await new Promise((resolve, reject) => {
      Module.onRuntimeInitialized = resolve;
      Module.onAbort = (reason) => reject(new Error(`llama.cpp aborted: ${reason}`));
      try {
        wllamaRuntime(Module, NAVIGATOR, SELF);
      } catch (error) {
        reject(error);
      }
      if (failure) reject(failure);
    });
    const runtime = new WllamaRuntime(Module);
    const started = await runtime.startFn();
    if (!String(started).includes('"success":true')) throw new Error("llama.cpp did not start");
    return runtime;
  }

  constructor(Module) {
    this.Module = Module;
    this.malloc = Module.cwrap("wllama_malloc", "bigint", ["number", "bigint"]);
    this.startFn = Module.cwrap("wllama_start", "string", [], { async: true });
    this.actionFn = Module.cwrap("wllama_action", "bigint", ["string", "bigint"], { async: true });
    this.file = null;
    this.current = null; // the generation in the wasm, until it ends or is cancelled
    this.placeModelFile();
  }

  heap() {
    return new Uint8Array(this.Module.wasmMemory.buffer);
  }

  /** Bytes of wasm linear memory: the model file, the KV cache, compute buffers and free space. */
  heapBytes() {
    return this.Module.wasmMemory.buffer.byteLength;
  }

  // MEMFS keeps a file's bytes in `node.contents`; ours are a view of the heap region holding the
  // GGUF, and mmap() returns that region itself, so llama.cpp reads tensors where they lie.
  placeModelFile() {
    const { FS, MEMFS } = this.Module;
    FS.mkdir(MODEL_DIR);
    const ops = MEMFS.stream_ops;
    const table = MEMFS.ops_table.file.stream;
    const original = { read: ops.read, llseek: ops.llseek, mmap: ops.mmap };
    const ours = (stream) => this.file !== null && stream.node.name === MODEL_FILE;
    const refresh = (stream) => {
      if (!ours(stream)) return;
      const start = Number(this.file.ptr);
      stream.node.contents = this.heap().subarray(start, start + this.file.size);
      stream.node.usedBytes = this.file.size;
    };
    ops.read = table.read = (stream, ...rest) => {
      refresh(stream);
      return original.read(stream, ...rest);
    };
    ops.llseek = table.llseek = (stream, ...rest) => {
      refresh(stream);
      return original.llseek(stream, ...rest);
    };
    ops.mmap = table.mmap = (stream, length, position, prot, flags) => {
      if (!ours(stream)) return original.mmap(stream, length, position, prot, flags);
      return { ptr: this.file.ptr + BigInt(position), allocated: false };
    };
  }

  /** Reserves `size` bytes of heap for the GGUF; its bytes are then written with writeModel. */
  allocModel(size) {
    if (this.file !== null) throw new Error("the model file is already allocated");
    this.Module.FS_createDataFile(MODEL_DIR, MODEL_FILE, new Uint8Array(0), true, true, true);
    const ptr = this.Module.mmapAlloc(size);
    if (!ptr) throw new Error(`cannot allocate ${size} bytes of wasm heap for the model`);
    this.file = { ptr: BigInt(ptr), size };
  }

  writeModel(bytes, offset) {
    if (offset + bytes.byteLength > this.file.size) throw new Error("model write past its size");
    this.heap().set(bytes, Number(this.file.ptr) + offset);
  }

  /**
   * One wllama action: the request is copied into the heap, the answer copied out and decoded.
   * Not re-entrant: the model's gate (engine.js) lets one request at a time in.
   */
  async action(action, name, message) {
    const request = encode(name, message);
    const input = await this.malloc(BigInt(request.byteLength), 0);
    this.heap().set(request, Number(input));
    const output = await this.actionFn(action, input);
    if (!output) throw new Error(`llama.cpp action ${action} failed`);
    // The answer's length is written over the first four bytes of the request buffer.
    const length = new DataView(this.Module.wasmMemory.buffer).getUint32(Number(input), true);
    return decode(this.heap().slice(Number(output), Number(output) + length));
  }

  async load({ nCtx, nBatch }) {
    const result = await this.action("load", "load_req", {
      model_paths: [`${MODEL_DIR.slice(1)}/${MODEL_FILE}`],
      n_ctx_auto: false,
      use_mmap: true,
      use_mlock: false,
      n_gpu_layers: 0,
      n_ctx: nCtx,
      n_threads: 1,
      log_level: LOG_WARN,
      n_batch: nBatch,
      n_ubatch: nBatch,
      n_parallel: 1,
      kv_unified: true,
      // The first request pays for the load anyway; a warm-up decode would only add to it.
      warmup: false,
      cache_idle_slots: false,
    });
    if (!result.success) throw new Error("llama.cpp could not load the model");
    return result;
  }

  /**
   * One generation of llama.cpp's server code, driven a step (a token) at a time: yields {text},
   * returns {finishReason, promptTokens, completionTokens}. `body` is an OpenAI-style request.
   * Returning early (a client that went away) cancels it and frees the slot.
   */
  async *generate(body, isChat, beat = () => {}) {
    // A generation whose request was cancelled by workerd never reached its `finally`.
    if (this.current !== null) await this.action("cancel", "cncl_req", { req_id: this.current });
    this.current = null;
    const started = await this.action("completion", "cmpl_req", {
      is_chat: isChat,
      data_json: JSON.stringify(body),
      files: [],
    });
    if (!started.success) throw new Error("llama.cpp did not accept the generation");
    const reqId = started.req_id;
    this.current = reqId;
    let finished = false;
    try {
      let finishReason = null;
      let usage = null;
      for (;;) {
        const step = await this.action("get_result", "gres_req", { req_id: reqId });
        beat();
        const json = step.data_json;
        const data = json && json !== "null" ? JSON.parse(json) : null;
        if (step.is_error) throw new EngineFailure(data);
        for (const chunk of [data ?? []].flat()) {
          if (chunk.usage) usage = chunk.usage;
          const choice = chunk.choices?.[0];
          if (!choice) continue;
          const text = isChat ? choice.delta?.content : choice.text;
          if (text) yield { text };
          if (choice.finish_reason) finishReason = choice.finish_reason;
        }
        if (!step.has_more) break;
      }
      finished = true;
      return {
        finishReason: finishReason === "stop" ? "stop" : "length",
        promptTokens: usage?.prompt_tokens ?? 0,
        completionTokens: usage?.completion_tokens ?? 0,
      };
    } finally {
      if (!finished) await this.action("cancel", "cncl_req", { req_id: reqId }).catch(() => {});
      this.current = null;
    }
  }
}

/** An error llama.cpp reported for a request (its OpenAI-style error object in `detail`). */
export class EngineFailure extends Error {
  constructor(detail) {
    const error = detail?.error ?? detail ?? {};
    super(String(error.message ?? "generation failed"));
    this.detail = error;
  }
}
