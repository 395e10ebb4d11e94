// wasm's Identity and Cast that share memory instead of copying it
// (runtime/engine/kernels/share.ts) must give the copying kernels' model gradients, and leave a
// clone readable after its source is gone.

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
