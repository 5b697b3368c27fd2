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

export function readConfig(env) {
  const origins = list(env.INFERENCE_ORIGIN).map((origin) => origin.replace(/\/+$/, ""));
  for (const origin of origins) {
    const url = new URL(origin); // throws on a malformed origin: reported as misconfiguration
    if (url.protocol !== "https:" && url.protocol !== "http:") {
      throw new TypeError(`origin ${origin} is not http(s)`);
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
  };
}
