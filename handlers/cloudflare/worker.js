// nimbus-llm edge worker: guards and forwards to the inference origin(s). A Worker has 128 MB and
// holds no model; it refuses what it can before it costs origin compute and streams the rest.
import { checkApiKey } from "./auth.js";
import { VERSION, readConfig } from "./config.js";
import { EdgeError, errorResponse } from "./errors.js";
import { checkShape, readBody } from "./guard.js";
import { health } from "./health.js";
import { isPage } from "./pages.js";
import { forward } from "./proxy.js";

function routed(pathname) {
  return pathname.startsWith("/api/") || pathname.startsWith("/v1/");
}

async function handle(request, env) {
  const url = new URL(request.url);
  const page = isPage(url.pathname, request.method);
  if (!page && !routed(url.pathname)) throw new EdgeError("not_found", "Not Found");
  let config;
  try {
    config = readConfig(env);
  } catch (error) {
    throw new EdgeError("edge_misconfigured", `bad INFERENCE_ORIGIN: ${error.message}`);
  }
  if (config.origins.length === 0) {
    throw new EdgeError("edge_misconfigured", "the edge has no INFERENCE_ORIGIN");
  }
  // Open like core's, so load balancers and uptime checks need no key.
  if (url.pathname === "/api/health" && request.method === "GET") return health(config, VERSION);
  if (page) return forward(request, null, config);
  await checkApiKey(request, config);
  const body = await readBody(request);
  checkShape(url.pathname, request.method, request.headers.get("content-type"), body);
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
