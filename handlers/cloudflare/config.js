// Reads the worker's bindings (wrangler.toml [vars] and secrets) into one plain object.

// The entry module may export only handlers, so the version lives here.
export const VERSION = "0.1.0";

const DEFAULT_TIMEOUT_MS = 100_000; // Cloudflare's own proxy waits 100 s for origin headers.
const DEFAULT_HEALTH_TIMEOUT_MS = 5_000;

function list(value) {
  return String(value ?? "")
    .split(/[\s,]+/)
    .map((item) => item.trim())
    .filter(Boolean);
}

function positiveInt(value, fallback) {
  const n = Number(value);
  return Number.isInteger(n) && n > 0 ? n : fallback;
}

// The edge's own model. The defaults are sized for SmolLM2-135M at the speed measured in workerd
// and the paid plan's default CPU limit of 30 s a request (docs/edge-inference.md derives them).
export const EDGE_MODES = ["off", "failover", "always"];
// The llama.cpp WebAssembly build: "wllama", the published @wllama/wllama one (64-bit memory,
// 128 MiB initial heap), or "nimbus", the 32-bit build made by deploy/cloudflare/edge-wasm.
export const EDGE_WASMS = ["wllama", "nimbus"];
const EDGE_DEFAULTS = {
  wasm: "nimbus",
  modelKey: "SmolLM2-135M-Instruct.Q4_0.gguf",
  maxQueue: 4,
  maxTokens: 360,
  contextTokens: 720,
  batchTokens: 32,
};

function boundedInt(name, value, fallback, max) {
  if (value === undefined || value === null || value === "") return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > max) {
    throw new TypeError(`${name} must be an integer from 0 to ${max}, not ${JSON.stringify(value)}`);
  }
  return n;
}

function readEdge(env) {
  const mode = String(env.EDGE_MODE ?? "off").toLowerCase();
  if (!EDGE_MODES.includes(mode)) {
    throw new TypeError(`EDGE_MODE must be one of ${EDGE_MODES.join(", ")}, not ${mode}`);
  }
  const wasm = String(env.EDGE_WASM || EDGE_DEFAULTS.wasm).toLowerCase();
  if (!EDGE_WASMS.includes(wasm)) {
    throw new TypeError(`EDGE_WASM must be one of ${EDGE_WASMS.join(", ")}, not ${wasm}`);
  }
  const modelKey = env.EDGE_MODEL_KEY || EDGE_DEFAULTS.modelKey;
  const contextTokens = boundedInt(
    "EDGE_CONTEXT_TOKENS", env.EDGE_CONTEXT_TOKENS, EDGE_DEFAULTS.contextTokens, 32768,
  );
  const maxTokens = boundedInt("EDGE_MAX_TOKENS", env.EDGE_MAX_TOKENS, EDGE_DEFAULTS.maxTokens, 32768);
  if (contextTokens < 64 || maxTokens < 1 || maxTokens >= contextTokens) {
    throw new TypeError("EDGE_MAX_TOKENS must be at least 1 and below EDGE_CONTEXT_TOKENS (>= 64)");
  }
  const log = String(env.EDGE_LOG || "warn").toLowerCase();
  if (!["warn", "info"].includes(log)) throw new TypeError(`EDGE_LOG must be warn or info, not ${log}`);
  return {
    mode,
    wasm,
    // "info": llama.cpp's load report (buffer sizes, heap use) in the Worker's log.
    log,
    modelKey,
    // The id answers carry: EDGE_MODEL_ID, else the object's file name without ".gguf".
    modelId: env.EDGE_MODEL_ID || modelKey.split("/").at(-1).replace(/\.gguf$/i, ""),
    maxQueue: boundedInt("EDGE_MAX_QUEUE", env.EDGE_MAX_QUEUE, EDGE_DEFAULTS.maxQueue, 1000),
    maxTokens,
    contextTokens,
    batchTokens: EDGE_DEFAULTS.batchTokens,
  };
}

/** Throws TypeError with a readable message on a malformed binding (answered as misconfigured). */
export function readConfig(env) {
  const origins = list(env.INFERENCE_ORIGIN).map((origin) => origin.replace(/\/+$/, ""));
  for (const origin of origins) {
    let url;
    try {
      url = new URL(origin);
    } catch {
      throw new TypeError(`INFERENCE_ORIGIN: ${origin} is not a URL`);
    }
    if (url.protocol !== "https:" && url.protocol !== "http:") {
      throw new TypeError(`INFERENCE_ORIGIN: origin ${origin} is not http(s)`);
    }
  }
  return {
    origins,
    timeoutMs: positiveInt(env.ORIGIN_TIMEOUT_MS, DEFAULT_TIMEOUT_MS),
    healthTimeoutMs: positiveInt(env.HEALTH_TIMEOUT_MS, DEFAULT_HEALTH_TIMEOUT_MS),
    // Several keys (comma-separated) let a key be rotated without downtime.
    apiKeys: list(env.EDGE_API_KEY),
    allowAnonymous: String(env.ALLOW_ANONYMOUS ?? "false").toLowerCase() === "true",
    originApiKey: env.ORIGIN_API_KEY || null,
    sigv4: {
      mode: String(env.SIGV4 ?? "auto").toLowerCase(), // auto | always | off
      service: env.SIGV4_SERVICE || "lambda",
      region: env.AWS_REGION || null,
      accessKeyId: env.AWS_ACCESS_KEY_ID || null,
      secretAccessKey: env.AWS_SECRET_ACCESS_KEY || null,
      sessionToken: env.AWS_SESSION_TOKEN || null,
    },
    edge: readEdge(env),
  };
}
