// Size and shape checks at the edge, in the same order and with the same messages as core
// (core/api/body_limit.py, core/api/service.py and pydantic's wording for the few field errors
// checked here). The edge is never stricter than the origin: anything it cannot judge exactly
// (a field of the wrong type, a sampling value out of range) is forwarded for the origin to refuse.
import { EdgeError } from "./errors.js";
import { LIMITS } from "./limits.js";

const NOT_AN_OBJECT = "Input should be a valid dictionary or object to extract fields from";

function tooLarge() {
  return new EdgeError(
    "payload_too_large",
    `request body is larger than ${LIMITS.max_body_bytes} bytes`,
  );
}

// Reads the body into memory, never more than max_body_bytes of it. Requests are small and must be
// replayable for failover; responses are never buffered.
export async function readBody(request) {
  if (request.method === "GET" || request.method === "HEAD" || request.body === null) return null;
  const declared = request.headers.get("content-length");
  if (declared !== null && /^\d+$/.test(declared) && Number(declared) > LIMITS.max_body_bytes) {
    throw tooLarge();
  }
  const reader = request.body.getReader();
  const chunks = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > LIMITS.max_body_bytes) {
      await reader.cancel();
      throw tooLarge();
    }
    chunks.push(value);
  }
  const body = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    body.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return body;
}

// Python's len(): code points, where JS .length counts UTF-16 units. Only counted past the limit.
function chars(text) {
  if (text.length <= LIMITS.max_prompt_chars) return text.length;
  let n = 0;
  for (const _ of text) n++;
  return n;
}

function checkText(text, param) {
  const n = chars(text);
  if (n > LIMITS.max_prompt_chars) {
    throw new EdgeError(
      "payload_too_large",
      `${param} is ${n} characters; the limit is ${LIMITS.max_prompt_chars}`,
      { param },
    );
  }
}

function fieldError(param, message) {
  return new EdgeError("invalid_request", `invalid request at '${param}': ${message}`, { param });
}

function checkMaxTokens(value, param) {
  if (Number.isInteger(value) && value > LIMITS.max_tokens_cap) {
    throw new EdgeError("invalid_parameter", `${param} must be at most ${LIMITS.max_tokens_cap}`, {
      param,
    });
  }
}

function checkStops(stop) {
  if (Array.isArray(stop) && stop.length > LIMITS.max_stop_sequences) {
    throw new EdgeError(
      "invalid_parameter",
      `at most ${LIMITS.max_stop_sequences} stop sequences are allowed`,
      { param: "stop" },
    );
  }
}

function messageText(content) {
  if (content === null || content === undefined) return "";
  if (typeof content === "string") return content;
  if (Array.isArray(content) && content.every((p) => typeof p?.text === "string")) {
    return content.map((p) => p.text).join("");
  }
  return null; // not a shape the edge judges
}

function checkGenerate(body) {
  if (!("prompt" in body)) throw fieldError("prompt", "Field required");
  if (body.prompt === "") throw fieldError("prompt", "String should have at least 1 character");
  if (typeof body.prompt === "string") checkText(body.prompt, "prompt");
  // The alias wins over the field name, as in pydantic (populate_by_name).
  checkMaxTokens("maxTokens" in body ? body.maxTokens : body.max_tokens, "maxTokens");
}

function checkChat(body) {
  if (!("messages" in body)) throw fieldError("messages", "Field required");
  const { messages } = body;
  if (!Array.isArray(messages)) return;
  if (messages.length === 0) {
    throw fieldError("messages", "List should have at least 1 item after validation, not 0");
  }
  if (messages.length > LIMITS.max_messages) {
    throw new EdgeError(
      "invalid_parameter",
      `at most ${LIMITS.max_messages} messages are allowed`,
      { param: "messages" },
    );
  }
  messages.forEach((message, i) => {
    const text = message && typeof message === "object" ? messageText(message.content) : null;
    if (text !== null) checkText(text, `messages.${i}.content`);
  });
  const param = body.max_completion_tokens ? "max_completion_tokens" : "max_tokens";
  checkMaxTokens(body.max_completion_tokens || body.max_tokens, param);
  checkStops(body.stop);
}

function checkCompletion(body) {
  if (!("prompt" in body)) throw fieldError("prompt", "Field required");
  let { prompt } = body;
  if (Array.isArray(prompt) && prompt.every((p) => typeof p === "string")) {
    if (prompt.length !== 1) {
      throw new EdgeError("invalid_parameter", "exactly one prompt per request is supported", {
        param: "prompt",
      });
    }
    // Named like core's checks: the one element of a list prompt is "prompt.0".
    if (typeof prompt[0] === "string") checkText(prompt[0], "prompt.0");
    prompt = null;
  }
  if (typeof prompt === "string") checkText(prompt, "prompt");
  checkMaxTokens(body.max_tokens, "max_tokens");
  checkStops(body.stop);
}

const SHAPES = {
  "/api/generate": checkGenerate,
  "/v1/chat/completions": checkChat,
  "/v1/completions": checkCompletion,
};

function isJson(contentType) {
  // FastAPI parses the body as JSON when there is no content type or a JSON one.
  if (!contentType) return true;
  const [type] = contentType.toLowerCase().split(";");
  const [main, sub = ""] = type.trim().split("/");
  return main === "application" && (sub === "json" || sub.endsWith("+json"));
}

// Throws an EdgeError for a request the origin would refuse with the same answer.
export function checkShape(pathname, method, contentType, body) {
  const check = SHAPES[pathname];
  if (!check || method !== "POST" || !isJson(contentType)) return;
  if (body === null || body.byteLength === 0) {
    throw new EdgeError("invalid_request", "invalid request: Field required");
  }
  let data;
  try {
    data = JSON.parse(new TextDecoder().decode(body));
  } catch {
    throw new EdgeError("invalid_json", "request body is not valid JSON");
  }
  if (data === null || typeof data !== "object" || Array.isArray(data)) {
    throw new EdgeError("invalid_request", `invalid request: ${NOT_AN_OBJECT}`);
  }
  check(data);
}
