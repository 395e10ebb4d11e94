// The wasm kernel set (runtime/engine/kernels/wasm.ts) against the plain tfjs ops, with OpenBLAS
// running the products and without it: simd.wat's RoPE fused with the split into heads, and its
// AdamW update, give the tfjs ops' bits; the embedding's hand-written gradient sums by id.

import assert from "node:assert/strict";
import { needsBlas } from "../../_blas.ts";
import { runKernelConformance } from "./_conformance.ts";
import { tf, useBackend } from "../../../../runtime/engine/backend.ts";
import { ONE_HOT_EMBED_MAX_VOCAB, wasmEmbed } from "../../../../runtime/engine/kernels/wasm.ts";
import { Rng } from "../../../../runtime/engine/random.ts";

runKernelConformance("wasm", {
  expect: { name: "wasm", blas: true },
  requirement: needsBlas,
  exact: ["ropeHeads", "adamW"],
});

runKernelConformance("wasm", {
  blas: false,
  expect: { name: "wasm", blas: false },
  exact: ["ropeHeads", "adamW"],
});

Deno.test("wasmEmbed()'s table gradient sums dy's rows at each id, repeats included (large vocabulary)", async () => {
  await useBackend("wasm");
  const [vocab, d] = [ONE_HOT_EMBED_MAX_VOCAB + 977, 3];
  const ids = [5, 2000, 5, 0, vocab - 1, 5, 2000];
  const rng = new Rng(41);
  const w = Float32Array.from({ length: ids.length * d }, () => rng.normal());
  const table = tf.tensor2d(Float32Array.from({ length: vocab * d }, () => rng.normal()), [
    vocab,
    d,
  ]);
  const idsT = tf.tensor1d(ids, "int32");
  const weights = tf.tensor2d(w, [ids.length, d]);
  const g = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(wasmEmbed(t, idsT, vocab), weights)))(table);
  const got = await g.data();
  // By hand: row v of the gradient is the sum of w's rows i with ids[i] = v, in float64.
  const want = new Float64Array(vocab * d);
  ids.forEach((id, i) => {
    for (let j = 0; j < d; j++) want[id * d + j] = want[id * d + j]! + w[i * d + j]!;
  });
  assert.deepEqual(g.shape, [vocab, d]);
  for (let k = 0; k < want.length; k++) {
    assert.ok(Math.abs(got[k]! - want[k]!) < 1e-6, `gradient[${k}]: ${got[k]} vs ${want[k]}`);
  }
  // The lookup itself is the table's rows.
  const rows = await wasmEmbed(table, idsT, vocab).data();
  const values = await table.data();
  ids.forEach((id, i) => {
    for (let j = 0; j < d; j++) assert.equal(rows[i * d + j], values[id * d + j]);
  });
  tf.dispose([table, idsT, weights, g]);
});
