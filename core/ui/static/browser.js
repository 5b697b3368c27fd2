// In-browser mode: the server's own GGUF run by llama.cpp compiled to WebAssembly (wllama),
// which runs it in a Web Worker so the page stays responsive. The model file is fetched once
// in pieces (Range) and kept in the browser's Cache Storage; later visits only ask whether it
// changed (If-None-Match -> 304) and use the kept copy, also when the server cannot be reached.
import { Wllama } from './vendor/wllama/index.js';
import { apiError } from './errors.js';
import { authHeaders } from './server.js';

const WASM_URL = new URL('./vendor/wllama/wllama.wasm', import.meta.url).href;
const CACHE_NAME = 'nimbus-model';
// 4 MiB pieces: a buffered AWS Lambda answer is at most 6 MB after base64.
const PIECE_BYTES = 4 * 1024 * 1024;
const QUIET = { debug() {}, log() {}, warn: console.warn, error: console.error };

export function unsupportedReason() {
  if (!self.crossOriginIsolated) {
    return 'this page is not cross-origin isolated (the server must send COOP and COEP headers)';
  }
  if (typeof WebAssembly?.Suspending !== 'function') {
    return 'this browser lacks WebAssembly JSPI (Chrome/Chromium 137 or later has it)';
  }
  return null;
}

async function fetchModel(url, apiKey, onProgress) {
  const cache = await caches.open(CACHE_NAME);
  const kept = await cache.match(url);
  const keptTag = kept?.headers.get('ETag');
  let head;
  try {
    head = await fetch(url, {
      method: 'HEAD',
      headers: { ...authHeaders(apiKey), ...(keptTag ? { 'If-None-Match': keptTag } : {}) },
      cache: 'no-store',
    });
  } catch (error) {
    if (kept) return { blob: await kept.blob(), source: 'kept copy (server unreachable)' };
    throw error;
  }
  if (kept && head.status === 304) return { blob: await kept.blob(), source: 'kept copy' };
  if (!head.ok) throw await apiError(head);
  const size = Number(head.headers.get('Content-Length'));
  const etag = head.headers.get('ETag');
  const pieces = [];
  for (let first = 0; first < size; first += PIECE_BYTES) {
    const last = Math.min(size, first + PIECE_BYTES) - 1;
    const piece = await fetch(url, {
      headers: { ...authHeaders(apiKey), Range: `bytes=${first}-${last}`, 'If-Range': etag },
      cache: 'no-store',
    });
    if (piece.status !== 206) {
      if (!piece.ok) throw await apiError(piece);
      throw new Error('the model file changed during the download: try again');
    }
    pieces.push(await piece.blob());
    onProgress(last + 1, size);
  }
  const blob = new Blob(pieces);
  await cache.delete(url);
  await cache.put(
    url,
    new Response(blob, { headers: { ETag: etag, 'Content-Length': String(size) } }),
  );
  return { blob, source: 'downloaded' };
}

export class BrowserModel {
  constructor(base) {
    this.url = new URL('api/model/file', base).href;
    this.wllama = null;
    this.loading = null;
    this.threads = 1;
  }

  get ready() {
    return this.wllama !== null;
  }

  // Loads once; concurrent callers share the same load.
  load(apiKey, onProgress) {
    this.loading ??= this.#load(apiKey, onProgress).catch((error) => {
      this.loading = null;
      throw error;
    });
    return this.loading;
  }

  async #load(apiKey, onProgress) {
    const reason = unsupportedReason();
    if (reason) throw new Error(`In-browser mode is unavailable: ${reason}.`);
    const { blob, source } = await fetchModel(this.url, apiKey, (done, total) =>
      onProgress(`Downloading the model: ${Math.round((100 * done) / total)} %`),
    );
    onProgress(`Starting WebAssembly (${source}, ${(blob.size / 1048576).toFixed(0)} MiB)…`);
    const wllama = new Wllama({ default: WASM_URL }, { suppressNativeLog: true, logger: QUIET });
    wllama.setCompat(null); // never fetch a fallback build from a CDN
    this.threads = Math.max(1, navigator.hardwareConcurrency || 1);
    await wllama.loadModel([blob], { n_ctx: 2048, n_gpu_layers: 0, n_threads: this.threads });
    this.threads = wllama.getNumThreads();
    this.wllama = wllama;
    return source;
  }

  async chat({ messages, params, signal, onToken }) {
    const stream = await this.wllama.createChatCompletion({
      messages,
      temperature: params.temperature,
      max_tokens: params.maxTokens,
      stream: true,
      abortSignal: signal,
    });
    let finishReason = null;
    for await (const chunk of stream) {
      const choice = chunk.choices?.[0];
      if (choice?.delta?.content) onToken(choice.delta.content);
      if (choice?.finish_reason) finishReason = choice.finish_reason;
    }
    return { usage: null, finishReason };
  }
}
