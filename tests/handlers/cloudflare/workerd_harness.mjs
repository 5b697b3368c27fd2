// Runs the bundled edge worker in real workerd through Miniflare, one instance per configuration,
// each on its own loopback port. Reads {packageJson, script, compatibilityDate,
// compatibilityFlags, instances: {name: bindings}} as JSON on the first line of stdin, prints
// "EDGE-URLS {name: url}" as one line when all are listening, and shuts down when stdin closes.
import { createRequire } from "node:module";
import { dirname } from "node:path";
import { createInterface } from "node:readline";

const lines = createInterface({ input: process.stdin });
const iterator = lines[Symbol.asyncIterator]();
const spec = JSON.parse((await iterator.next()).value);
const { Miniflare, Log, LogLevel } = createRequire(spec.packageJson)("miniflare");

const instances = await Promise.all(
  Object.entries(spec.instances).map(async ([name, bindings]) => {
    const mf = new Miniflare({
      modules: true,
      scriptPath: spec.script,
      modulesRoot: dirname(spec.script), // module names must not climb out of the root
      compatibilityDate: spec.compatibilityDate,
      compatibilityFlags: spec.compatibilityFlags ?? [],
      bindings,
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
