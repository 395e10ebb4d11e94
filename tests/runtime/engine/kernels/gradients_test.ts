// The gradients of runtime/engine/kernels/gradients.ts against tfjs-core 4.22's own formulas
// (gradients/*_grad.ts, with `ones(x.shape)` and numbers), bit for bit, on cpu and wasm.

import assert from "node:assert/strict";
import { type BackendName, tf, useBackend } from "../../../../runtime/engine/backend.ts";
import { DEVICE_GRADIENT_KERNELS } from "../../../../runtime/engine/kernels/gradients.ts";
import { normalArray, Rng } from "../../../../runtime/engine/random.ts";

/** dy broadcast back over the reduced axes, as tfjs-core writes it: dy · ones(x.shape). */
function tfjsSpread(dy: tf.Tensor, x: tf.Tensor, axes: number[]): tf.Tensor {
  const kept = x.shape.map((n, i) => (axes.includes(i) ? 1 : n));
  return tf.mul(tf.reshape(dy, kept), tf.ones(x.shape, "float32"));
}

/** Each case: f, and the gradient of Σ f·w as tfjs-core's gradient function computes it. */
const CASES: {
  name: string;
  f: (x: tf.Tensor) => tf.Tensor;
  expected: (x: tf.Tensor, dy: tf.Tensor) => tf.Tensor;
}[] = [
  {
    name: "Mean over the last axis, kept",
    f: (x) => tf.mean(x, -1, true),
    expected: (x, dy) => tf.div(tfjsSpread(dy, x, [1]), 5),
  },
  {
    name: "Mean over everything",
    f: (x) => tf.mean(x),
    expected: (x, dy) => tf.div(tfjsSpread(dy, x, [0, 1]), 15),
  },
  {
    name: "Sum over axis 0",
    f: (x) => tf.sum(x, 0),
    expected: (x, dy) => tfjsSpread(dy, x, [0]),
  },
  {
    name: "Square",
    f: (x) => tf.square(x),
    expected: (x, dy) => tf.mul(dy, tf.mul(tf.cast(x, "float32"), 2)),
  },
  {
    name: "Sqrt",
    f: (x) => tf.sqrt(tf.abs(x)),
    expected: (x, dy) =>
      tf.mul(
        tf.div(dy, tf.mul(tf.sqrt(tf.cast(tf.abs(x), "float32")), 2)),
        tf.sign(x), // abs's gradient
      ),
  },
  {
    name: "Rsqrt",
    f: (x) => tf.rsqrt(tf.abs(x)),
    expected: (x, dy) => tf.mul(tf.neg(tf.div(dy, tf.mul(tf.pow(tf.abs(x), 1.5), 2))), tf.sign(x)),
  },
  {
    name: "Sigmoid",
    f: (x) => tf.sigmoid(x),
    expected: (x, dy) => {
      const y = tf.sigmoid(x);
      return tf.mul(dy, tf.mul(y, tf.sub(tf.scalar(1), y)));
    },
  },
];

Deno.test("registerDeviceGradients() replaces the gradients of the kernels it names", () => {
  assert.deepEqual([...DEVICE_GRADIENT_KERNELS].sort(), [
    "Mean",
    "Rsqrt",
    "Sigmoid",
    "Sqrt",
    "Square",
    "Sum",
  ]);
});

for (const backend of ["cpu", "wasm"] as BackendName[]) {
  for (const { name, f, expected } of CASES) {
    Deno.test(`registerDeviceGradients(): ${name}'s gradient is tfjs-core's, bit for bit, on ${backend}`, async () => {
      await useBackend(backend); // registers them
      const rng = new Rng(3);
      const before = tf.memory().numTensors;
      const [got, want] = tf.tidy(() => {
        const x = tf.tensor2d(normalArray(rng, 15, 1), [3, 5]);
        const y = f(x);
        const w = tf.tensor(normalArray(rng, y.size, 1), y.shape);
        const grad = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(f(t), w)))(x);
        // Σ f·w's gradient reaches f as Mul's gradient: w times the seed 1
        return [grad.dataSync(), expected(x, tf.mul(tf.onesLike(w), w)).dataSync()];
      });
      assert.deepEqual([...got], [...want]);
      assert.ok(got.every(Number.isFinite));
      assert.equal(tf.memory().numTensors, before);
    });
  }
}

Deno.test("registerDeviceGradients(): Mean of [[1, 2, 3], [4, 5, 6]] over its rows spreads dy / 3", async () => {
  await useBackend("cpu");
  const grad = tf.tidy(() =>
    tf.grad((x: tf.Tensor) => tf.sum(tf.mul(tf.mean(x, 1), tf.tensor1d([3, 6]))))(
      tf.tensor2d([[1, 2, 3], [4, 5, 6]]),
    ).arraySync()
  );
  assert.deepEqual(grad, [[1, 1, 1], [2, 2, 2]]);
});
