// GET /api/health at the edge: the edge's own status (and its model's, when it holds one: state,
// wasm heap bytes, queue) plus every origin's /api/health. Never loads the model itself.
import { callOrigin } from "./proxy.js";

async function probe(origin, index, config) {
  try {
    const response = await callOrigin(
      origin,
      { method: "GET", path: "/api/health", headers: new Headers({ accept: "application/json" }), body: null },
      config,
      config.healthTimeoutMs,
    );
    let health = null;
    try {
      health = await response.json();
    } catch {
      // A non-JSON answer is reported by its status alone.
    }
    return { origin: index, ok: response.status === 200, status: response.status, health };
  } catch (error) {
    return { origin: index, ok: false, status: null, error: String(error?.message ?? error) };
  }
}

export async function health(config, version, model) {
  const origins = await Promise.all(config.origins.map((origin, i) => probe(origin, i, config)));
  const ready = origins.find((o) => o.ok);
  // The edge's model can answer unless its last load failed (the next request retries it).
  const modelUp = model !== null && model.status !== "failed";
  const edge = { status: "ok", version, origins: config.origins.length, mode: config.edge.mode };
  if (model !== null) edge.model = model;
  const body = {
    status: ready || modelUp ? "ready" : "unavailable",
    model: ready?.health?.model ?? (modelUp ? model.id : null),
    edge,
    origins,
  };
  return new Response(JSON.stringify(body), {
    status: ready || modelUp ? 200 : 503,
    headers: { "content-type": "application/json", "cache-control": "no-store" },
  });
}
