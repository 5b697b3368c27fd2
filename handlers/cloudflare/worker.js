// nimbus-llm edge worker: guards and forwards to the inference origin(s), and can answer from a
// model it holds itself (EDGE_MODE): when every origin is down ("failover"), when the client asks
// for it (x-nimbus-route: edge), or always. It refuses what it can before it costs compute.
import { checkApiKey } from "./auth.js";
import { VERSION, readConfig } from "./config.js";
import { EdgeError, errorResponse } from "./errors.js";
import { checkShape, readBody } from "./guard.js";
import { health } from "./health.js";
import { answerAtEdge, edgeAnswers, edgeStats } from "./model/answer.js";
import { isPage } from "./pages.js";
import { OriginsFailed, forward } from "./proxy.js";

const ROUTES = ["origin", "edge"];

function routed(pathname) {
  return pathname.startsWith("/api/") || pathname.startsWith("/v1/");
}

/** "edge", "origin" or "failover": which side answers this request. */
function side(request, config) {
  const asked = request.headers.get("x-nimbus-route");
  if (asked !== null && !ROUTES.includes(asked.trim().toLowerCase())) {
    throw new EdgeError("invalid_parameter", `x-nimbus-route must be "origin" or "edge"`, {
      param: "x-nimbus-route",
    });
  }
  const choice = asked?.trim().toLowerCase() ?? null;
  const { mode } = config.edge;
  if (choice === "edge" && mode === "off") {
    throw new EdgeError("invalid_parameter", "this edge holds no model (EDGE_MODE is off)", {
      param: "x-nimbus-route",
    });
  }
  if (mode === "always") {
    if (choice === "origin") {
      throw new EdgeError("invalid_parameter", "this edge answers from its own model only", {
        param: "x-nimbus-route",
      });
    }
    return "edge";
  }
  if (mode === "off" || choice === "origin") return "origin";
  return choice === "edge" ? "edge" : "failover";
}

async function handle(request, env) {
  const url = new URL(request.url);
  const page = isPage(url.pathname, request.method);
  if (!page && !routed(url.pathname)) throw new EdgeError("not_found", "Not Found");
  let config;
  try {
    config = readConfig(env);
  } catch (error) {
    throw new EdgeError("edge_misconfigured", `bad configuration: ${error.message}`);
  }
  if (config.origins.length === 0 && config.edge.mode !== "always") {
    throw new EdgeError("edge_misconfigured", "the edge has no INFERENCE_ORIGIN");
  }
  // Open like core's, so load balancers and uptime checks need no key.
  if (url.pathname === "/api/health" && request.method === "GET") {
    return health(config, VERSION, config.edge.mode === "off" ? null : edgeStats(config));
  }
  if (page) {
    // The chat page and API docs come from the origin; an edge with no origin has none.
    if (config.origins.length === 0) throw new EdgeError("not_found", "Not Found");
    return forward(request, null, config);
  }
  await checkApiKey(request, config);
  const body = await readBody(request);
  checkShape(url.pathname, request.method, request.headers.get("content-type"), body);
  const where = side(request, config);
  if (where === "edge") return answerAtEdge(request, body, env, config);
  if (where === "failover" && edgeAnswers(url.pathname, request.method)) {
    try {
      return await forward(request, body, config, { fallback: true });
    } catch (error) {
      if (!(error instanceof OriginsFailed)) throw error;
      console.warn(`answering at the edge: ${error.message}`);
      return answerAtEdge(request, body, env, config);
    }
  }
  return forward(request, body, config);
}

export default {
  async fetch(request, env) {
    try {
      return await handle(request, env);
    } catch (error) {
      if (error instanceof EdgeError) return errorResponse(error);
      console.error("edge worker failed", error?.stack ?? error);
      return errorResponse(new EdgeError("internal", "internal edge error"));
    }
  },
};
