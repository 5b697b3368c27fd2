// Runs the bundled edge worker in real workerd through Miniflare, one instance per configuration,
// each on its own loopback port. Reads {packageJson, script, compatibilityDate,
// compatibilityFlags, r2: {persist, bucket, binding, objects: {key: path}}, instances: {name:
// bindings}} as JSON on the first line of stdin, prints "EDGE-URLS {name: url}" as one line when
// all are listening, and shuts down when stdin closes. The R2 bucket is Miniflare's local one on
// disk: a small worker writes the objects into it once, then every instance reads it.
import { createReadStream, statSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname } from "node:path";
import { createInterface } from "node:readline";
import { Readable } from "node:stream";

const lines = createInterface({ input: process.stdin });
const iterator = lines[Symbol.asyncIterator]();
const spec = JSON.parse((await iterator.next()).value);
const { Miniflare, Log, LogLevel } = createRequire(spec.packageJson)("miniflare");
const r2 = spec.r2 ?? null;
const buckets = r2 ? { [r2.binding]: r2.bucket } : {};

const SEED = `export default {
  async fetch(request, env) {
    const key = decodeURIComponent(new URL(request.url).pathname.slice(1));
    await env.BUCKET.put(key, request.body);
    return new Response("stored");
  },
};`;

async function seed() {
  const mf = new Miniflare({
    modules: true,
    script: SEED,
    compatibilityDate: spec.compatibilityDate,
    r2Buckets: { BUCKET: r2.bucket },
    r2Persist: r2.persist,
    log: new Log(LogLevel.WARN),
    cf: false,
  });
  try {
    for (const [key, path] of Object.entries(r2.objects)) {
      const response = await mf.dispatchFetch(`http://seed/${encodeURIComponent(key)}`, {
        method: "PUT",
        body: Readable.toWeb(createReadStream(path)),
        headers: { "content-length": String(statSync(path).size) },
        duplex: "half",
      });
      if (response.status !== 200) throw new Error(`seeding ${key}: ${await response.text()}`);
    }
  } finally {
    await mf.dispose();
  }
}

if (r2) await seed();

const instances = await Promise.all(
  Object.entries(spec.instances).map(async ([name, bindings]) => {
    const mf = new Miniflare({
      modules: true,
      scriptPath: spec.script,
      modulesRoot: dirname(spec.script), // module names must not climb out of the root
      // wrangler's own default rule: the bundle imports the .wasm as a compiled module.
      modulesRules: [{ type: "CompiledWasm", include: ["**/*.wasm"] }],
      compatibilityDate: spec.compatibilityDate,
      compatibilityFlags: spec.compatibilityFlags ?? [],
      bindings,
      r2Buckets: buckets,
      ...(r2 ? { r2Persist: r2.persist } : {}),
      host: "127.0.0.1",
      port: 0,
      log: new Log(LogLevel.WARN),
      cf: false, // offline: no fetch of the Request.cf placeholder from the network
    });
    const url = await mf.ready;
    return [name, mf, url.origin];
  }),
);
process.stdout.write("EDGE-URLS " + JSON.stringify(Object.fromEntries(instances.map(([n, , u]) => [n, u]))) + "\n");

for await (const _ of iterator); // until stdin closes
await Promise.all(instances.map(([, mf]) => mf.dispose()));
process.exit(0);
