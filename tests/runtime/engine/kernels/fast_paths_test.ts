// The faster formulations the model and the wasm backend use must give the plain ops' results on
// wasm and cpu, forward and gradient (1e-5 relative, norm-wise; most are exact):
// rotate_half as a signed-permutation product, the embedding as a one-hot product, attention's
// small products through OpenBLAS and RMSNorm as one step (agreeing to float32 rounding), RoPE
// fused with the split into heads on wasm (bit-identical), and wasm's Identity and Cast that share
// memory instead of copying it.

import assert from "node:assert/strict";
import { relativeError } from "../../_numeric.ts";
import { oneHotFloat, tf, useBackend } from "../../../../runtime/engine/backend.ts";
import { attentionBlas, blasAttention } from "../../../../runtime/engine/kernels/attention.ts";
import { fusedRmsNorm, fusedRmsNormRuns } from "../../../../runtime/engine/kernels/rms_norm.ts";
import { fusedRopeHeads } from "../../../../runtime/engine/kernels/rope.ts";
import { wasmBackendKernels } from "../../../../runtime/engine/kernels/simd.ts";
import {
  registerSharingKernels,
  unregisterSharingKernels,
} from "../../../../runtime/engine/kernels/share.ts";
import { loadBlas } from "../../../../runtime/engine/blas.ts";
import {
  embed,
  initParams,
  type ModelConfig,
  rope,
  ropeTables,
  rotateHalf,
  splitHeads,
  tokenLogProbs,
} from "../../../../runtime/engine/model/transformer.ts";
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

for (const backend of ["wasm", "cpu"] as const) {
  for (const padding of [null, [0, 3, 1]]) {
    Deno.test({
      name: `blasAttention() on ${backend} equals tfjs's masked softmax attention, ` +
        `forward and gradient (${padding ? "left padding" : "no padding"})`,
      ignore: !loadBlas().ok && Deno.env.get("GIFTWRAP_REQUIRE_BLAS") !== "1",
      async fn() {
        await useBackend(backend);
        const [batch, heads, time, keys, hd] = [3, 2, 4, 6, 8]; // 4 new queries after 2 cached
        const blas = attentionBlas(time, keys, hd);
        assert.ok(blas, "small products on a backend whose products OpenBLAS runs");
        const rng = new Rng(6);
        const tensor = (shape: [number, number, number, number]) =>
          tf.tensor(normalArray(rng, shape.reduce((a, b) => a * b), 2), shape) as tf.Tensor4D;
        const q = tensor([batch, heads, time, hd]);
        const k = tensor([batch, heads, keys, hd]);
        const v = tensor([batch, heads, keys, hd]);
        const weights = tensor([batch, heads, time, hd]);
        const scale = 1 / Math.sqrt(hd);
        // forward()'s tfjs ops: −1e9 on later keys and on each row's padding
        const bias = tf.tensor(
          Array.from({ length: batch * time * keys }, (_, i) => {
            const [b, t, s] = [
              Math.floor(i / (time * keys)),
              Math.floor(i / keys) % time,
              i % keys,
            ];
            return s > keys - time + t || s < (padding?.[b] ?? 0) ? -1e9 : 0;
          }),
          [batch, 1, time, keys],
        );
        const plain = (q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D) =>
          tf.matMul(tf.softmax(tf.add(tf.mul(tf.matMul(q, k, false, true), scale), bias)), v);
        const fast = (q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D) =>
          blasAttention(blas, q, k, v, scale, padding);
        const run = (f: typeof plain) =>
          tf.tidy(() => {
            const value = f(q, k, v).dataSync();
            const loss = (q: tf.Tensor, k: tf.Tensor, v: tf.Tensor) =>
              tf.sum(tf.mul(f(q as tf.Tensor4D, k as tf.Tensor4D, v as tf.Tensor4D), weights));
            const grads = tf.grads(loss)([q, k, v]).map((g) => Float32Array.from(g.dataSync()));
            return [Float32Array.from(value), ...grads];
          });
        const expected = run(plain);
        const before = tf.memory().numTensors;
        const got = run(fast);
        ["value", "dq", "dk", "dv"].forEach((what, i) => {
          const error = relativeError(got[i]!, expected[i]!);
          assert.ok(error < 1e-5, `${what}: relative error ${error}`);
        });
        // What it saves for the gradient goes with the gradient (a forward pass saves nothing).
        assert.equal(tf.memory().numTensors, before);
        tf.dispose([q, k, v, weights, bias]);
      },
    });
  }
}

for (const backend of ["wasm", "cpu"] as const) {
  // 26 columns: on wasm the SIMD loops' one-by-one ends run too
  for (const d of [24, 26]) {
    Deno.test(`fusedRmsNorm() on ${backend} equals tfjs's ops, forward and both gradients (d ${d})`, async () => {
      await useBackend(backend);
      assert.ok(fusedRmsNormRuns());
      const [rows, eps] = [37, 1e-5];
      const rng = new Rng(7);
      const x = tf.tensor2d(normalArray(rng, rows * d, 3), [rows, d]);
      const w = tf.tensor1d(normalArray(rng, d, 1));
      const weights = tf.tensor2d(normalArray(rng, rows * d, 1), [rows, d]);
      const plain = (x: tf.Tensor2D, w: tf.Tensor) =>
        tf.mul(tf.mul(x, tf.rsqrt(tf.add(tf.mean(tf.square(x), -1, true), eps))), w);
      const run = (f: typeof plain) =>
        tf.tidy(() => {
          const value = Float32Array.from(f(x, w).dataSync());
          const loss = (x: tf.Tensor, w: tf.Tensor) =>
            tf.sum(tf.mul(f(x as tf.Tensor2D, w), weights));
          const grads = tf.grads(loss)([x, w]).map((g) => Float32Array.from(g.dataSync()));
          return [value, ...grads];
        });
      const expected = run(plain);
      const before = tf.memory().numTensors;
      const got = run((x, w) => fusedRmsNorm(x, w, eps));
      ["value", "dx", "dw"].forEach((what, i) => {
        const error = relativeError(got[i]!, expected[i]!);
        assert.ok(error < 1e-5, `${what}: relative error ${error}`);
      });
      // What it saves for the gradient goes with the gradient, and a forward pass saves nothing.
      tf.tidy(() => fusedRmsNorm(x, w, eps).dataSync());
      assert.equal(tf.memory().numTensors, before);
      tf.dispose([x, w, weights]);
    });
  }
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

for (const padding of [null, [0, 3, 1]]) {
  for (const hd of [32, 10]) {
    Deno.test(
      `fusedRopeHeads() on wasm gives the tfjs ops' bits, forward and gradient (head width ${hd}, ` +
        `${padding ? "left padding" : "no padding"})`,
      async () => {
        await useBackend("wasm");
        const simd = wasmBackendKernels();
        assert.ok(simd, "the wasm backend exports its memory");
        const [batch, time, heads] = [3, 5, 2];
        const config = { headDim: hd, ropeTheta: 10_000 } as ModelConfig;
        const rng = new Rng(9);
        const x = tf.tensor(normalArray(rng, batch * time * heads * hd, 1), [
          batch * time,
          heads * hd,
        ]);
        const weights = tf.tensor(normalArray(rng, batch * time * heads * hd, 1), [
          batch,
          heads,
          time,
          hd,
        ]);
        const [cos, sin] = ropeTables(config, 2, time, padding); // 2 positions already cached
        const plain = (t: tf.Tensor) =>
          rope(splitHeads(t as tf.Tensor2D, batch, time, heads, hd), cos, sin);
        const fast = (t: tf.Tensor) =>
          fusedRopeHeads(simd, t as tf.Tensor2D, batch, time, heads, hd, cos, sin);
        const before = tf.memory().numTensors;
        const got = valueAndGrad(fast, x, weights);
        assert.equal(tf.memory().numTensors, before, "no tensor left behind");
        const expected = valueAndGrad(plain, x, weights);
        assert.deepEqual(got.value, expected.value);
        assert.deepEqual(got.grad, expected.grad);
        tf.dispose([x, weights, cos, sin]);
      },
    );
  }
}
