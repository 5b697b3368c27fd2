// Answering a request from the model the Worker holds (EDGE_MODE "always", a failover, or a client
// that asked with x-nimbus-route: edge).
import { EdgeError } from "../errors.js";
import { edgeModel } from "./engine.js";
import { answerable, parseRequest } from "./requests.js";
import { ANSWERED_BY, answerStream, answerWhole } from "./responses.js";

export { answerable };

function models(model) {
  const body = {
    object: "list",
    data: [
      {
        id: model.settings.modelId,
        object: "model",
        created: Math.floor(Date.now() / 1000),
        owned_by: "nimbus",
      },
    ],
  };
  return new Response(JSON.stringify(body), {
    headers: { "content-type": "application/json", [ANSWERED_BY]: "edge" },
  });
}

export function edgeAnswers(pathname, method) {
  return answerable(pathname, method) || (pathname === "/v1/models" && method === "GET");
}

export async function answerAtEdge(request, body, env, config) {
  const { pathname } = new URL(request.url);
  const model = edgeModel(config.edge);
  if (pathname === "/v1/models" && request.method === "GET") return models(model);
  if (!answerable(pathname, request.method)) throw new EdgeError("not_found", "Not Found");
  let data;
  try {
    data = JSON.parse(new TextDecoder().decode(body ?? new Uint8Array()));
  } catch {
    throw new EdgeError("invalid_json", "request body is not valid JSON");
  }
  if (data === null || typeof data !== "object" || Array.isArray(data)) {
    throw new EdgeError(
      "invalid_request",
      "invalid request: Input should be a valid dictionary or object to extract fields from",
    ); // as guard.js: core's answer for a body that is not a JSON object
  }
  const parsed = parseRequest(pathname, data, config.edge.maxTokens);
  const started = Date.now();
  const generation = model.generate(env.MODEL_BUCKET, parsed.body, parsed.isChat, request.signal);
  if (!parsed.stream) return answerWhole(parsed, model, generation, started);
  // The first piece comes before the headers: a full queue or a failed load is a plain error.
  const first = await generation.next();
  return answerStream(parsed, model, generation, first);
}

export function edgeStats(config) {
  return edgeModel(config.edge).stats();
}
