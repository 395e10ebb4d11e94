/**
 * The WebGPU counters (runtime/engine/webgpu_counters.ts), an optional group like webgpu_test.ts:
 * it runs where WebGPU offers an adapter (lavapipe on a machine without a GPU) and is skipped
 * elsewhere. A hand-made sequence is counted call by call; counting changes no result; and one
 * train step of the bench's front-door model is held to the counts measured today, so that a change
 * adding dispatches, uploads or reads to it fails here.
 *
 * @module
 */

import assert from "node:assert/strict";
import { tf, useBackend } from "../../../runtime/engine/backend.ts";
import { deviceConstantCount } from "../../../runtime/engine/kernels/constants.ts";
import {
  countWebgpu,
  installWebgpuCounters,
  resetWebgpuCounters,
  uninstallWebgpuCounters,
  webgpuCounters,
  webgpuCountersInstalled,
  type WebgpuCounts,
} from "../../../runtime/engine/webgpu_counters.ts";
import { counted, setup, train } from "../../../bench/_giftwrap_worker.ts";
import { CPU_ADAPTER, needsWebgpu } from "../_webgpu.ts";
import { disposeState, frontDoorGroup } from "./_front_door.ts";

/** The counts, less the times (which vary run to run). */
function calls(counts: WebgpuCounts): Omit<WebgpuCounts, `${string}Ms` | "hostUsPerDispatch"> {
  const { wallMs: _w, submitMs: _s, waitMs: _r, hostUsPerDispatch: _h, ...rest } = counts;
  return rest;
}

/** x + y of two 2,000-element tensors made on the CPU, read back (above tfjs's CPU hand-off). */
async function addTwo(): Promise<Float32Array> {
  const n = 2000; // tfjs runs kernels on inputs still on the CPU there below 1,000 elements
  const x = tf.tensor1d(Array.from({ length: n }, (_, i) => i / 7));
  const y = tf.tensor1d(Array.from({ length: n }, (_, i) => Math.sqrt(i)));
  const sum = tf.add(x, y);
  const values = await sum.data() as Float32Array;
  tf.dispose([x, y, sum]);
  return values;
}

Deno.test({
  ...needsWebgpu("countWebgpu() counts x + y read back: 2 uploads, 1 dispatch, 1 submit, 1 read"),
  async fn() {
    // tfjs's own dispatch first: a uniform buffer written and a bind group made for the add
    await useBackend("webgpu", { webgpuDispatch: false });
    await addTwo(); // compiles the add kernel and fills tfjs's buffer pool
    const { result, counts } = await countWebgpu(addTwo);
    assert.equal(result[10], Math.fround(Math.fround(10 / 7) + Math.fround(Math.sqrt(10))));
    assert.deepEqual(calls(counts), {
      dispatches: 1, // the add
      computePasses: 1,
      submits: 1, // before the read
      uploads: 2, // x and y, each into a staging buffer (the pool hands back used buffers)
      scalarUploads: 0,
      uploadBytes: 2 * 2000 * 4,
      uniformWrites: 1, // the add's shapes
      uniformBytes: 36, // NaN, Infinity, 3 shapes of rank 1 and their strides (1 each): 9 × 4
      reads: 1,
      readBytes: 2000 * 4,
      workDoneWaits: 0,
      copies: 3, // 2 staging buffers to x's and y's, the sum to the read's staging buffer
      bindGroups: 1,
      pipelines: 0, // compiled by the first call
      buffers: 2, // the 2 upload staging buffers, never pooled
      bufferBytes: 2 * 2000 * 4,
    });
    assert.ok(counts.waitMs > 0 && counts.waitMs <= counts.wallMs);
    assert.ok(counts.submitMs >= 0 && counts.submitMs + counts.waitMs <= counts.wallMs);
    const host = counts.wallMs - counts.submitMs - counts.waitMs;
    assert.ok(Math.abs(counts.hostUsPerDispatch! - host * 1000) < 1e-6);
    // with the dispatch caches (webgpu_dispatch.ts), once warm: the uniforms and the bind group
    // of the first call are found again
    await useBackend("webgpu");
    await addTwo();
    await addTwo();
    const cached = await countWebgpu(addTwo);
    assert.deepEqual(cached.result, result);
    assert.deepEqual(calls(cached.counts), {
      ...calls(counts),
      uniformWrites: 0,
      uniformBytes: 0,
      bindGroups: 0,
    });
  },
});

Deno.test({
  ...needsWebgpu("countWebgpu() counts a tf.scalar as a scalar upload of 4 bytes"),
  async fn() {
    await useBackend("webgpu");
    const x = tf.ones([2000]);
    await x.data(); // on the GPU before counting
    const run = async () => {
      const two = tf.scalar(2);
      const y = tf.mul(x, two);
      const values = await y.data();
      tf.dispose([two, y]);
      return values[0];
    };
    await run();
    const { result, counts } = await countWebgpu(run);
    x.dispose();
    assert.equal(result, 2);
    assert.equal(counts.uploads, 1);
    assert.equal(counts.scalarUploads, 1);
    assert.equal(counts.uploadBytes, 4);
    assert.equal(counts.dispatches, 1);
    assert.equal(counts.reads, 1);
  },
});

Deno.test({
  ...needsWebgpu(
    "webgpuCounters() totals since resetWebgpuCounters(); countWebgpu() nests in them",
  ),
  async fn() {
    await useBackend("webgpu");
    installWebgpuCounters();
    assert.ok(webgpuCountersInstalled());
    await addTwo();
    resetWebgpuCounters();
    assert.equal(webgpuCounters().dispatches, 0);
    await addTwo();
    const { counts } = await countWebgpu(addTwo);
    const total = webgpuCounters();
    assert.equal(counts.dispatches, 1);
    assert.equal(total.dispatches, 2);
    assert.equal(total.reads, 2);
    assert.equal(total.uploads, 4);
    assert.ok(total.wallMs >= counts.wallMs);
    uninstallWebgpuCounters();
    assert.ok(!webgpuCountersInstalled());
    await addTwo(); // uncounted: the totals stay
    assert.equal(webgpuCounters().dispatches, 0); // not installed: all zero
  },
});

Deno.test({
  ...needsWebgpu("countWebgpu() changes no result: 2 front-door train steps counted and not"),
  async fn() {
    const steps = async (count: boolean) => {
      if (!count) uninstallWebgpuCounters();
      const { state } = await setup(frontDoorGroup());
      const out: number[] = [];
      for (let i = 0; i < 2; i++) {
        const step = count ? (await countWebgpu(() => train(state))).result : await train(state);
        out.push(step.loss as number, step.gradNorm as number);
      }
      out.push(...await state.params["model.embed_tokens.weight"]!.data());
      disposeState(state);
      return out;
    };
    // the device caches (kernels/constants.ts) keep their tensors from one step to the next
    const live = () => tf.memory().numTensors - deviceConstantCount();
    const before = live();
    const plain = await steps(false);
    const counted = await steps(true);
    assert.ok(webgpuCountersInstalled());
    assert.deepEqual(counted, plain);
    assert.equal(live(), before);
  },
});

/**
 * One warm front-door train step (`frontDoorGroup()`), as counted on 2026-12-04 on lavapipe (Deno
 * 2.9.6, tfjs 4.22): upper bounds, so that a change that adds uploads, reads, dispatches or submits
 * fails. Lower them when a change removes some. Constants, tables and gradients stay on the device
 * (kernels/constants.ts, kernels/gradients.ts), the webgpu kernel set runs fused WGSL programs
 * (kernels/webgpu.ts; the embedding's gradient one, six of tfjs's before), AdamW runs on the device
 * path (optim.ts, `DeviceUpdates`; kernels/adamw_webgpu.ts, one dispatch a parameter writing p, m
 * and v in place, its bind group kept while the buffers it binds are the same; the gradient norm in
 * ⌈n / 7⌉ + 1 dispatches, kernels/norm_webgpu.ts; the update's checks and values in one dispatch
 * and the schedule's row in another), GIFT's loss and its three metrics in one dispatch each and
 * its gradient in one (rl/objectives/gift_webgpu.ts: 31 of tfjs's kernels before), the KL
 * diagnostic in one (rl/kl_webgpu.ts), and uniforms, bind groups and submits are cached and batched
 * (webgpu_dispatch.ts). The uploads left are the batch's own (its input ids and targets): AdamW's
 * learning rate and bias corrections come from a table uploaded once per 1,024 updates and its
 * clipping scale is computed on the device. The one read is the step's loss and gradient norm,
 * after the update.
 *
 * On a CPU adapter the backward pass's products read their transposed side as it lies
 * (kernels/matmul_webgpu.ts, the tile program): 28 transposed copies fewer than on a GPU.
 *
 * Before this work the step dispatched 825 kernels in 271 passes and 57 submits, made a bind group
 * and wrote a uniform buffer for each, uploaded 240 times (223 scalars) and read 3 times.
 */
const TRAIN_STEP_AT_MOST = {
  dispatches: CPU_ADAPTER ? 152 : 180,
  computePasses: 2,
  submits: 1,
  uploads: 2,
  scalarUploads: 0,
  uploadBytes: 448,
  reads: 1,
  bindGroups: 0,
  uniformWrites: 0,
  pipelines: 0,
  buffers: 2,
};

/**
 * Warm-up steps allowed before a front-door step repeats itself. The bind groups found again
 * depend on which pool buffers each tensor gets, which settles over the first steps (12 on
 * lavapipe in a fresh process, more after other tests left the pool fuller; webgpu_dispatch.ts)
 * as the parameters and the optimiser's moments find their buffers.
 */
const WARM_UP_AT_MOST = 30;

Deno.test({
  ...needsWebgpu(
    "countWebgpu(): a warm front-door train step's counts, the same twice, at most today's",
  ),
  async fn() {
    const { state } = await setup(frontDoorGroup());
    try {
      // 1) warm-up: the first step compiles its kernels, the next fill the buffer pool and the
      // dispatch caches, until three steps in a row create no bind group and write no uniform
      // (the first steps of a new model may repeat buffers an earlier model's steps had, and
      // find their bind groups, before going their own way: at least 4 steps)
      let [warm, settled] = [0, 0];
      for (; warm < WARM_UP_AT_MOST && (warm < 4 || settled < 3); warm++) {
        const { counts } = await countWebgpu(() => train(state));
        settled = counts.bindGroups === 0 && counts.uniformWrites === 0 ? settled + 1 : 0;
      }
      // (all of the first 4 may already be settled: `settled` counts the run that ends the loop)
      assert.ok(settled >= 3, `still creating bind groups after ${warm} steps`);
      // 2) two counted steps: the same calls each time
      const first = (await countWebgpu(() => train(state))).counts;
      const second = (await countWebgpu(() => train(state))).counts;
      assert.deepEqual(calls(second), calls(first), "the counts differ from one step to the next");
      // 3) at most today's
      for (const [field, most] of Object.entries(TRAIN_STEP_AT_MOST)) {
        const value = first[field as keyof typeof TRAIN_STEP_AT_MOST];
        assert.ok(value <= most, `${field}: ${value} > ${most}, the count of 2026-12-04`);
      }
      assert.ok(first.dispatches > 0 && first.hostUsPerDispatch! > 0);
    } finally {
      disposeState(state);
    }
  },
});

Deno.test({
  ...needsWebgpu("the bench worker's counts: train steps until one settles, that one's counts"),
  async fn() {
    const { state } = await setup(frontDoorGroup());
    try {
      // a fresh model: its first step compiles kernels and makes bind groups, so it is not the one
      const answer = await counted(state, "train", WARM_UP_AT_MOST);
      const counts = answer.counts as WebgpuCounts;
      assert.equal(answer.settled, true, `not settled after ${answer.warmUp} steps`);
      assert.ok((answer.warmUp as number) >= 1 && (answer.warmUp as number) < WARM_UP_AT_MOST);
      assert.equal(counts.bindGroups, 0);
      assert.equal(counts.uniformWrites, 0);
      assert.equal(counts.pipelines, 0);
      assert.ok(counts.dispatches > 0 && counts.dispatches <= TRAIN_STEP_AT_MOST.dispatches);
      assert.equal(typeof answer.loss, "number");
      // a limit of 0: the first call is the answer, settled only if it could be (it cannot)
      const first = await counted(state, "sample", 0);
      assert.equal(first.warmUp, 0);
      assert.equal(first.settled, false);
      assert.ok((first.counts as WebgpuCounts).dispatches > 0);
    } finally {
      disposeState(state);
    }
  },
});
