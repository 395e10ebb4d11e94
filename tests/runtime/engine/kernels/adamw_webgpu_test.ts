/**
 * AdamW's update on webgpu (runtime/engine/kernels/adamw_webgpu.ts), where WebGPU offers an
 * adapter: the in-place program (one dispatch) against the three programs it falls back to where a
 * variable's buffer is shared, and both against the plain tfjs ops of `adamWOps`, bit for bit on
 * lavapipe (within float32 rounding on a GPU: `assertOpsBits`), over applied and skipped updates, with and without decay, and over a parameter larger
 * than one dispatch's 65,535 workgroups along x. A clone of a variable keeps its values.
 *
 * @module
 */

import assert from "node:assert/strict";
import { tf, useBackend } from "../../../../runtime/engine/backend.ts";
import { deviceConstantCount } from "../../../../runtime/engine/kernels/constants.ts";
import {
  adamWNextRow,
  adamWStepValues,
  fusedAdamW,
  STEP_VALUES,
} from "../../../../runtime/engine/kernels/adamw_webgpu.ts";
import { tfjsKernels } from "../../../../runtime/engine/kernels/tfjs.ts";
import { countWebgpu } from "../../../../runtime/engine/webgpu_counters.ts";
import { assertOpsBits, needsWebgpu } from "../../_webgpu.ts";

const SETTINGS = { b1: 0.9, b2: 0.999, eps: 1e-8 };

/** `size` values in [0, 1) from `seed`: a cheap hash, for millions of them. */
function uniform(size: number, seed: number): Float32Array {
  const out = new Float32Array(size);
  let x = (seed * 2654435761) >>> 0;
  for (let i = 0; i < size; i++) {
    x = (Math.imul(x ^ (x >>> 15), 2246822507) + i) >>> 0;
    out[i] = x / 2 ** 32;
  }
  return out;
}

/** p, m and v of `size` values from `seed` (m and v as after a few updates: v ≥ 0). */
function state(size: number, seed: number): tf.Variable[] {
  const make = (scale: number, shift: number, part: number) => {
    const t = tf.tensor1d(uniform(size, seed * 3 + part).map((x) => (x - shift) * scale));
    const v = tf.variable(t);
    t.dispose();
    return v;
  };
  return [make(2, 0.5, 0), make(0.2, 0.5, 1), make(0.01, 0, 2)];
}

/** The step's values as `fusedAdamW` takes them (STEP_VALUES' order). */
function stepTensor(u: { clip: number; applied: number; c1: number; c2: number; lr: number }) {
  const values = new Float32Array(5);
  for (const [name, i] of Object.entries(STEP_VALUES)) {
    values[i] = u[name as keyof typeof STEP_VALUES];
  }
  return tf.tensor1d(values);
}

async function values(ts: tf.Tensor[]): Promise<Float32Array[]> {
  return await Promise.all(ts.map(async (t) => await t.data() as Float32Array));
}

/** Three updates of one parameter three ways; returns each way's p, m, v and the dispatches. */
async function threeWays(size: number, decay: number) {
  const [inPlace, shared, ops] = [state(size, 1), state(size, 1), state(size, 1)];
  const kernels = tfjsKernels();
  const dispatches: [number, number][] = [];
  const aliases: { before: Float32Array; after: Float32Array }[] = [];
  const updates = [
    { clip: 0.5, applied: 1, c1: 0.1, c2: 0.001, lr: 0.01 },
    { clip: 1, applied: 0, c1: 0.19, c2: 0.002, lr: 0.02 }, // skipped: nothing moves
    { clip: 0.75, applied: 1, c1: 0.19, c2: 0.002, lr: 0.02 },
  ];
  for (const [i, u] of updates.entries()) {
    const g = tf.tensor1d(uniform(size, 100 + i).map((x) => x * 2 - 1));
    const step = stepTensor(u);
    const settings = { ...SETTINGS, decay };
    const a = await countWebgpu(() => {
      const [p, m, v] = inPlace as [tf.Variable, tf.Variable, tf.Variable];
      tf.tidy(() => fusedAdamW(p, g, m, v, step as tf.Tensor1D, settings));
      return Promise.resolve();
    });
    const alias = tf.clone(shared[0]!); // shares p's buffer: the update must not write it
    const [before] = await values([alias]);
    const b = await countWebgpu(() => {
      const [p, m, v] = shared as [tf.Variable, tf.Variable, tf.Variable];
      tf.tidy(() => fusedAdamW(p, g, m, v, step as tf.Tensor1D, settings));
      return Promise.resolve();
    });
    dispatches.push([a.counts.dispatches, b.counts.dispatches]);
    aliases.push({ before: before!, after: (await values([alias]))[0]! });
    if (u.applied) {
      const [p, m, v] = ops as [tf.Variable, tf.Variable, tf.Variable];
      const { c1, c2, lr, clip } = u;
      tf.tidy(() => kernels.adamW(p, g, m, v, { ...settings, c1, c2, lr, clip }));
    }
    tf.dispose([g, step, alias]);
  }
  const out = {
    inPlace: await values(inPlace),
    shared: await values(shared),
    ops: await values(ops),
    aliases,
    dispatches,
  };
  tf.dispose([...inPlace, ...shared, ...ops]);
  return out;
}

Deno.test({
  ...needsWebgpu(
    "fusedAdamW: in place in one dispatch, the bits of the three programs and of the ops",
  ),
  async fn() {
    await useBackend("webgpu");
    // the device caches (kernels/constants.ts) keep the constants the ops take
    const live = () => tf.memory().numTensors - deviceConstantCount();
    const before = live();
    for (const decay of [0.1, 0]) {
      const out = await threeWays(3001, decay);
      // one dispatch a step in place; three where p's buffer is shared (the skipped step too)
      assert.deepEqual(out.dispatches, [[1, 3], [1, 3], [1, 3]]);
      assert.deepEqual(out.inPlace, out.shared);
      assertOpsBits(out.inPlace, out.ops, `decay ${decay}: in place vs the ops`);
      for (const { before, after } of out.aliases) assert.deepEqual(after, before);
      assert.notDeepEqual(out.inPlace[0], out.aliases[0]!.before);
    }
    assert.equal(live(), before);
  },
});

Deno.test({
  ...needsWebgpu("fusedAdamW: a parameter past 65,535 workgroups along x, in place as the ops"),
  async fn() {
    await useBackend("webgpu");
    const out = await threeWays(65535 * 128 + 300, 0.1);
    assert.deepEqual(out.dispatches.map(([a]) => a), [1, 1, 1]);
    assertOpsBits(out.inPlace, out.ops, "in place vs the ops");
    // the last elements (in the second row of workgroups) moved
    const last = out.inPlace[0]!.length - 1;
    assert.notEqual(out.inPlace[0]![last], out.aliases[0]!.before[last]);
  },
});

Deno.test({
  ...needsWebgpu(
    "adamWStepValues and adamWNextRow: the bits of DeviceUpdates' ops, in 2 dispatches",
  ),
  async fn() {
    await useBackend("webgpu");
    const table = (offset: number) => tf.tensor1d([0.1, 0.2, 0.3].map((x) => x + offset));
    const [lr, c1, c2] = [table(0), table(0.01), table(0.02)];
    const index = tf.tensor1d([1], "int32");
    const c = (x: number) => tf.scalar(x);
    for (const clipGradNorm of [0, 0.5]) {
      for (const maxInRow of [null, 3]) {
        for (const [l, n, inRow] of [[0.5, 2, 0], [0.5, 0.1, 2], [NaN, 2, 1], [1, Infinity, 0]]) {
          const [loss, norm, before] = [c(l!), c(n!), c(inRow!)];
          const faults = maxInRow === null ? null : { before, maxInRow };
          const inputs = { loss, norm, lr, c1, c2, index, clipGradNorm, faults };
          const { result, counts } = await countWebgpu(() => {
            const step = adamWStepValues(inputs);
            return Promise.resolve({ step, next: adamWNextRow(index, step) });
          });
          assert.equal(counts.dispatches, 2);
          // the ops of DeviceUpdates.step, as optim.ts takes them off webgpu
          const expected = tf.tidy(() => {
            let ok = tf.logicalAnd(tf.isFinite(loss), tf.isFinite(norm));
            if (faults) ok = tf.logicalAnd(ok, tf.less(before, c(maxInRow!)));
            const applied = tf.cast(ok, "float32");
            const clip = clipGradNorm > 0
              ? tf.minimum(tf.div(c(clipGradNorm), tf.add(norm, c(1e-6))), c(1))
              : c(1);
            const row = (t: tf.Tensor) => tf.reshape(tf.gather(t, index), []);
            const rest = faults ? tf.mul(tf.add(before, c(1)), tf.sub(c(1), applied)) : c(0);
            const values = [clip, applied, row(c1), row(c2), row(lr), rest];
            return {
              step: tf.stack(values.map((t) => tf.reshape(t, []))),
              next: tf.add(index, tf.cast(ok, "int32")),
            };
          });
          const what = `clip ${clipGradNorm}, limit ${maxInRow}, loss ${l}, norm ${n}`;
          assert.deepEqual(await result.step.data(), await expected.step.data(), what);
          assert.deepEqual(await result.next.data(), await expected.next.data(), what);
          tf.dispose([loss, norm, before, result.step, result.next, expected.step, expected.next]);
        }
      }
    }
    tf.dispose([lr, c1, c2, index]);
  },
});
