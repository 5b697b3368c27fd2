// Measures the edge's own model in real workerd (Miniflare, local R2): the workerd process's
// memory (resident, peak) and the isolate's wasm heap, the first request's load, and the CPU time
// per prompt token and per generated token, read from the workerd process's own CPU counters
// (what the Worker CPU limit counts, and less sensitive to a busy machine than wall time). From
// those it derives how many tokens fit one request's CPU limit. Prints one JSON object.
//
//   node deploy/cloudflare/measure_edge.mjs --model PATH.gguf [--wasm wllama|nimbus]
//        [--context 512] [--cpu-ms 30000] [--decode 64]
//
// Run `make install` first (wrangler, Miniflare, the vendored wasm); one model load, ~1 minute.
import { execFileSync } from "node:child_process";
import { createReadStream, mkdtempSync, readdirSync, readFileSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { Readable } from "node:stream";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = join(HERE, "..", "..");
const { Miniflare, Log, LogLevel } = createRequire(join(HERE, "package.json"))("miniflare");

const { values: args } = parseArgs({
  options: {
    model: { type: "string" },
    wasm: { type: "string", default: "wllama" },
    context: { type: "string", default: "512" },
    "cpu-ms": { type: "string", default: "30000" },
    decode: { type: "string", default: "64" },
  },
});
if (!args.model) throw new Error("--model PATH.gguf is required");
const CPU_MS = Number(args["cpu-ms"]);
const TICK_MS = 1000 / Number(execFileSync("getconf", ["CLK_TCK"]).toString().trim());

// --- the workerd process Miniflare started ----------------------------------------------------

function children(pid) {
  const out = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(fields[1]) === pid) out.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

function workerdPid() {
  const found = children(process.pid).filter((pid) => {
    try {
      return readFileSync(`/proc/${pid}/comm`, "utf8").trim() === "workerd";
    } catch {
      return false;
    }
  });
  if (found.length !== 1) throw new Error(`expected one workerd child, found ${found.length}`);
  return found[0];
}

function memory(pid) {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (name) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(status)[1]);
  return { rss_bytes: kb("VmRSS") * 1024, peak_rss_bytes: kb("VmHWM") * 1024 };
}

function cpuMs(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) * TICK_MS; // utime + stime
}

// --- the worker -----------------------------------------------------------------------------

const work = mkdtempSync(join(tmpdir(), "nimbus-edge-measure-"));
execFileSync("bash", [join(HERE, "deploy.sh"), "--dry-run", join(work, "bundle")], {
  stdio: ["ignore", "ignore", "inherit"],
  env: { ...process.env, WRANGLER_SEND_METRICS: "false", XDG_CONFIG_HOME: join(work, "config") },
});
const script = join(work, "bundle", "worker.js");
const toml = readFileSync(join(ROOT, "handlers", "cloudflare", "wrangler.toml"), "utf8");
const compatibilityDate = /^compatibility_date = "(.+)"/m.exec(toml)[1];
const compatibilityFlags = JSON.parse(/^compatibility_flags = (\[.*\])/m.exec(toml)[1]);
const persist = join(work, "r2");

const seeder = new Miniflare({
  modules: true,
  script: `export default { async fetch(request, env) {
    await env.BUCKET.put("model.gguf", request.body);
    return new Response("stored");
  } };`,
  compatibilityDate,
  r2Buckets: { BUCKET: "models" },
  r2Persist: persist,
  log: new Log(LogLevel.WARN),
  cf: false,
});
await seeder.dispatchFetch("http://seed/", {
  method: "PUT",
  body: Readable.toWeb(createReadStream(args.model)),
  headers: { "content-length": String(statSync(args.model).size) },
  duplex: "half",
});
await seeder.dispose();

const mf = new Miniflare({
  modules: true,
  scriptPath: script,
  modulesRoot: dirname(script),
  modulesRules: [{ type: "CompiledWasm", include: ["**/*.wasm"] }],
  compatibilityDate,
  compatibilityFlags,
  bindings: {
    INFERENCE_ORIGIN: "",
    ALLOW_ANONYMOUS: "true",
    EDGE_MODE: "always",
    EDGE_WASM: args.wasm,
    EDGE_MODEL_KEY: "model.gguf",
    EDGE_CONTEXT_TOKENS: args.context,
    EDGE_MAX_TOKENS: String(Number(args.context) - 64),
    EDGE_LOG: "info",
  },
  r2Buckets: { MODEL_BUCKET: "models" },
  r2Persist: persist,
  host: "127.0.0.1",
  port: 0,
  log: new Log(LogLevel.WARN),
  cf: false,
});
const base = (await mf.ready).origin;
const pid = workerdPid();

async function timed(path, body) {
  const before = cpuMs(pid);
  const started = performance.now();
  const response = await fetch(base + path, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ ...body, stream: true, stream_options: { include_usage: true } }),
  });
  if (response.status !== 200) throw new Error(`${path}: ${response.status} ${await response.text()}`);
  const arrivals = [];
  let usage = null;
  const decoder = new TextDecoder();
  let buffered = "";
  for await (const chunk of response.body) {
    buffered += decoder.decode(chunk, { stream: true });
    const events = buffered.split("\n\n");
    buffered = events.pop();
    for (const event of events) {
      const data = event.replace(/^data: /, "");
      if (data === "[DONE]") continue;
      const parsed = JSON.parse(data);
      if (parsed.usage) usage = parsed.usage;
      else if (parsed.choices?.[0]?.text || parsed.choices?.[0]?.delta?.content) {
        arrivals.push(performance.now());
      }
    }
  }
  return {
    cpu_ms: cpuMs(pid) - before,
    wall_ms: performance.now() - started,
    first_token_ms: arrivals[0] - started,
    arrivals,
    usage,
  };
}

async function health() {
  return (await (await fetch(`${base}/api/health`)).json()).edge.model;
}

const idle = memory(pid);
// 1. The first request: R2 read, wasm start, model load, then a one-token answer.
const first = await timed("/v1/completions", { prompt: "Hello", max_tokens: 1, temperature: 0 });
const loaded = await health();
// 2. Prompt evaluation: a long prompt, one token out.
const passage = "The quick brown fox jumps over the lazy dog. ".repeat(24);
const prefill = await timed("/v1/completions", { prompt: passage, max_tokens: 1, temperature: 0 });
// 3. Generation: a short prompt, many tokens (ignore_eos is not offered; a counting prompt runs on).
const decodeTokens = Number(args.decode);
const decode = await timed("/v1/completions", {
  prompt: "1, 2, 3, 4, 5, 6, 7, 8, 9, 10,",
  max_tokens: decodeTokens,
  temperature: 0,
});
const after = memory(pid);
const final = await health();
await mf.dispose();

const promptMs = prefill.cpu_ms / prefill.usage.prompt_tokens;
// Per generated token: the CPU of the generation run, less its (short) prompt at the prompt rate.
const generated = decode.usage.completion_tokens;
const tokenMs = (decode.cpu_ms - decode.usage.prompt_tokens * promptMs) / generated;
const wallTokS = (generated - 1) / ((decode.arrivals.at(-1) - decode.arrivals[0]) / 1000);
const loadCpuMs = first.cpu_ms;
const budget = CPU_MS - loadCpuMs;
// Every token of a request, prompt or answer, costs about the same CPU here. The context (prompt
// plus answer) is sized so that even the first request, which also loads the model, stays within
// 85% of the limit; half of it is the most an answer may ask for.
const perToken = Math.max(promptMs, tokenMs);
const contextTokens = Math.floor((budget * 0.85) / perToken / 16) * 16;
console.log(
  JSON.stringify(
    {
      wasm: args.wasm,
      model: { file: args.model.split("/").at(-1), bytes: statSync(args.model).size },
      context_tokens: Number(args.context),
      memory: {
        workerd_idle_rss_bytes: idle.rss_bytes,
        workerd_rss_bytes: after.rss_bytes,
        workerd_peak_rss_bytes: after.peak_rss_bytes,
        model_delta_rss_bytes: after.rss_bytes - idle.rss_bytes,
        wasm_heap_bytes: final.heap_bytes,
        wasm_heap_used_bytes: final.heap_used_bytes ?? null,
        wasm_heap_live_bytes: final.heap_live_bytes ?? null,
      },
      load: { first_request_wall_ms: first.wall_ms, first_request_cpu_ms: loadCpuMs, ...loaded },
      prompt: { tokens: prefill.usage.prompt_tokens, cpu_ms: prefill.cpu_ms, cpu_ms_per_token: promptMs },
      generation: {
        tokens: generated,
        cpu_ms: decode.cpu_ms,
        cpu_ms_per_token: tokenMs,
        wall_tokens_per_s: wallTokS,
        cpu_tokens_per_s: 1000 / tokenMs,
      },
      cpu_limit: {
        cpu_ms: CPU_MS,
        // The first request also pays the load; every later one has the whole limit.
        generated_tokens_first_request: Math.floor(budget / tokenMs),
        generated_tokens_per_request: Math.floor(CPU_MS / tokenMs),
        prompt_tokens_per_request: Math.floor(CPU_MS / promptMs),
      },
      derived: { EDGE_CONTEXT_TOKENS: contextTokens, EDGE_MAX_TOKENS: Math.floor(contextTokens / 2) },
    },
    null,
    2,
  ),
);
process.exit(0);
