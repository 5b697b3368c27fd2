// Errors in the exact shape core answers with: {"error": {"message", "type", "code", "param"}}.
// Kinds shared with core come from the generated limits.js; the edge-only ones are below.
import { ERRORS } from "./limits.js";

const EDGE_ERRORS = {
  // Every origin was down, timed out or answered 5xx, and none left a response to pass on.
  origin_unavailable: { status: 502, type: "server_error", code: "origin_unavailable" },
  // An origin's event stream broke off after it had started (sent as a final SSE event).
  origin_interrupted: { status: 502, type: "server_error", code: "origin_stream_interrupted" },
  // The worker is deployed without what it needs (no origin, no API key secret).
  edge_misconfigured: { status: 500, type: "server_error", code: "edge_misconfigured" },
  // A bug in the worker; the same code core's base error uses.
  internal: { status: 500, type: "server_error", code: "internal_error" },
};

export class EdgeError extends Error {
  constructor(kind, message, { param = null, headers = {} } = {}) {
    super(message);
    const spec = ERRORS[kind] ?? EDGE_ERRORS[kind];
    if (!spec) throw new TypeError(`unknown error kind ${kind}`);
    this.status = spec.status;
    this.type = spec.type;
    this.code = spec.code;
    this.param = param;
    this.headers = headers;
  }
}

export function errorBody(error) {
  return {
    error: { message: error.message, type: error.type, code: error.code, param: error.param },
  };
}

export function errorResponse(error) {
  return new Response(JSON.stringify(errorBody(error)), {
    status: error.status,
    headers: { "content-type": "application/json", ...error.headers },
  });
}
