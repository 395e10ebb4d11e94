/**
 * The host's time per dispatch of a warm webgpu train step: the bench's front-door step on one
 * group of 8 rows (tests/runtime/engine/_front_door.ts), counted by `countWebgpu` step after step,
 * as quartiles over the steps. Host time = wall − time inside `queue.submit` − time waiting on
 * the read, so on lavapipe (whose kernels run after the step's one submit) it is the recording
 * alone: tfjs's JavaScript, giftwrap's kernels and Deno's WebGPU calls, 152 dispatches a step there.
 *
 *   deno run -A bench/webgpu_host.ts [steps = 80] [warm-up steps = 400]
 *
 * Warm means after V8 has compiled the step's JavaScript with its optimising tier, which takes
 * hundreds of steps: the recording's median time over 50 steps went from about 6.5 ms at the
 * start of a run to about 4.0–4.4 ms from step 500 on (152 dispatches: 43 → 26–29 µs each). A
 * training run's steps are the warm ones; 8 warm-up steps, as before, settle the caches alone.
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
const warmUp = Number(Deno.args[1] ?? 400);
for (const [what, value, least] of [["steps", steps, 1], ["warm-up steps", warmUp, 0]] as const) {
  if (!Number.isInteger(value) || value < least) {
    console.error(
      `bench/webgpu_host.ts: ${what} must be an integer of at least ${least}: current value is ${value}`,
    );
    Deno.exit(2);
  }
}
const { state } = await setup(frontDoorGroup());
for (let i = 0; i < warmUp; i++) await train(state); // caches settled, V8's optimising tier on
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
  `host µs per dispatch over ${steps} steps of ${dispatches} dispatches, after ${warmUp}: ` +
    `p25 ${q(0.25)}, median ${q(0.5)}, p75 ${q(0.75)}`,
);
