/**
 * The fused group statistics on webgpu (runtime/rl/objectives/group_webgpu.ts), where WebGPU offers
 * an adapter: the bits of `groupMean` and `groupStd`'s ops on the same backend, for groups shorter
 * and longer than tfjs's 64 reduction lanes, equal groups, large and tiny values, a NaN and an
 * infinity; one dispatch each; `standardize` with constant statistics giving the ops' values and
 * gradient.
 *
 * @module
 */

import assert from "node:assert/strict";
import { tf, useBackend } from "../../../../runtime/engine/backend.ts";
import { deviceConstantCount } from "../../../../runtime/engine/kernels/constants.ts";
import {
  groupMeanOnDevice,
  groupStatisticsOnDevice,
  groupStdOnDevice,
} from "../../../../runtime/rl/objectives/group_webgpu.ts";
import {
  constantGroupStd,
  groupMean,
  groupStd,
  standardize,
  stopGradient,
} from "../../../../runtime/rl/objectives/group.ts";
import { countWebgpu } from "../../../../runtime/engine/webgpu_counters.ts";
import { Rng } from "../../../../runtime/engine/random.ts";
import { assertOpsBits, needsWebgpu } from "../../_webgpu.ts";

/** `groups` groups of `size` values from `seed`, of assorted magnitudes. */
function values(groups: number, size: number, seed: number): Float32Array {
  const rng = new Rng(seed);
  const scales = [1, 1e-3, 1e4, 0.1];
  return Float32Array.from(
    { length: groups * size },
    (_, i) => (rng.uniform() * 2 - 1) * scales[Math.floor(i / size) % scales.length]!,
  );
}

async function same(a: tf.Tensor, b: tf.Tensor, what: string): Promise<void> {
  const [x, y] = [await a.data(), await b.data()];
  assertOpsBits(x, y, what);
}

Deno.test({
  ...needsWebgpu(
    "group statistics on webgpu: the bits of groupMean's and groupStd's ops, one dispatch each",
  ),
  async fn() {
    await useBackend("webgpu");
    const live = () => tf.memory().numTensors - deviceConstantCount();
    const before = live();
    for (const size of [2, 3, 8, 16, 63, 64, 65, 130, 1000]) {
      const data = values(5, size, size);
      data.fill(0.1, 0, size); // an equal group: deviations of exactly 0
      if (size > 2) {
        data[size + 1] = NaN; // group 1
        data[2 * size + 2] = Infinity; // group 2
      }
      const x = tf.tensor1d(data);
      await x.data(); // uploaded before counting
      assert.ok(groupStatisticsOnDevice(size));
      const { result: mean, counts } = await countWebgpu(() =>
        Promise.resolve(groupMeanOnDevice(x, size))
      );
      assert.equal(counts.dispatches, 1);
      const std = groupStdOnDevice(x, size);
      const [opsMean, opsStd] = [groupMean(x, size), groupStd(x, size)];
      await same(mean, opsMean, `mean, groups of ${size}`);
      await same(std, opsStd, `std, groups of ${size}`);
      const m = await mean.data();
      assert.equal(m[0], Math.fround(0.1)); // the equal group's own value
      if (size > 2) assert.ok(Number.isNaN(m[1]!) && !Number.isFinite(m[2]!));
      tf.dispose([x, mean, std, opsMean, opsStd]);
    }
    assert.equal(live(), before);
  },
});

Deno.test({
  ...needsWebgpu("standardize with constant statistics on webgpu: the ops' values and gradient"),
  async fn() {
    await useBackend("webgpu");
    const size = 8;
    const x = tf.tensor1d(values(6, size, 3));
    const w = tf.tensor1d(values(6, size, 4));
    const options = { epsilon: 1e-6, singleton: "zero" as const, constantStatistics: true };
    // the ops' way, written out as standardize took it before: statistics of stopGradient(x)
    const ops = (v: tf.Tensor1D) =>
      tf.tidy(() => {
        const source = stopGradient(v);
        const mean = tf.expandDims(groupMean(source, size), 1);
        const std = tf.expandDims(groupStd(source, size), 1);
        const rows = tf.reshape(v, [-1, size]);
        return tf.reshape(
          tf.div(tf.sub(rows, mean), tf.add(std, tf.scalar(options.epsilon))),
          [-1],
        ) as tf.Tensor1D;
      });
    const loss = (f: (v: tf.Tensor1D) => tf.Tensor1D) => (v: tf.Tensor) =>
      tf.sum(tf.mul(f(v as tf.Tensor1D), w));
    const fused = (v: tf.Tensor1D) => standardize(v, size, options);
    await same(fused(x), ops(x), "values");
    const [gFused, gOps] = [tf.grad(loss(fused))(x), tf.grad(loss(ops))(x)];
    await same(gFused, gOps, "gradient");
    await same(constantGroupStd(x, size), groupStd(x, size), "constantGroupStd");
    tf.dispose([x, w, gFused, gOps]);
  },
});
