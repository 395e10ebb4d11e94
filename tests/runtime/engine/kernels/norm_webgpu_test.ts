/**
 * The global norm's fused programs on webgpu (runtime/engine/kernels/norm_webgpu.ts), where WebGPU
 * offers an adapter: within float32 rounding of a float64 reference, as the chain of ops it
 * replaces is, for tensors of assorted sizes in more groups than one program binds; the same bits
 * twice; ⌈n / 7⌉ + 1 dispatches; a NaN or an infinity anywhere gives a norm that is not finite;
 * `globalNorm` takes it on webgpu.
 *
 * @module
 */

import assert from "node:assert/strict";
import { tf, useBackend } from "../../../../runtime/engine/backend.ts";
import { sumOfSquaresNorm } from "../../../../runtime/engine/kernels/norm_webgpu.ts";
import { globalNorm } from "../../../../runtime/engine/optim.ts";
import { countWebgpu } from "../../../../runtime/engine/webgpu_counters.ts";
import { Rng } from "../../../../runtime/engine/random.ts";
import { needsWebgpu } from "../../_webgpu.ts";

/** Sizes of 17 tensors: one element, sizes about a workgroup's, and some past 4,096 a lane. */
const SIZES = [
  1,
  255,
  256,
  257,
  3000,
  128 * 352,
  17,
  4096 * 16 + 5,
  128,
  999,
  70_000,
  2,
  3,
  513,
  8,
  300_001,
  64,
];

function arrays(seed: number): Float32Array[] {
  const rng = new Rng(seed);
  return SIZES.map((n) => Float32Array.from({ length: n }, () => (rng.uniform() * 2 - 1) * 3));
}

/** √Σx² in float64 over the float32 values. */
function reference(values: Float32Array[]): number {
  let sum = 0;
  for (const a of values) for (const x of a) sum += x * x;
  return Math.sqrt(sum);
}

Deno.test({
  ...needsWebgpu(
    "sumOfSquaresNorm: float32 rounding of a float64 reference, as the ops, in ⌈n / 7⌉ + 1 dispatches",
  ),
  async fn() {
    await useBackend("webgpu");
    const live = tf.memory().numTensors;
    const values = arrays(1);
    const tensors = values.map((a) => tf.tensor1d(a));
    const chain = tf.tidy(() =>
      tf.sqrt(tensors.map((t) => tf.sum(tf.square(t))).reduce((a, b) => tf.add(a, b)))
    );
    await chain.data(); // the tensors uploaded
    const { result: fused, counts } = await countWebgpu(() =>
      Promise.resolve(sumOfSquaresNorm(tensors))
    );
    assert.equal(counts.dispatches, Math.ceil(SIZES.length / 7) + 1);
    const again = sumOfSquaresNorm(tensors);
    const expected = reference(values);
    const [f, a, c] = [
      (await fused.data())[0]!,
      (await again.data())[0]!,
      (await chain.data())[0]!,
    ];
    assert.equal(a, f); // deterministic
    // float32 sums of ~400,000 terms: both within a few 1e-6 of float64's (relative)
    assert.ok(Math.abs(f - expected) / expected < 1e-5, `fused ${f} vs ${expected}`);
    assert.ok(Math.abs(c - expected) / expected < 1e-5, `ops ${c} vs ${expected}`);
    assert.equal(fused.rank, 0);
    tf.dispose([...tensors, chain, fused, again]);
    assert.equal(tf.memory().numTensors, live);
  },
});

Deno.test({
  ...needsWebgpu(
    "sumOfSquaresNorm: a NaN or an infinity in any tensor gives a norm that is not finite",
  ),
  async fn() {
    await useBackend("webgpu");
    for (const [at, bad] of [[0, NaN], [7, Infinity], [16, -Infinity], [15, NaN]] as const) {
      const values = arrays(2);
      values[at]![values[at]!.length - 1] = bad;
      const tensors = values.map((a) => tf.tensor1d(a));
      const norm = sumOfSquaresNorm(tensors);
      const [n] = await norm.data();
      assert.ok(!Number.isFinite(n!), `${bad} in tensor ${at}: ${n}`);
      tf.dispose([...tensors, norm]);
    }
  },
});

Deno.test({
  ...needsWebgpu("globalNorm on webgpu is the fused norm"),
  async fn() {
    await useBackend("webgpu");
    const values = arrays(3).slice(0, 5);
    const grads = Object.fromEntries(values.map((a, i) => [`p${i}`, tf.tensor1d(a)]));
    const { result: norm, counts } = await countWebgpu(() => Promise.resolve(globalNorm(grads)));
    const fused = sumOfSquaresNorm(Object.values(grads));
    assert.equal(counts.dispatches, 2);
    assert.deepEqual(await norm.data(), await fused.data());
    tf.dispose([...Object.values(grads), norm, fused]);
  },
});
