/**
 * Where a webgpu train step's kernel time goes, by program: one warm step of a bench configuration
 * (`bench/_configs.ts`, the front door by default) with every dispatch in its own compute pass and
 * a timestamp at each end (tfjs's timer path, `activeTimers`), summed by program name. `bench/profile.ts` sees tfjs's
 * kernels by name but giftwrap's WGSL programs only as "unnamed scope"; here each has its name.
 * Timing each pass apart adds to the step, so compare shares, not the total, with the bench.
 *
 *   XDG_RUNTIME_DIR=/tmp deno run -A bench/webgpu_programs.ts [--config front-door] [--top 30]
 *
 * Needs an adapter with `timestamp-query` (lavapipe has it).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { setup, train } from "./_giftwrap_worker.ts";
import { benchConfig, CONFIG_NAMES, type ConfigName } from "./_configs.ts";
import { tf } from "../runtime/engine/tf.ts";

/** What this script reads and patches of tfjs-backend-webgpu 4.22's backend. */
interface TimedBackend {
  activeTimers: unknown[] | null;
  supportTimestampQuery: boolean;
  runWebGPUProgram(program: { shaderKey?: string }, ...rest: unknown[]): unknown;
  getQueryTime(): Promise<number>;
}

const { values } = parseArgs({
  options: {
    config: { type: "string", default: "front-door" },
    top: { type: "string", default: "30" },
  },
});
const config = values.config as ConfigName;
const top = Number(values.top);
if (!CONFIG_NAMES.includes(config) || !Number.isInteger(top) || top < 1) {
  console.error(
    `bench/webgpu_programs.ts: --config must be one of ${CONFIG_NAMES.join(", ")} and --top a ` +
      `positive integer: current values are ${values.config} and ${values.top}`,
  );
  Deno.exit(2);
}
const { state } = await setup({ ...benchConfig(config).setup, backend: "webgpu" });
for (let i = 0; i < 3; i++) await train(state); // compiled and settled
const backend = tf.backend() as unknown as TimedBackend;
if (!backend.supportTimestampQuery) {
  console.error("bench/webgpu_programs.ts: the adapter has no timestamp-query feature");
  Deno.exit(2);
}
let current = "";
const run = backend.runWebGPUProgram.bind(backend);
backend.runWebGPUProgram = (program, ...rest) => {
  current = program.shaderKey ?? "";
  return run(program, ...rest);
};
const queryTime = backend.getQueryTime.bind(backend);
const times: Promise<[string, number]>[] = [];
backend.getQueryTime = () => {
  const name = current;
  const time = queryTime();
  times.push(time.then((ms) => [name, ms]));
  return time;
};
backend.activeTimers = []; // every dispatch timed, inside kernels or not
await train(state);
backend.activeTimers = null;
const byName = new Map<string, { ms: number; count: number }>();
for (const [key, ms] of await Promise.all(times)) {
  // the key's shapes and dtypes after the program's name
  const name = key.replace(/_bitcast.*$/, "").replace(/_[0-9][0-9,_]*[a-z].*$/i, "")
    .replace(/_[0-9,_]+$/, "");
  const entry = byName.get(name) ?? { ms: 0, count: 0 };
  entry.ms += ms;
  entry.count++;
  byName.set(name, entry);
}
const rows = [...byName].sort((a, b) => b[1].ms - a[1].ms);
const total = rows.reduce((sum, [, e]) => sum + e.ms, 0);
console.log(
  `${config} train step: ${total.toFixed(1)} ms of kernel time in ${times.length} passes`,
);
console.log("| program | ms | share | dispatches |\n|---|--:|--:|--:|");
for (const [name, { ms, count }] of rows.slice(0, top)) {
  console.log(`| ${name} | ${ms.toFixed(1)} | ${(100 * ms / total).toFixed(0)}% | ${count} |`);
}
