// llama.cpp built for the edge by deploy/cloudflare/edge-wasm/build.sh: 32-bit, single-threaded,
// SIMD, no WebGPU, a 16 MB heap that grows as needed. The GGUF's bytes are written into the heap
// and memory-mapped where they lie; the C side (edge.c) loads, tokenizes, applies the model's chat
// template and steps the decoder, and this side turns tokens into text and honours stop sequences.
import { EngineFailure } from "./wllama.js";
import createEdgeLlama from "./edge-wasm/nimbus-edge.js";
import wasm from "./edge-wasm/nimbus-edge.wasm";

const MODEL_DIR = "/models";
const MODEL_PATH = "/models/model.gguf";
// ggml reads tensors in place only when the file's start is aligned to its tensor alignment.
const ALIGN = 64;

const encoder = new TextEncoder();
// edge_load options (edge.c): fused attention, and the KV cache in 8-bit blocks.
const FLASH_ATTENTION = 1;
const KV_Q8_0 = 2;

export class EdgeWasmRuntime {
  static async start() {
    const Module = await createEdgeLlama({
      print: () => {},
      printErr: (text) => {
        if (!/munmap failed/.test(text)) console.warn(`llama.cpp: ${text}`);
      },
      instantiateWasm(imports, receive) {
        WebAssembly.instantiate(wasm, imports).then((instance) => receive(instance, wasm));
        return {};
      },
    });
    return new EdgeWasmRuntime(Module);
  }

  constructor(Module) {
    this.Module = Module;
    this.file = null;
  }

  heapBytes() {
    return this.Module.HEAPU8.length;
  }

  /** The heap's high-water mark (it grows in 4 MiB steps and never shrinks). */
  heapUsedBytes() {
    return this.Module._edge_heap_top();
  }

  /** Bytes in live allocations now: the model, KV cache, buffers and the tokenizer's tables. */
  heapLiveBytes() {
    return this.Module._edge_heap_live();
  }

  allocModel(size) {
    const { Module } = this;
    const raw = Module._malloc(size + ALIGN);
    if (!raw) throw new Error(`cannot allocate ${size} bytes of wasm heap for the model`);
    const ptr = raw + ((ALIGN - (raw % ALIGN)) % ALIGN);
    this.file = { ptr, size };
    Module.FS.mkdir(MODEL_DIR);
    const node = Module.FS.createDataFile(MODEL_DIR, "model.gguf", new Uint8Array(0), true, false);
    // The node's bytes are a view of the heap; a grown heap is a new buffer, so the view is
    // renewed before every use, and mmap() hands out the heap address itself.
    const place = () => {
      node.contents = Module.HEAPU8.subarray(ptr, ptr + size);
      node.usedBytes = size;
    };
    const ops = node.stream_ops;
    node.stream_ops = {
      ...ops,
      read: (stream, ...rest) => (place(), ops.read(stream, ...rest)),
      llseek: (stream, ...rest) => (place(), ops.llseek(stream, ...rest)),
      mmap: (stream, address, length, position) => ({ ptr: ptr + position, allocated: false }),
      msync: () => 0,
    };
    place();
  }

  writeModel(bytes, offset) {
    if (offset + bytes.byteLength > this.file.size) throw new Error("model write past its size");
    this.Module.HEAPU8.set(bytes, this.file.ptr + offset);
  }

  async load({ nCtx, nBatch, log }) {
    this.Module._edge_log_level(log === "info" ? 2 : 3);
    const path = this.cString(MODEL_PATH);
    const status = this.Module._edge_load(path, nCtx, nBatch, FLASH_ATTENTION | KV_Q8_0);
    this.Module._free(path);
    if (status !== 0) throw new Error(`llama.cpp could not load the model (${status})`);
    return { n_ctx: this.Module._edge_n_ctx() };
  }

  /** Copies `text` into the heap as UTF-8 (the caller frees the pointer). */
  cString(text) {
    const length = this.Module.lengthBytesUTF8(text) + 1;
    const ptr = this.Module._malloc(length);
    this.Module.stringToUTF8(text, ptr, length);
    return ptr;
  }

  chatPrompt(messages) {
    const { Module } = this;
    const strings = messages.flatMap((m) => [this.cString(m.role), this.cString(m.content)]);
    const roles = Module._malloc(4 * messages.length);
    const contents = Module._malloc(4 * messages.length);
    messages.forEach((_, i) => {
      Module.HEAPU32[(roles >> 2) + i] = strings[2 * i];
      Module.HEAPU32[(contents >> 2) + i] = strings[2 * i + 1];
    });
    try {
      let capacity = 1024 + 2 * messages.reduce((n, m) => n + m.content.length + 16, 0);
      for (;;) {
        const out = Module._malloc(capacity);
        try {
          const n = Module._edge_chat(roles, contents, messages.length, out, capacity);
          if (n < 0) throw new EngineFailure({ message: "the model's chat template failed", code: 400 });
          if (n < capacity) return Module.UTF8ToString(out, n);
          capacity = n + 1;
        } finally {
          Module._free(out);
        }
      }
    } finally {
      [...strings, roles, contents].forEach((ptr) => Module._free(ptr));
    }
  }

  tokenize(text) {
    const { Module } = this;
    const bytes = encoder.encode(text);
    const input = Module._malloc(bytes.length + 1);
    Module.HEAPU8.set(bytes, input);
    let capacity = bytes.length + 16;
    try {
      for (;;) {
        const out = Module._malloc(4 * capacity);
        try {
          // The model's own special tokens in the text (its chat markup) are parsed as such.
          const n = Module._edge_tokenize(input, bytes.length, out, capacity, 1, 1);
          if (n >= 0) return Int32Array.from(Module.HEAP32.subarray(out >> 2, (out >> 2) + n));
          capacity = -n;
        } finally {
          Module._free(out);
        }
      }
    } finally {
      Module._free(input);
    }
  }

  piece(token, buffer) {
    const n = this.Module._edge_piece(token, buffer, 256);
    return this.Module.HEAPU8.slice(buffer, buffer + Math.max(0, n));
  }

  /** Same contract as WllamaRuntime.generate, for the request bodies requests.js builds. */
  async *generate(body, isChat, beat = () => {}) {
    const { Module } = this;
    const prompt = isChat ? this.chatPrompt(body.messages) : body.prompt;
    const tokens = this.tokenize(prompt);
    const nCtx = Module._edge_n_ctx();
    if (tokens.length === 0 || tokens.length >= nCtx) {
      throw new EngineFailure({
        type: "exceed_context_size_error",
        message: "the request exceeds the available context size",
        n_prompt_tokens: tokens.length,
        n_ctx: nCtx,
      });
    }
    const input = Module._malloc(4 * tokens.length);
    Module.HEAP32.set(tokens, input >> 2);
    const seed = body.seed ?? crypto.getRandomValues(new Uint32Array(1))[0];
    const status = Module._edge_begin(
      input,
      tokens.length,
      body.temperature,
      body.top_p,
      body.top_k,
      body.min_p,
      body.repeat_penalty,
      body.presence_penalty,
      body.frequency_penalty,
      seed >>> 0,
    );
    try {
      if (status !== 0) throw new EngineFailure({ message: `prompt evaluation failed (${status})` });
      // The prompt a batch at a time, with a turn of the event loop between batches.
      for (let left = Module._edge_feed(); left !== 0; left = Module._edge_feed()) {
        if (left < 0) throw new EngineFailure({ message: "prompt evaluation failed" });
        beat();
        await new Promise((resolve) => setTimeout(resolve, 0));
      }
    } finally {
      Module._free(input);
    }

    const budget = Math.min(body.max_tokens, nCtx - tokens.length - 1);
    const stops = body.stop ?? [];
    const longestStop = Math.max(0, ...stops.map((s) => s.length));
    const decoder = new TextDecoder();
    const buffer = Module._malloc(256);
    let held = ""; // text that may be the start of a stop sequence
    let count = 0;
    let finishReason = "length";
    try {
      while (count < budget) {
        const token = Module._edge_next();
        beat();
        if (token === -1) {
          finishReason = "stop";
          break;
        }
        if (token < 0) break; // the context is full
        count += 1;
        held += decoder.decode(this.piece(token, buffer), { stream: true });
        const hit = stops
          .map((stop) => held.indexOf(stop))
          .filter((at) => at >= 0)
          .sort((a, b) => a - b)[0];
        if (hit !== undefined) {
          if (hit > 0) yield { text: held.slice(0, hit) };
          held = "";
          finishReason = "stop";
          break;
        }
        // Everything but a tail that could still grow into a stop sequence goes out now.
        const keep = longestStop > 0 ? heldTail(held, stops, longestStop) : 0;
        if (held.length > keep) {
          yield { text: held.slice(0, held.length - keep) };
          held = held.slice(held.length - keep);
        }
      }
      held += decoder.decode();
      if (held) yield { text: held };
    } finally {
      Module._free(buffer);
    }
    return { finishReason, promptTokens: tokens.length, completionTokens: count };
  }
}

// The length of the longest end of `text` that is the beginning of one of `stops`.
function heldTail(text, stops, longest) {
  for (let n = Math.min(text.length, longest - 1); n > 0; n--) {
    const tail = text.slice(text.length - n);
    if (stops.some((stop) => stop.startsWith(tail))) return n;
  }
  return 0;
}
