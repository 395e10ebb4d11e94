/**
 * The host's time per dispatch of a warm webgpu train step: the bench's front-door step on one
 * group of 8 rows (tests/runtime/engine/_front_door.ts), counted by `countWebgpu` step after step,
 * as quartiles over the steps. Host time = wall − time inside `queue.submit` − time waiting on
 * the read, so on lavapipe (whose kernels run after the step's one submit) it is the recording
 * alone: tfjs's JavaScript, giftwrap's kernels and Deno's WebGPU calls, 180 dispatches a step.
 *
 *   deno run -A bench/webgpu_host.ts [steps = 80]
 *
 * The bench's counts table (`deno task bench --backends webgpu`) gives the same figure for the
 * full 128-row step, where the time a step waits on lavapipe's threads is larger and noisier.
 *
 * @module
 */

import { setup, train } from "./_giftwrap_worker.ts";
import { disposeState, frontDoorGroup } from "../tests/runtime/engine/_front_door.ts";
import { countWebgpu } from "../runtime/engine/webgpu_counters.ts";

const steps = Number(Deno.args[0] ?? 80);
if (!Number.isInteger(steps) || steps < 1) {
  console.error(
    `bench/webgpu_host.ts: steps must be a positive integer: current value is ${Deno.args[0]}`,
  );
  Deno.exit(2);
}
const { state } = await setup(frontDoorGroup());
for (let i = 0; i < 8; i++) await train(state); // until the caches have settled
const perDispatch: number[] = [];
let dispatches = 0;
for (let i = 0; i < steps; i++) {
  const { counts } = await countWebgpu(() => train(state));
  perDispatch.push(counts.hostUsPerDispatch!);
  dispatches = counts.dispatches;
}
disposeState(state);
perDispatch.sort((a, b) => a - b);
const q = (f: number) => perDispatch[Math.floor(f * (perDispatch.length - 1))]!.toFixed(1);
console.log(
  `host µs per dispatch over ${steps} steps of ${dispatches} dispatches: ` +
    `p25 ${q(0.25)}, median ${q(0.5)}, p75 ${q(0.75)}`,
);
