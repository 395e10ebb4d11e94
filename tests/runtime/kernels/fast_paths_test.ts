// The faster formulations the model and the wasm backend use must give the plain ops' results on
// wasm and cpu, forward and gradient (1e-5 relative, norm-wise; in fact they are exact):
// rotate_half as a signed-permutation product, the embedding as a one-hot product, and wasm's
// Identity and Cast that share memory instead of copying it.

import assert from "node:assert/strict";
import { oneHotFloat, tf, useBackend } from "../../../runtime/backend.ts";
import {
  registerSharingKernels,
  unregisterSharingKernels,
} from "../../../runtime/kernels/share.ts";
import {
  embed,
  initParams,
  type ModelConfig,
  rotateHalf,
  tokenLogProbs,
} from "../../../runtime/model/transformer.ts";
import { normalArray, Rng } from "../../../runtime/random.ts";

/** ‖x − y‖∞ / ‖y‖∞. */
function relativeError(x: ArrayLike<number>, y: ArrayLike<number>): number {
  assert.equal(x.length, y.length);
  let err = 0;
  let scale = 0;
  for (let i = 0; i < y.length; i++) {
    err = Math.max(err, Math.abs(x[i]! - y[i]!));
    scale = Math.max(scale, Math.abs(y[i]!));
  }
  return err / scale;
}

/** A value and the gradient of Σ value·weights, both read out. */
function valueAndGrad(f: (x: tf.Tensor) => tf.Tensor, x: tf.Tensor, weights: tf.Tensor) {
  return tf.tidy(() => {
    const value = f(x).dataSync();
    const grad = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(f(t), weights)))(x).dataSync();
    return { value: Float32Array.from(value), grad: Float32Array.from(grad) };
  });
}

for (const backend of ["wasm", "cpu"] as const) {
  Deno.test(`rotateHalf() on ${backend} equals split, neg and concat, forward and gradient`, async () => {
    await useBackend(backend);
    const shape = [4, 4, 16, 32]; // a product big enough for OpenBLAS where it runs them
    const rng = new Rng(1);
    const x = tf.tensor(normalArray(rng, 8192, 1), shape);
    const weights = tf.tensor(normalArray(rng, 8192, 1), shape);
    const plain = (t: tf.Tensor) => {
      const [x1, x2] = tf.split(t, 2, 3);
      return tf.concat([tf.neg(x2!), x1!], 3);
    };
    const fast = valueAndGrad((t) => rotateHalf(t as tf.Tensor4D), x, weights);
    const expected = valueAndGrad(plain, x, weights);
    assert.ok(relativeError(fast.value, expected.value) < 1e-5);
    assert.ok(relativeError(fast.grad, expected.grad) < 1e-5);
    tf.dispose([x, weights]);
  });

  Deno.test(`embed() on ${backend} equals gather, and its gradient oneHotᵀ · dy`, async () => {
    await useBackend(backend);
    const [vocab, d, n] = [15, 16, 1100]; // a product big enough for OpenBLAS where it runs them
    const rng = new Rng(2);
    const table = tf.tensor(normalArray(rng, vocab * d, 1), [vocab, d]);
    const ids = tf.tensor1d(Int32Array.from({ length: n }, () => rng.int(vocab)), "int32");
    const weights = tf.tensor(normalArray(rng, n * d, 1), [n, d]);
    const fast = valueAndGrad((t) => embed(t, ids, vocab), table, weights);
    const value = tf.tidy(() => tf.gather(table, ids).dataSync());
    const grad = tf.tidy(() =>
      tf.matMul(oneHotFloat(ids, vocab) as tf.Tensor2D, weights as tf.Tensor2D, true).dataSync()
    );
    assert.ok(relativeError(fast.value, value) < 1e-5);
    assert.ok(relativeError(fast.grad, grad) < 1e-5);
    tf.dispose([table, ids, weights]);
  });
}

Deno.test("wasm's sharing Identity and Cast give the copying kernels' model gradients", async () => {
  await useBackend("wasm");
  const config: ModelConfig = {
    vocab: 15,
    dModel: 32,
    layers: 1,
    heads: 2,
    kvHeads: 1,
    headDim: 16,
    ffnDim: 64,
    contextLength: 8,
    tiedEmbeddings: true,
    ropeTheta: 10_000,
    normEps: 1e-5,
  };
  const params = initParams(config, new Rng(3));
  const ids = tf.tensor2d(
    Int32Array.from({ length: 24 }, (_, i) => 3 + (i * 5) % 12),
    [3, 8],
    "int32",
  );
  const gradients = () => {
    const vars = Object.values(params);
    const { value, grads } = tf.variableGrads(
      () => tf.tidy(() => tf.sum(tokenLogProbs(params, config, ids, 4))),
      vars,
    );
    const out = vars.map((v) => Float32Array.from(grads[v.name]!.dataSync()));
    tf.dispose([value, ...Object.values(grads)]);
    return out;
  };
  try {
    unregisterSharingKernels();
    const copied = gradients();
    registerSharingKernels();
    const before = tf.memory();
    const shared = gradients();
    assert.deepEqual(tf.memory(), before, "no tensor or byte left behind");
    copied.forEach((g, i) => assert.ok(relativeError(shared[i]!, g) < 1e-5));
  } finally {
    registerSharingKernels();
    tf.dispose([ids, ...Object.values(params)]);
  }
});

Deno.test("wasm's sharing Identity keeps a clone readable after its source is disposed", async () => {
  await useBackend("wasm");
  const x = tf.tensor1d([1, 2, 3]);
  const bytes = tf.memory().numBytes;
  const copy = tf.clone(x);
  const same = tf.cast(x, "float32");
  const converted = tf.cast(x, "int32");
  x.dispose();
  assert.deepEqual(Array.from(copy.dataSync()), [1, 2, 3]);
  assert.deepEqual(Array.from(same.dataSync()), [1, 2, 3]);
  assert.deepEqual(Array.from(converted.dataSync()), [1, 2, 3]);
  assert.equal(converted.dtype, "int32");
  tf.dispose([copy, same, converted]);
  assert.equal(tf.memory().numBytes, bytes - 12, "the shared buffer is freed with its last tensor");
});
