// The edge's own API key check (secret binding EDGE_API_KEY), before anything costs the origin.
import { EdgeError } from "./errors.js";

const encoder = new TextEncoder();

async function digest(text) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", encoder.encode(text)));
}

// Compare SHA-256 digests, not the strings: equal lengths, so neither the length nor the first
// differing byte of a key leaks through timing.
async function sameSecret(presented, expected) {
  const [a, b] = await Promise.all([digest(presented), digest(expected)]);
  if (typeof crypto.subtle.timingSafeEqual === "function") {
    return crypto.subtle.timingSafeEqual(a, b);
  }
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

function presentedKey(headers) {
  const authorization = headers.get("authorization");
  if (authorization) {
    const match = /^Bearer\s+(.+)$/i.exec(authorization.trim());
    if (match) return match[1].trim();
  }
  const apiKey = headers.get("x-api-key");
  return apiKey ? apiKey.trim() : null;
}

const CHALLENGE = { "www-authenticate": 'Bearer realm="nimbus"' };

export async function checkApiKey(request, config) {
  if (config.apiKeys.length === 0) {
    if (config.allowAnonymous) return;
    // Fail closed: a worker deployed without its secret must not become an open proxy.
    throw new EdgeError(
      "edge_misconfigured",
      "the edge has no EDGE_API_KEY secret (set one, or ALLOW_ANONYMOUS=true)",
    );
  }
  const presented = presentedKey(request.headers);
  if (!presented) {
    throw new EdgeError(
      "authentication",
      "missing API key: send 'Authorization: Bearer <key>' or 'x-api-key: <key>'",
      { headers: CHALLENGE },
    );
  }
  let ok = false;
  // Every configured key is compared: how many there are before a match does not leak.
  for (const key of config.apiKeys) ok = (await sameSecret(presented, key)) || ok;
  if (!ok) throw new EdgeError("authentication", "invalid API key", { headers: CHALLENGE });
}
