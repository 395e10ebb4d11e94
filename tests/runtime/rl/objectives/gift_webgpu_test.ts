/**
 * GIFT's fused loss on webgpu (runtime/rl/objectives/gift_webgpu.ts), where WebGPU offers an
 * adapter: the loss, its three metrics and its gradient w.r.t. logp against the same loss in
 * tfjs's ops on the same backend (`giftLossOps`), the same bits, on random ragged batches
 * of several group sizes and lengths (rows shorter and longer than tfjs's 64 reduction lanes),
 * with equal-reward groups, groups whose implicit rewards are all equal (s_g = 0: the gradient
 * scaled by 1/ε) and fully masked rows; in 4 dispatches forward and 1 backward, leaving no tensor.
 *
 * @module
 */

import assert from "node:assert/strict";
import { tf, useBackend } from "../../../../runtime/engine/backend.ts";
import { deviceConstantCount } from "../../../../runtime/engine/kernels/constants.ts";
import { countWebgpu } from "../../../../runtime/engine/webgpu_counters.ts";
import { Rng } from "../../../../runtime/engine/random.ts";
import { gift, giftLossOps } from "../../../../runtime/rl/objectives/gift.ts";
import { giftOnDevice } from "../../../../runtime/rl/objectives/gift_webgpu.ts";
import type { ObjectiveBatch } from "../../../../runtime/rl/objectives/types.ts";
import { needsWebgpu } from "../../_webgpu.ts";

/**
 * A random batch of `groups` groups of `size` rows of `tokens` tokens: ragged masks (row lengths
 * 0 … T), rewards in {0, 1} or continuous; group 0's rewards all equal, group 1's logp equal to
 * the reference (u ≡ 0, a zero-variance group).
 */
function batchOf(groups: number, size: number, tokens: number, seed: number): ObjectiveBatch {
  const rng = new Rng(seed);
  const rows = groups * size;
  const logp = Float32Array.from({ length: rows * tokens }, () => -3 * rng.uniform());
  const ref = Float32Array.from(logp, (v) => v + (rng.uniform() - 0.5) * 0.2);
  const mask = new Float32Array(rows * tokens);
  for (let i = 0; i < rows; i++) {
    const length = Math.floor(rng.uniform() * (tokens + 1));
    mask.fill(1, i * tokens, i * tokens + length);
  }
  const binary = seed % 2 === 0;
  const rewards = Float32Array.from(
    { length: rows },
    () => binary ? (rng.uniform() < 0.5 ? 1 : 0) : rng.uniform() * 4 - 1,
  );
  rewards.fill(0.3, 0, size); // group 0: equal rewards
  if (groups > 1) ref.set(logp.subarray(size * tokens, 2 * size * tokens), size * tokens); // u ≡ 0
  return {
    logp: tf.tensor2d(logp, [rows, tokens]),
    oldLogp: tf.tensor2d(ref, [rows, tokens]),
    mask: tf.tensor2d(mask, [rows, tokens]),
    rewards: tf.tensor1d(rewards),
    groupSize: size,
  };
}

/** `actual` has `expected`'s values exactly (NaN where it has NaN). */
function same(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let k = 0; k < expected.length; k++) {
    const [a, e] = [actual[k]!, expected[k]!];
    assert.ok(
      a === e || (Number.isNaN(a) && Number.isNaN(e)),
      `${what}[${k}]: ${a}, the ops give ${e}`,
    );
  }
}

Deno.test({
  ...needsWebgpu(
    "GIFT's fused loss on webgpu: the bits of the ops' loss, metrics and gradient on ragged batches",
  ),
  async fn() {
    await useBackend("webgpu");
    const live = () => tf.memory().numTensors - deviceConstantCount();
    const before = live();
    const cases: [number, number, number, number][] = [ // groups, size, tokens, β_c
      [4, 8, 4, 1],
      [3, 2, 1, 1],
      [5, 3, 70, 0.5],
      [2, 16, 9, 2],
      [6, 1, 7, 1], // groups of one: Â = r, ũ = 0, no gradient
      [2, 65, 3, 1], // groups longer than 64 lanes
      [70, 4, 5, 1], // more groups than the forward's lanes
    ];
    for (const [groups, size, tokens, betaC] of cases) {
      const what = `${groups} groups of ${size}, T = ${tokens}, β_c = ${betaC}`;
      const batch = batchOf(groups, size, tokens, groups * 1000 + size * 10 + tokens);
      assert.ok(giftOnDevice(batch.logp.shape, size), what);
      const options = { betaC };
      // the fused values read before the ops run: a program that did not compile writes nothing,
      // and its output buffer may be one the ops' output had before
      const fused = gift.loss(batch, options);
      const fusedValues: Record<string, Float32Array> = {
        loss: await fused.loss.data() as Float32Array,
      };
      for (const [name, m] of Object.entries(fused.metrics)) {
        fusedValues[name] = await m.data() as Float32Array;
      }
      const gradient = (f: typeof giftLossOps) =>
        tf.grad((logp: tf.Tensor) => f({ ...batch, logp: logp as tf.Tensor2D }, options).loss)(
          batch.logp,
        );
      const gFused = gradient(gift.loss);
      const g = await gFused.data();
      const ops = giftLossOps(batch, options);
      assert.ok(fusedValues.loss![0]! > 0, `${what}: the loss is ${fusedValues.loss![0]}`);
      same(fusedValues.loss!, await ops.loss.data(), `${what}: loss`);
      assert.deepEqual(Object.keys(fused.metrics).sort(), Object.keys(ops.metrics).sort());
      for (const [name, m] of Object.entries(ops.metrics)) {
        same(fusedValues[name]!, await m.data(), `${what}: ${name}`);
      }
      const gOps = gradient(giftLossOps);
      const [h, mask] = [await gOps.data(), await batch.mask.data()];
      same(g, h, `${what}: gradient`);
      g.forEach((v, k) => {
        if (mask[k] === 0) assert.ok(v === 0, `${what}: gradient on padding [${k}]`);
      });
      if (size > 1) assert.ok(g.some((v) => v !== 0), `${what}: a zero gradient`);
      else assert.ok(g.every((v) => v === 0), `${what}: groups of one have no gradient`);
      tf.dispose([fused.loss, ...Object.values(fused.metrics), ops.loss]);
      tf.dispose([...Object.values(ops.metrics), gFused, gOps]);
      tf.dispose([batch.logp, batch.oldLogp, batch.mask, batch.rewards]);
    }
    assert.equal(live(), before);
  },
});

Deno.test({
  ...needsWebgpu("GIFT's fused loss on webgpu: 4 dispatches forward, 1 backward"),
  async fn() {
    await useBackend("webgpu");
    const batch = batchOf(4, 8, 6, 7);
    await Promise.all([batch.logp, batch.oldLogp, batch.mask, batch.rewards].map((t) => t.data()));
    const { result, counts } = await countWebgpu(() =>
      Promise.resolve(tf.tidy(() => {
        const { value, grads } = tf.valueAndGrads((logp: tf.Tensor) =>
          gift.loss({ ...batch, logp: logp as tf.Tensor2D }, {}).loss
        )([batch.logp]);
        return [value, ...grads];
      }))
    );
    assert.equal(counts.dispatches, 5);
    tf.dispose([...result, batch.logp, batch.oldLogp, batch.mask, batch.rewards]);
  },
});
