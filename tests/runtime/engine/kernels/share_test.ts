// wasm's Identity and Cast that share memory instead of copying it
// (runtime/engine/kernels/share.ts) must give the copying kernels' model gradients, and leave a
// clone readable after its source is gone; its Slice, copying within the heap, gives wasm's.

import assert from "node:assert/strict";
import { relativeError } from "../../_numeric.ts";
import { tf, useBackend } from "../../../../runtime/engine/backend.ts";
import {
  registerSharingKernels,
  unregisterSharingKernels,
} from "../../../../runtime/engine/kernels/share.ts";
import {
  initParams,
  type ModelConfig,
  tokenLogProbs,
} from "../../../../runtime/engine/model/transformer.ts";
import { Rng } from "../../../../runtime/engine/random.ts";

Deno.test("wasm's sharing Identity and Cast give the copying kernels' model gradients", async () => {
  const { kernels } = await useBackend("wasm");
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
      () => tf.tidy(() => tf.sum(tokenLogProbs(kernels, params, config, ids, 4))),
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

Deno.test("wasm's in-heap Slice gives the copying kernel's values, whole rows or strided", async () => {
  await useBackend("wasm");
  const x = tf.tensor3d(Float32Array.from({ length: 4 * 5 * 6 }, (_, i) => i * 0.5 - 7), [4, 5, 6]);
  const ids = tf.tensor2d(Int32Array.from({ length: 12 }, (_, i) => i * 3), [3, 4], "int32");
  const slices = () =>
    [
      tf.slice(x, [1, 0, 0], [2, 5, 6]), // whole rows: copied within the heap
      tf.slice(x, [2, 3, 0], [1, 2, 6]), // contiguous within a row
      tf.slice(x, [0, 1, 2], [4, 3, 3]), // strided: wasm's own kernel
      tf.slice(ids, [1, 0], [2, 4]),
      tf.slice(tf.reshape(x, [120]), [7], [50]),
    ].map((t) => ({ shape: t.shape, dtype: t.dtype, values: Array.from(t.dataSync()) }));
  try {
    unregisterSharingKernels();
    const copied = tf.tidy(slices);
    registerSharingKernels();
    const before = tf.memory().numTensors;
    const inHeap = tf.tidy(slices);
    assert.equal(tf.memory().numTensors, before, "a tensor left behind");
    assert.deepEqual(inHeap, copied);
    assert.deepEqual(inHeap[0]!.values.slice(0, 3), [8, 8.5, 9]); // x[1, 0, 0…2] = 30·0.5 − 7, …
  } finally {
    registerSharingKernels();
    tf.dispose([x, ids]);
  }
});

Deno.test("wasm's Tile copying blocks within the heap gives wasm's own, every rank and dtype", async () => {
  await useBackend("wasm");
  const cases: [number[], number[], "float32" | "int32"][] = [
    [[5], [3], "float32"],
    [[2, 3], [2, 1], "float32"],
    [[2, 3], [1, 4], "int32"],
    [[2, 2, 1, 6], [1, 1, 7, 1], "float32"], // grouped-query attention's keys
    [[3, 1, 2, 2, 3], [2, 3, 1, 2, 2], "float32"],
    [[2, 0, 3], [2, 2, 2], "float32"],
  ];
  const tiles = () =>
    cases.map(([shape, reps, dtype], i) => {
      const size = shape.reduce((a, b) => a * b, 1);
      const values = Array.from({ length: size }, (_, j) => (j * 7 + i) % 23 - 11.5);
      return tf.tidy(() => {
        const x = tf.tensor(dtype === "int32" ? values.map(Math.trunc) : values, shape, dtype);
        const y = tf.tile(x, reps);
        return { shape: y.shape, values: Array.from(y.dataSync()) };
      });
    });
  try {
    const copying = tf.getKernel(tf.Tile, "wasm")!.kernelFunc;
    const copied = tiles();
    unregisterSharingKernels();
    assert.notEqual(tf.getKernel(tf.Tile, "wasm")!.kernelFunc, copying, "two kernels compared");
    const own = tiles();
    assert.deepEqual(copied, own);
  } finally {
    registerSharingKernels();
  }
});
