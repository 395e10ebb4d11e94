/**
 * The entry point bench/gpu.sh bundles into one file (`.gpu/giftwrap-bench.js`, with tfjs and
 * every npm package inside) for a GPU machine without network: run with the bench's flags it is
 * bench/bench.ts; run with `--giftwrap-worker` it is giftwrap's worker, which the bench starts from
 * this same file.
 *
 *   deno bundle --platform deno -o .gpu/giftwrap-bench.js bench/gpu.ts   # bench/gpu.sh pack
 *   deno run -A .gpu/giftwrap-bench.js --backends webgpu --torch-device cuda --python python3
 *
 * @module
 */

import { workerMain } from "./_giftwrap_worker.ts";
import { benchMain } from "./bench.ts";

const WORKER_FLAG = "--giftwrap-worker";

if (Deno.args[0] === WORKER_FLAG) {
  await workerMain();
} else {
  const self = new URL(import.meta.url).pathname;
  await benchMain(Deno.args, [self, WORKER_FLAG], "bench/gpu.sh");
}
