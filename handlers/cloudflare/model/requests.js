// Request bodies for the edge's own model, checked field by field as core's pydantic models check
// them (core/api/protocol.py: same field order, bounds, strict types and messages), then turned
// into the body llama.cpp's server code takes. guard.js has already applied the size limits.
import { EdgeError } from "../errors.js";
import { LIMITS } from "../limits.js";

const MISSING = Symbol("missing");
// FastAPI validates the parsed JSON, where every object is a dict: pydantic's wording for those.
const NOT_AN_OBJECT = "Input should be a valid dictionary or object to extract fields from";

class Invalid extends Error {
  constructor(param, message) {
    super(message);
    this.param = param;
  }
}

function invalid(param, message) {
  return new Invalid(param, message);
}

// --- pydantic's strict scalars -----------------------------------------------------------------
// Core's request models are strict: no coercion from strings or booleans, same messages.

function int(value, param) {
  if (typeof value === "number" && Number.isInteger(value)) return value;
  throw invalid(param, "Input should be a valid integer");
}

function float(value, param) {
  if (typeof value === "number") return value;
  throw invalid(param, "Input should be a valid number");
}

function bool(value, param) {
  if (typeof value === "boolean") return value;
  throw invalid(param, "Input should be a valid boolean");
}

function str(value, param) {
  if (typeof value !== "string") throw invalid(param, "Input should be a valid string");
  return value;
}

function bounded(value, param, { ge, gt, le }) {
  if (ge !== undefined && !(value >= ge)) {
    throw invalid(param, `Input should be greater than or equal to ${ge}`);
  }
  if (gt !== undefined && !(value > gt)) throw invalid(param, `Input should be greater than ${gt}`);
  if (le !== undefined && !(value <= le)) {
    throw invalid(param, `Input should be less than or equal to ${le}`);
  }
  return value;
}

function isObject(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

function literal(value, param, choices) {
  if (!choices.includes(value)) {
    const quoted = choices.map((c) => `'${c}'`);
    const text = quoted.length === 1 ? quoted[0] : `${quoted.slice(0, -1).join(", ")} or ${quoted.at(-1)}`;
    throw invalid(param, `Input should be ${text}`);
  }
  return value;
}

// A field: MISSING (absent) takes the default; null is allowed only where the field is Optional.
// `at` is the path of the object that holds the field ("messages.0"), for nested fields.
function field(data, name, { alias, at, fallback, nullable, parse, required }) {
  let value = MISSING;
  let param = name;
  if (alias && alias in data) [value, param] = [data[alias], alias];
  else if (name in data) value = data[name];
  if (at) param = `${at}.${param}`;
  if (value === MISSING) {
    if (required) throw invalid(at ? `${at}.${name}` : (alias ?? name), "Field required");
    return fallback;
  }
  if (value === null && nullable) return null;
  return parse(value, param);
}

const number = (bounds) => (v, p) => bounded(float(v, p), p, bounds);
const integer = (bounds) => (v, p) => bounded(int(v, p), p, bounds);

// str | list[str], refused as core words it (the union member is not part of the name).
function stringOrList(value, param) {
  if (typeof value === "string") return value;
  if (Array.isArray(value)) {
    const bad = value.findIndex((item) => typeof item !== "string");
    if (bad === -1) return value;
    // Core names the deepest error of the union: the list item.
    throw invalid(`${param}.${bad}`, "Input should be a valid string");
  }
  throw invalid(param, "Input should be a valid string");
}

// --- fields core knows ---------------------------------------------------------------------------
// Core's models forbid unknown fields (core/api/protocol.py); pydantic reports them after every
// field's own error, in the order the body gives them. A field core accepts that the edge's model
// cannot honour (tools, logprobs, ...) is refused by name rather than ignored.

const SAMPLING_FIELDS = [
  "model", "max_tokens", "temperature", "top_p", "top_k", "min_p", "repeat_penalty",
  "presence_penalty", "frequency_penalty", "logit_bias", "seed", "stop", "n", "stream",
  "stream_options", "user",
];
const CORE_FIELDS = {
  chat: [
    ...SAMPLING_FIELDS, "messages", "max_completion_tokens", "response_format", "tools",
    "tool_choice", "parallel_tool_calls", "logprobs", "top_logprobs", "store", "modalities",
    "service_tier", "prompt_cache_key", "safety_identifier",
  ],
  completion: [...SAMPLING_FIELDS, "prompt", "echo", "logprobs", "best_of", "suffix", "response_format"],
  generate: ["prompt", "maxTokens", "temperature", "seed", "stream", "raw"],
  message: ["role", "content", "name", "tool_calls", "tool_call_id", "refusal"],
  stream_options: ["include_usage"],
  text_part: ["type", "text"],
};
// core/api/protocol.py's UNSUPPORTED: OpenAI parameters core refuses with a reason.
const CORE_UNSUPPORTED = {
  audio: "audio output is not supported",
  prediction: "predicted outputs are not supported",
  reasoning_effort: "reasoning models are not supported",
  verbosity: "verbosity is not supported",
  web_search_options: "web search is not supported",
  functions: "'functions' is deprecated and not supported: use 'tools'",
  function_call: "'function_call' is deprecated and not supported: use 'tool_choice'",
  metadata: "stored completions (and their metadata) are not supported",
  include_obfuscation: "stream obfuscation is not supported",
};

// Unknown fields of `data` (an object at path `at`), as core refuses them.
function refuseUnknown(data, kind, at, extra = []) {
  const known = new Set([...CORE_FIELDS[kind], ...extra]);
  for (const name of Object.keys(data)) {
    if (known.has(name)) continue;
    const param = at ? `${at}.${name}` : name;
    const reason = CORE_UNSUPPORTED[name];
    const message = reason
      ? `'${param}' is not supported: ${reason}`
      : `unrecognized request argument: '${param}'`;
    throw new EdgeError("invalid_parameter", message, { param });
  }
}

// Fields core honours that the edge's model does not: refused when set (null and false mean unset).
function refuseAtEdge(data, names, at) {
  if (!at && Number.isInteger(data.n) && data.n > 1) {
    throw new EdgeError("invalid_parameter", "'n' is not supported when the edge's model answers: one choice per request", {
      param: "n",
    });
  }
  for (const name of names) {
    const value = data[name];
    if (value === undefined || value === null || value === false) continue;
    const param = at ? `${at}.${name}` : name;
    throw new EdgeError("invalid_parameter", `'${param}' is not supported when the edge's model answers`, {
      param,
    });
  }
}

const EDGE_UNSUPPORTED = {
  chat: [
    "logit_bias", "tools", "tool_choice", "parallel_tool_calls", "logprobs", "top_logprobs",
    "store", "modalities", "service_tier", "prompt_cache_key", "safety_identifier",
  ],
  completion: ["logit_bias", "logprobs", "best_of", "suffix"],
  message: ["tool_calls", "tool_call_id", "refusal"],
};

// --- the request models -------------------------------------------------------------------------

function sampling(data) {
  const get = (name, spec) => field(data, name, spec);
  return {
    model: get("model", { fallback: null, nullable: true, parse: str }),
    max_tokens: get("max_tokens", {
      fallback: MISSING,
      nullable: true,
      parse: integer({ ge: 1 }),
    }),
    temperature: get("temperature", { fallback: 1.0, parse: number({ ge: 0, le: 2 }) }),
    top_p: get("top_p", { fallback: 1.0, parse: number({ gt: 0, le: 1 }) }),
    top_k: get("top_k", { fallback: 40, parse: integer({ ge: 0, le: 1000 }) }),
    min_p: get("min_p", { fallback: 0.05, parse: number({ ge: 0, le: 1 }) }),
    repeat_penalty: get("repeat_penalty", { fallback: 1.0, parse: number({ ge: 0, le: 10 }) }),
    presence_penalty: get("presence_penalty", { fallback: 0, parse: number({ ge: -2, le: 2 }) }),
    frequency_penalty: get("frequency_penalty", { fallback: 0, parse: number({ ge: -2, le: 2 }) }),
    seed: get("seed", { fallback: null, nullable: true, parse: integer({ ge: 0, le: 2 ** 32 - 2 }) }),
    stop: get("stop", { fallback: null, nullable: true, parse: stringOrList }),
    n: get("n", { fallback: 1, parse: integer({ ge: 1 }) }),
    stream: get("stream", { fallback: false, parse: bool }),
    stream_options: get("stream_options", {
      fallback: null,
      nullable: true,
      parse: (value, param) => {
        if (!isObject(value)) throw invalid(param, NOT_AN_OBJECT);
        const options = {
          include_usage: field(value, "include_usage", { at: param, fallback: false, parse: bool }),
        };
        refuseUnknown(value, "stream_options", param);
        return options;
      },
    }),
    user: get("user", { fallback: null, nullable: true, parse: str }),
  };
}

// A content part: only text, as core's TextPart (type, text; nothing else).
function textPart(part, at) {
  if (!isObject(part)) throw invalid(at, NOT_AN_OBJECT);
  field(part, "type", { at, required: true, parse: (v, p) => literal(v, p, ["text"]) });
  const text = field(part, "text", { at, required: true, parse: str });
  refuseUnknown(part, "text_part", at);
  return text;
}

const ROLES = ["system", "developer", "user", "assistant", "tool"];

function message(value, i) {
  const at = `messages.${i}`;
  if (!isObject(value)) throw invalid(at, NOT_AN_OBJECT);
  const role = field(value, "role", {
    at,
    required: true,
    parse: (v, p) => literal(v, p, ROLES),
  });
  const content = field(value, "content", {
    at,
    fallback: null,
    nullable: true,
    parse: (v) => {
      if (typeof v === "string") return v;
      if (!Array.isArray(v)) throw invalid(`${at}.content`, "Input should be a valid string");
      return v.map((part, i) => textPart(part, `${at}.content.${i}`)).join("");
    },
  });
  field(value, "name", { at, fallback: null, nullable: true, parse: str });
  return { role, content: content ?? "", raw: value, at };
}

function responseFormat(data) {
  return field(data, "response_format", {
    fallback: null,
    nullable: true,
    parse: (value, param) => {
      if (!isObject(value)) throw invalid(param, NOT_AN_OBJECT);
      const type = field(value, "type", {
        at: param,
        required: true,
        parse: (v, p) => literal(v, p, ["text", "json_object", "json_schema"]),
      });
      if (type !== "text") {
        // Core constrains output with a grammar; the edge's model does not, and says so.
        throw new EdgeError(
          "invalid_parameter",
          `response_format ${type} is not supported when the edge's model answers`,
          { param: "response_format" },
        );
      }
      return type;
    },
  });
}

function chat(data) {
  const fields = sampling(data);
  const messages = field(data, "messages", {
    required: true,
    parse: (value, param) => {
      if (!Array.isArray(value)) throw invalid(param, "Input should be a valid list");
      return value.map(message);
    },
  });
  const maxCompletion = field(data, "max_completion_tokens", {
    fallback: MISSING,
    nullable: true,
    parse: integer({ ge: 1 }),
  });
  responseFormat(data);
  for (const m of messages) refuseUnknown(m.raw, "message", m.at);
  refuseUnknown(data, "chat");
  refuseAtEdge(data, EDGE_UNSUPPORTED.chat);
  for (const m of messages) refuseAtEdge(m.raw, EDGE_UNSUPPORTED.message, m.at);
  // As core: max_completion_tokens wins when given.
  const given = maxCompletion !== MISSING && maxCompletion !== null;
  const param = given ? "max_completion_tokens" : "max_tokens";
  const input = { messages: messages.map(({ role, content }) => ({ role, content })) };
  return { fields, param, maxTokens: given ? maxCompletion : fields.max_tokens, input };
}

function completion(data) {
  const fields = sampling(data);
  let prompt = field(data, "prompt", { required: true, parse: stringOrList });
  if (Array.isArray(prompt)) {
    if (prompt.length !== 1) {
      throw new EdgeError("invalid_parameter", "exactly one prompt per request is supported", {
        param: "prompt",
      });
    }
    [prompt] = prompt;
  }
  const echo = field(data, "echo", { fallback: false, parse: bool });
  responseFormat(data);
  refuseUnknown(data, "completion");
  refuseAtEdge(data, EDGE_UNSUPPORTED.completion);
  // Absent: the schema's default of 16; an explicit null: the server-wide default, as in core.
  const maxTokens = fields.max_tokens === MISSING ? 16 : fields.max_tokens;
  return { fields, param: "max_tokens", maxTokens, explicit: maxTokens !== 16, input: { prompt }, echo };
}

function generate(data) {
  const get = (name, spec) => field(data, name, spec);
  const prompt = get("prompt", {
    required: true,
    parse: (v, p) => {
      const text = str(v, p);
      if (text.length === 0) throw invalid(p, "String should have at least 1 character");
      return text;
    },
  });
  const maxTokens = get("max_tokens", {
    alias: "maxTokens",
    fallback: MISSING,
    parse: integer({ ge: 1 }),
  });
  const temperature = get("temperature", { fallback: 0.7, parse: number({ ge: 0, le: 2 }) });
  const stream = get("stream", { fallback: false, parse: bool });
  const seed = get("seed", { fallback: null, nullable: true, parse: integer({ ge: 0, le: 2 ** 32 - 2 }) });
  const raw = get("raw", { fallback: false, parse: bool });
  // maxTokens may also be given by its field name, as in core; both at once: the name is extra.
  refuseUnknown(data, "generate", "", "maxTokens" in data ? [] : ["max_tokens"]);
  return {
    fields: { temperature, stream, stop: null, n: 1, seed },
    param: "maxTokens",
    maxTokens,
    input: raw ? { prompt } : { messages: [{ role: "user", content: prompt }] },
  };
}

const KINDS = {
  "/v1/chat/completions": { kind: "chat", parse: chat },
  "/v1/completions": { kind: "completion", parse: completion },
  "/api/generate": { kind: "generate", parse: generate },
};

export function answerable(pathname, method) {
  return method === "POST" && pathname in KINDS;
}

/**
 * The generation a request asks for, or an EdgeError in core's shape. `edgeMaxTokens` is the cap
 * that keeps one generation inside the Worker's CPU limit.
 */
export function parseRequest(pathname, data, edgeMaxTokens) {
  const { kind, parse } = KINDS[pathname];
  let request;
  try {
    request = parse(data);
  } catch (error) {
    if (!(error instanceof Invalid)) throw error;
    throw new EdgeError("invalid_request", `invalid request at '${error.param}': ${error.message}`, {
      param: error.param,
    });
  }
  const { fields, param } = request;
  const given = request.maxTokens !== MISSING && request.maxTokens !== null;
  let maxTokens = given ? request.maxTokens : LIMITS.max_tokens_default;
  if (maxTokens > LIMITS.max_tokens_cap) {
    throw new EdgeError("invalid_parameter", `${param} must be at most ${LIMITS.max_tokens_cap}`, {
      param,
    });
  }
  // A default is lowered to the edge's cap; a number the caller asked for is refused above it.
  if (given && (request.explicit ?? true) && maxTokens > edgeMaxTokens) {
    throw new EdgeError(
      "invalid_parameter",
      `${param} must be at most ${edgeMaxTokens} when the edge's model answers`,
      { param },
    );
  }
  maxTokens = Math.min(maxTokens, edgeMaxTokens);
  const stops = fields.stop === null ? [] : [fields.stop].flat().filter(Boolean);
  if (stops.length > LIMITS.max_stop_sequences) {
    throw new EdgeError(
      "invalid_parameter",
      `at most ${LIMITS.max_stop_sequences} stop sequences are allowed`,
      { param: "stop" },
    );
  }
  const isChat = "messages" in request.input;
  // Core's sampling defaults, sent explicitly so llama.cpp's own defaults never apply.
  const body = {
    ...request.input,
    max_tokens: maxTokens,
    temperature: fields.temperature,
    top_p: fields.top_p ?? 1.0,
    top_k: fields.top_k ?? 40,
    min_p: fields.min_p ?? 0.05,
    repeat_penalty: fields.repeat_penalty ?? 1.0,
    presence_penalty: fields.presence_penalty ?? 0,
    frequency_penalty: fields.frequency_penalty ?? 0,
    stop: stops,
    stream: true,
    stream_options: { include_usage: true },
    cache_prompt: true,
  };
  if (fields.seed !== null && fields.seed !== undefined) body.seed = fields.seed;
  return {
    kind,
    isChat,
    body,
    stream: fields.stream,
    includeUsage: Boolean(fields.stream_options?.include_usage),
    echo: request.echo && typeof request.input.prompt === "string" ? request.input.prompt : "",
  };
}
