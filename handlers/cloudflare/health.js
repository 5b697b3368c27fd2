// GET /api/health at the edge: the edge's own status plus every origin's /api/health.
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

export async function health(config, version) {
  const origins = await Promise.all(config.origins.map((origin, i) => probe(origin, i, config)));
  const ready = origins.find((o) => o.ok);
  const body = {
    status: ready ? "ready" : "unavailable",
    model: ready?.health?.model ?? null,
    edge: { status: "ok", version, origins: config.origins.length },
    origins,
  };
  return new Response(JSON.stringify(body), {
    status: ready ? 200 : 503,
    headers: { "content-type": "application/json", "cache-control": "no-store" },
  });
}
