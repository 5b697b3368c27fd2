// Forwarding to the inference origins: header hygiene, SigV4, per-origin timeout and failover.
import { EdgeError, errorBody } from "./errors.js";
import { lambdaUrlRegion, sign } from "./sigv4.js";

// Hop-by-hop headers (RFC 9110 7.6.1) and the ones fetch sets from the body and URL itself.
const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "host",
  "content-length",
]);
// The caller's credentials are for the edge, and forwarding headers are set here, not trusted.
const NOT_FORWARDED = new Set([
  "authorization",
  "x-api-key",
  "x-forwarded-for",
  "x-forwarded-host",
  "x-forwarded-proto",
  "x-real-ip",
  "forwarded",
  "x-nimbus-route", // the client's choice of side, read at the edge
]);

function isHopByHop(name, listed) {
  return HOP_BY_HOP.has(name) || name.startsWith("proxy-") || listed.has(name);
}

function connectionListed(headers) {
  return new Set(
    (headers.get("connection") ?? "")
      .split(",")
      .map((name) => name.trim().toLowerCase())
      .filter(Boolean),
  );
}

export function originRequestHeaders(request, config) {
  const listed = connectionListed(request.headers);
  const out = new Headers();
  for (const [name, value] of request.headers) {
    // cf-* are Cloudflare's own request metadata (cf-connecting-ip, cf-ray, ...).
    if (isHopByHop(name, listed) || NOT_FORWARDED.has(name) || name.startsWith("cf-")) continue;
    out.set(name, value);
  }
  const url = new URL(request.url);
  const client = request.headers.get("cf-connecting-ip");
  if (client) out.set("x-forwarded-for", client);
  out.set("x-forwarded-proto", url.protocol.replace(":", ""));
  out.set("x-forwarded-host", url.host);
  return out;
}

export function clientResponseHeaders(response, originIndex) {
  const listed = connectionListed(response.headers);
  const out = new Headers();
  for (const [name, value] of response.headers) {
    if (!isHopByHop(name, listed)) out.append(name, value);
  }
  // Which origin answered, by position in INFERENCE_ORIGIN (never its address).
  out.set("x-nimbus-origin", String(originIndex));
  out.set("x-nimbus-answered-by", "origin");
  return out;
}

function signingFor(origin, sigv4) {
  if (sigv4.mode === "off") return null;
  const { hostname } = new URL(origin);
  const region = sigv4.region ?? lambdaUrlRegion(hostname);
  if (sigv4.mode === "auto" && !hostname.endsWith(".on.aws")) return null;
  if (!sigv4.accessKeyId || !sigv4.secretAccessKey || !region) {
    throw new EdgeError(
      "edge_misconfigured",
      "SigV4 signing needs AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and a region",
    );
  }
  return { ...sigv4, region };
}

/** One request to one origin; rejects on network errors and when no headers come in time. */
export async function callOrigin(origin, { method, path, headers, body }, config, timeoutMs) {
  const url = origin + path;
  const outgoing = new Headers(headers);
  if (config.originApiKey) {
    // With SigV4 the Authorization header carries the signature, so the key rides in x-api-key.
    outgoing.set("x-api-key", config.originApiKey);
  }
  const signing = signingFor(origin, config.sigv4);
  if (signing) {
    const signed = await sign({ method, url, headers: outgoing, body, ...signing });
    for (const [name, value] of Object.entries(signed)) outgoing.set(name, value);
  } else if (config.originApiKey) {
    outgoing.set("authorization", `Bearer ${config.originApiKey}`);
  }
  const controller = new AbortController();
  const timer = setTimeout(
    () => controller.abort(new Error(`no response within ${timeoutMs} ms`)),
    timeoutMs,
  );
  try {
    // The timeout covers connecting and the response headers only; a stream may then run long.
    return await fetch(url, {
      method,
      headers: outgoing,
      body: body ?? undefined,
      redirect: "manual",
      signal: controller.signal,
    });
  } finally {
    clearTimeout(timer);
  }
}

function describe(error) {
  return error?.message ? String(error.message) : String(error);
}

/** Every origin failed; thrown instead of the last answer when the edge's own model can answer. */
export class OriginsFailed extends Error {
  constructor(failures) {
    super(`no inference origin answered (${failures.join("; ")})`);
    this.failures = failures;
  }
}

/**
 * Tries the origins in order. An origin that is down, times out or answers 5xx is skipped, which
 * is safe because nothing has been sent to the client yet; once a response is returned its body
 * is relayed as it arrives and never replayed, so a stream that has started is never retried. When every origin
 * fails, the last 5xx answer is passed on (it may carry Retry-After), else a 502; with
 * `fallback` set, OriginsFailed is thrown instead, so that the edge's model answers.
 */
export async function forward(request, body, config, { fallback = false } = {}) {
  const url = new URL(request.url);
  const call = {
    method: request.method,
    path: url.pathname + url.search,
    headers: originRequestHeaders(request, config),
    body,
  };
  const failures = [];
  let held = null;
  for (const [index, origin] of config.origins.entries()) {
    let response;
    try {
      response = await callOrigin(origin, call, config, config.timeoutMs);
    } catch (error) {
      if (error instanceof EdgeError) throw error; // misconfiguration, not an origin failure
      failures.push(`origin ${index}: ${describe(error)}`);
      continue;
    }
    const last = index === config.origins.length - 1 && !fallback;
    if (response.status >= 500 && !last) {
      failures.push(`origin ${index}: HTTP ${response.status}`);
      await held?.response.body?.cancel();
      held = { response, index };
      continue;
    }
    await held?.response.body?.cancel();
    return relay(response, index, failures);
  }
  if (fallback) {
    await held?.response.body?.cancel();
    throw new OriginsFailed(failures);
  }
  if (held) return relay(held.response, held.index, failures);
  throw new EdgeError("origin_unavailable", `no inference origin answered (${failures.join("; ")})`);
}

const encoder = new TextEncoder();

/**
 * Copies an SSE body chunk by chunk, as each arrives. If the origin breaks off mid-stream, the
 * client gets a final error event in core's shape (as core's own streams do on a failure) instead
 * of a stream that just stops: workerd would otherwise end the response as if it were complete.
 */
function relayEvents(body) {
  const { readable, writable } = new TransformStream();
  const writer = writable.getWriter();
  const reader = body.getReader();
  const interrupted = async (error, atBoundary) => {
    const event = errorBody(
      new EdgeError("origin_interrupted", `the origin's stream broke off: ${describe(error)}`),
    );
    // End a half-sent event first, so the error arrives as an event of its own.
    const text = `${atBoundary ? "" : "\n\n"}data: ${JSON.stringify(event)}\n\n`;
    await writer.write(encoder.encode(text));
  };
  (async () => {
    let last = [10, 10]; // the last two bytes sent; "\n\n" is an event boundary
    for (;;) {
      let chunk;
      try {
        chunk = await reader.read();
      } catch (error) {
        await interrupted(error, last[0] === 10 && last[1] === 10);
        break;
      }
      if (chunk.done) break;
      const bytes = chunk.value;
      if (bytes.byteLength >= 2) last = [bytes.at(-2), bytes.at(-1)];
      else if (bytes.byteLength === 1) last = [last[1], bytes[0]];
      await writer.write(bytes);
    }
    await writer.close();
  })().catch(async (error) => {
    // The client went away: stop reading, so the origin sees the disconnect and stops generating.
    await reader.cancel(error).catch(() => {});
  });
  return readable;
}

function relay(response, index, failures) {
  if (failures.length) console.warn(`failover: ${failures.join("; ")}`);
  const sse = (response.headers.get("content-type") ?? "").startsWith("text/event-stream");
  // Otherwise response.body is the origin's stream itself, piped natively as bytes arrive.
  const body = sse && response.body ? relayEvents(response.body) : response.body;
  return new Response(body, {
    status: response.status,
    statusText: response.statusText,
    headers: clientResponseHeaders(response, index),
  });
}
