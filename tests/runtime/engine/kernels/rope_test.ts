// RoPE's rotation as one product with a signed permutation (runtime/engine/kernels/rope.ts) must
// give split, neg and concat's results, forward and gradient, on wasm and cpu, with OpenBLAS
// running the product where it loads (the fused RoPE of the kernel sets: wasm_test.ts, cpu_test.ts).

import assert from "node:assert/strict";
import { relativeError } from "../../_numeric.ts";
import { tf, useBackend } from "../../../../runtime/engine/backend.ts";
import { rotateHalf, rotateHalfByProduct } from "../../../../runtime/engine/kernels/rope.ts";
import { normalArray, Rng } from "../../../../runtime/engine/random.ts";

/** A value and the gradient of Σ value·weights, both read out. */
function valueAndGrad(f: (x: tf.Tensor) => tf.Tensor, x: tf.Tensor, weights: tf.Tensor) {
  return tf.tidy(() => {
    const value = f(x).dataSync();
    const grad = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(f(t), weights)))(x).dataSync();
    return { value: Float32Array.from(value), grad: Float32Array.from(grad) };
  });
}

for (const backend of ["wasm", "cpu"] as const) {
  Deno.test(`rotateHalfByProduct() on ${backend} equals split, neg and concat, forward and gradient`, async () => {
    await useBackend(backend);
    const shape = [4, 4, 16, 32]; // a product big enough for OpenBLAS where it runs them
    const rng = new Rng(1);
    const x = tf.tensor(normalArray(rng, 8192, 1), shape);
    const weights = tf.tensor(normalArray(rng, 8192, 1), shape);
    const fast = valueAndGrad((t) => rotateHalfByProduct(t as tf.Tensor4D), x, weights);
    const expected = valueAndGrad((t) => rotateHalf(t as tf.Tensor4D), x, weights);
    assert.ok(relativeError(fast.value, expected.value) < 1e-5);
    assert.ok(relativeError(fast.grad, expected.grad) < 1e-5);
    tf.dispose([x, weights]);
  });
}

Deno.test("rotateHalf() is [−x₂, x₁] over the last axis", async () => {
  await useBackend("cpu");
  const x = tf.tensor4d([1, 2, 3, 4, 5, 6, 7, 8], [1, 1, 2, 4]);
  assert.deepEqual(Array.from(await rotateHalf(x).data()), [-3, -4, 1, 2, -7, -8, 5, 6]);
  assert.deepEqual(Array.from(await rotateHalfByProduct(x).data()), [-3, -4, 1, 2, -7, -8, 5, 6]);
  x.dispose();
});
