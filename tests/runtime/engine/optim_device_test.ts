/**
 * AdamW with its checks on the device (`DeviceUpdates`, optim.ts), run on the cpu backend against
 * `adamWStep` with the plain tfjs kernel set (the same ops), on cpu and, where WebGPU offers an
 * adapter, on webgpu (where the gated clipping is a kernel of its own): the same bits where no
 * clipping acts, the same host accounting (t, learning rate, norms, skips), a non-finite update
 * that changes nothing, no update after the limit of non-finite ones in a row, and a `t` set from
 * a checkpoint picked up. What a webgpu train step reads and uploads: webgpu_counters_test.ts.
 *
 * @module
 */

import assert from "node:assert/strict";
import { type BackendName, tf, useBackend } from "../../../runtime/engine/backend.ts";
import { deviceConstantCount } from "../../../runtime/engine/kernels/constants.ts";
import { tfjsKernels } from "../../../runtime/engine/kernels/tfjs.ts";
import { gatedScale } from "../../../runtime/engine/kernels/gated_scale.ts";
import {
  type AdamW,
  adamW,
  type AdamWOptions,
  adamWStep,
  type AdamWUpdate,
  deviceUpdates,
  disposeAdamW,
  learningRate,
} from "../../../runtime/engine/optim.ts";
import { Rng } from "../../../runtime/engine/random.ts";
import { assertOpsBits, CPU_ADAPTER, needsWebgpu } from "../_webgpu.ts";

/** The plain tfjs set, `adamWStep`'s reference here (the device path's ops are tfjs's). */
const kernels = tfjsKernels();

const OPTIONS: AdamWOptions = {
  lr: 0.01,
  betas: [0.9, 0.999],
  eps: 1e-8,
  weightDecay: 0.1,
  clipGradNorm: 0,
  warmupSteps: 3,
  schedule: "cosine",
};

/** Parameters of three shapes (one 1-D, which takes no decay), from `seed`. */
function makeParams(seed: number): Record<string, tf.Variable> {
  const rng = new Rng(seed);
  const values = (n: number) => Float32Array.from({ length: n }, () => rng.uniform() * 2 - 1);
  const variable = (t: tf.Tensor) => {
    const v = tf.variable(t);
    t.dispose();
    return v;
  };
  return {
    a: variable(tf.tensor2d(values(12), [3, 4])),
    b: variable(tf.tensor1d(values(4))),
    c: variable(tf.tensor2d(values(6), [2, 3])),
  };
}

/** Gradients of update `i`, from `seed`; `bad` puts a NaN or an infinity in one of them. */
function makeGrads(
  seed: number,
  i: number,
  scale: number,
  bad?: number,
): Record<string, tf.Tensor> {
  const rng = new Rng(seed * 1000 + i);
  const values = (n: number) =>
    Float32Array.from({ length: n }, () => (rng.uniform() * 2 - 1) * scale);
  const a = values(12);
  if (bad !== undefined) a[5] = bad;
  return {
    a: tf.tensor2d(a, [3, 4]),
    b: tf.tensor1d(values(4)),
    c: tf.tensor2d(values(6), [2, 3]),
  };
}

/** Every parameter's and moment's values. */
async function snapshot(params: Record<string, tf.Variable>, state: AdamW): Promise<number[]> {
  const out: number[] = [];
  for (const name of Object.keys(params)) {
    out.push(...await params[name]!.data(), ...await state.m[name]!.data());
    out.push(...await state.v[name]!.data());
  }
  return out;
}

/** `losses.length` updates the host's way: `adamWStep`, skipped for a non-finite loss. */
async function onHost(
  options: AdamWOptions,
  grads: number[],
  losses: number[],
  bad: (number | undefined)[],
  scale: number,
) {
  const params = makeParams(1);
  const state = adamW(params, options, 20);
  const updates: AdamWUpdate[] = [];
  for (let i = 0; i < losses.length; i++) {
    const g = makeGrads(grads[i]!, i, scale, bad[i]);
    updates.push(
      Number.isFinite(losses[i]!) ? await adamWStep(kernels, state, params, g) : {
        gradNorm: NaN,
        gradNormClipped: NaN,
        lr: learningRate(options, state.t, state.totalUpdates),
        skipped: true,
      },
    );
    tf.dispose(Object.values(g));
  }
  const values = await snapshot(params, state);
  tf.dispose(Object.values(params));
  const t = state.t;
  disposeAdamW(state);
  return { updates, values, t };
}

/** The same updates on the device path: one read of every [loss, norm] at the end. */
async function onDevice(
  options: AdamWOptions,
  grads: number[],
  losses: number[],
  bad: (number | undefined)[],
  scale: number,
  faults?: { inRow: number; maxInRow: number },
) {
  const params = makeParams(1);
  const state = adamW(params, options, 20);
  const device = deviceUpdates(state, { updates: losses.length, ...(faults ? { faults } : {}) });
  for (let i = 0; i < losses.length; i++) {
    const g = makeGrads(grads[i]!, i, scale, bad[i]);
    const loss = tf.scalar(losses[i]!);
    device.step(params, g, loss);
    tf.dispose([loss, ...Object.values(g)]);
  }
  const packed = tf.tidy(() => tf.stack(device.pending.flat()));
  const read = await packed.data();
  packed.dispose();
  const pairs = losses.map((_, i) => [read[2 * i]!, read[2 * i + 1]!] as const);
  const updates = device.settle(pairs);
  device.dispose();
  const values = await snapshot(params, state);
  tf.dispose(Object.values(params));
  const t = state.t;
  disposeAdamW(state);
  return { updates, values, t };
}

for (const backend of ["cpu", "webgpu"] as BackendName[]) {
  /** A test of this backend's: webgpu's where an adapter is offered. */
  const test = (name: string, fn: () => Promise<void>) =>
    Deno.test({
      ...(backend === "webgpu"
        ? needsWebgpu(`${backend}: ${name}`)
        : { name: `${backend}: ${name}` }),
      async fn() {
        await useBackend(backend);
        await fn();
      },
    });
  /** Bit for bit on cpu and on a CPU adapter; within float32 rounding on a GPU (`assertOpsBits`). */
  const same = (actual: unknown, expected: unknown, what: string) =>
    assertOpsBits(actual, expected, what, backend === "cpu" || CPU_ADAPTER);

  test("DeviceUpdates: 6 updates without clipping, the same bits and accounting as adamWStep", async () => {
    // the device caches (kernels/constants.ts) keep the constants the device path takes
    const live = () => tf.memory().numTensors - deviceConstantCount();
    const before = live();
    const seeds = [1, 2, 3, 4, 5, 6];
    const losses = [0.5, 0.25, 1, 2, 0.125, 3];
    const none = seeds.map(() => undefined);
    const host = await onHost(OPTIONS, seeds, losses, none, 1);
    const middle = live();
    const device = await onDevice(OPTIONS, seeds, losses, none, 1);
    assert.equal(live(), middle, "device");
    same(device.values, host.values, "values");
    same(device.updates, host.updates, "updates");
    assert.equal(device.t, 6);
    assert.equal(host.t, 6);
    assert.equal(live(), before);
  });

  test("DeviceUpdates: clipping that acts, parameters within float32 rounding of adamWStep's", async () => {
    const options = { ...OPTIONS, clipGradNorm: 0.5 };
    const seeds = [1, 2, 3, 4];
    const losses = [0.5, 0.25, 1, 2];
    const none = seeds.map(() => undefined);
    const host = await onHost(options, seeds, losses, none, 3);
    const device = await onDevice(options, seeds, losses, none, 3);
    // the norms and the learning rates are the host's either way
    same(device.updates, host.updates, "updates");
    for (const u of host.updates) assert.ok(u.gradNorm > 1 && u.gradNormClipped < 0.5 + 1e-12);
    for (let i = 0; i < host.values.length; i++) {
      const [a, b] = [device.values[i]!, host.values[i]!];
      assert.ok(Math.abs(a - b) <= 1e-6 * Math.max(1, Math.abs(b)), `${i}: ${a} vs ${b}`);
    }
  });

  test("DeviceUpdates: a NaN loss and an infinite gradient change nothing and are reported as adamWStep's", async () => {
    const seeds = [1, 2, 3, 4, 5];
    const losses = [0.5, NaN, 1, 2, 0.125];
    const bad = [undefined, undefined, Infinity, undefined, NaN];
    const host = await onHost(OPTIONS, seeds, losses, bad, 1);
    const device = await onDevice(OPTIONS, seeds, losses, bad, 1);
    same(device.values, host.values, "values");
    assert.deepEqual(
      device.updates.map((u) => u.skipped),
      [false, true, true, false, true],
    );
    same(device.updates, host.updates, "updates");
    assert.equal(device.t, 2);
  });

  test("DeviceUpdates: no update applies once the limit of non-finite ones in a row is reached", async () => {
    // one fault in a row before, the limit 3: reached at update 1 (1 + 2), so update 2, finite,
    // must not apply and the state is the one before the step
    const seeds = [1, 2, 3];
    const losses = [NaN, NaN, 1];
    const none = seeds.map(() => undefined);
    const device = await onDevice(OPTIONS, seeds, losses, none, 1, { inRow: 1, maxInRow: 3 });
    assert.deepEqual(device.updates.map((u) => u.skipped), [true, true]);
    assert.equal(device.t, 0);
    const host = await onHost(OPTIONS, [], [], [], 1);
    assert.deepEqual(device.values, host.values);
    // without the limit the third applies
    const unlimited = await onDevice(OPTIONS, seeds, losses, none, 1);
    assert.deepEqual(unlimited.updates.map((u) => u.skipped), [true, true, false]);
    assert.notDeepEqual(unlimited.values, host.values);
  });

  test("DeviceUpdates: a t set from a checkpoint between steps picks its schedule row", async () => {
    // 2 updates, t set back to 5 (as restoreRun does), 1 more: its learning rate and bias
    // corrections are those of update 5, as adamWStep takes them
    const run = async (device: boolean) => {
      const params = makeParams(1);
      const state = adamW(params, OPTIONS, 20);
      const updates: AdamWUpdate[] = [];
      const take = async (i: number) => {
        const g = makeGrads(7, i, 1);
        if (device) {
          const d = deviceUpdates(state, { updates: 1 });
          const loss = tf.scalar(1);
          d.step(params, g, loss);
          const [l, n] = [await d.pending[0]![0].data(), await d.pending[0]![1].data()];
          updates.push(...d.settle([[l[0]!, n[0]!]]));
          tf.dispose([loss]);
          d.dispose();
        } else {
          updates.push(await adamWStep(kernels, state, params, g));
        }
        tf.dispose(Object.values(g));
      };
      await take(0);
      await take(1);
      state.t = 5;
      await take(2);
      const values = await snapshot(params, state);
      tf.dispose(Object.values(params));
      disposeAdamW(state);
      return { updates, values };
    };
    const [host, device] = [await run(false), await run(true)];
    same(device.updates, host.updates, "updates");
    same(device.values, host.values, "values");
    assert.equal(host.updates[2]!.lr, OPTIONS.lr * 0.5 * (1 + Math.cos((Math.PI * 2) / 17)));
  });

  test("gatedScale() is x · s where the gate is 1 and 0 where it is 0, NaN or not", async () => {
    const x = tf.tensor1d([1.5, NaN, -Infinity, 3]);
    const s = tf.tensor1d([0.25]);
    const [one, zero] = [tf.tensor1d([1]), tf.tensor1d([0])];
    const on = gatedScale(x, s, one);
    const off = gatedScale(x, s, zero);
    assert.deepEqual([...await on.data()], [0.375, NaN, -Infinity, 0.75]);
    assert.deepEqual([...await off.data()], [0, 0, 0, 0]);
    tf.dispose([x, s, one, zero, on, off]);
  });
}
