/**
 * The entry point bench/gpu.sh bundles into one file (`.gpu/giftwrap-bench.js`, with tfjs and
 * every npm package inside) for a GPU machine without network: run with the bench's flags it is
 * bench/bench.ts (appending to bench/RESULTS.md beside `.gpu/`); with `--profile` first,
 * bench/profile.ts; with `--giftwrap-worker`, giftwrap's worker, which both start from this file.
 *
 *   deno bundle --platform deno -o .gpu/giftwrap-bench.js bench/gpu.ts   # bench/gpu.sh pack
 *   deno run -A .gpu/giftwrap-bench.js --backends webgpu --torch-device cuda --python python3
 *
 * @module
 */

import { workerMain } from "./_giftwrap_worker.ts";
import { benchMain } from "./bench.ts";
import { profileMain } from "./profile.ts";

const WORKER_FLAG = "--giftwrap-worker";
const PROFILE_FLAG = "--profile";

const self = new URL(import.meta.url).pathname;
if (Deno.args[0] === WORKER_FLAG) {
  await workerMain();
} else if (Deno.args[0] === PROFILE_FLAG) {
  await profileMain(Deno.args.slice(1), [self, WORKER_FLAG]);
} else {
  const results = new URL("../bench/RESULTS.md", import.meta.url); // the bundle is in .gpu/
  await benchMain(Deno.args, [self, WORKER_FLAG], "bench/gpu.sh", results);
}
