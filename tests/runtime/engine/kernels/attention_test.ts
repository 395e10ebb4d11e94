// Attention's small products through OpenBLAS, one (row, head) at a time
// (runtime/engine/kernels/attention.ts), must give tfjs's masked softmax attention on wasm and cpu,
// forward and gradient (1e-5 relative, norm-wise). The kernel sets choose it for small products
// only (`blasAttentionRuns`); their conformance suite compares what they choose.

import assert from "node:assert/strict";
import { relativeError } from "../../_numeric.ts";
import { BLAS_PROBE, needsBlas } from "../../_blas.ts";
import { tf, useBackend } from "../../../../runtime/engine/backend.ts";
import { blasAttention, blasAttentionRuns } from "../../../../runtime/engine/kernels/attention.ts";
import { cpuValues, wasmValues } from "../../../../runtime/engine/kernels/memory.ts";
import { normalArray, Rng } from "../../../../runtime/engine/random.ts";

Deno.test("blasAttentionRuns() takes products too small for BatchMatMul to send to OpenBLAS", () => {
  assert.equal(blasAttentionRuns(4, 6, 8), true);
  assert.equal(blasAttentionRuns(63, 64, 64), true); // 258,048 multiply-adds
  assert.equal(blasAttentionRuns(64, 64, 64), false); // 262,144: BLAS_MIN_FLOPS
});

for (const backend of ["wasm", "cpu"] as const) {
  for (const padding of [null, [0, 3, 1]]) {
    Deno.test({
      ...needsBlas(
        `blasAttention() on ${backend} equals tfjs's masked softmax attention, ` +
          `forward and gradient (${padding ? "left padding" : "no padding"})`,
      ),
      async fn() {
        assert.ok(
          BLAS_PROBE.ok,
          `OpenBLAS is required here: ${!BLAS_PROBE.ok && BLAS_PROBE.reason}`,
        );
        const blas = BLAS_PROBE.blas;
        await useBackend(backend);
        const values = backend === "wasm" ? wasmValues(tf.backend() as never) : cpuValues;
        const [batch, heads, time, keys, hd] = [3, 2, 4, 6, 8]; // 4 new queries after 2 cached
        const rng = new Rng(6);
        const tensor = (shape: [number, number, number, number]) =>
          tf.tensor(normalArray(rng, shape.reduce((a, b) => a * b), 2), shape) as tf.Tensor4D;
        const q = tensor([batch, heads, time, hd]);
        const k = tensor([batch, heads, keys, hd]);
        const v = tensor([batch, heads, keys, hd]);
        const weights = tensor([batch, heads, time, hd]);
        const scale = 1 / Math.sqrt(hd);
        // the tfjs ops: −1e9 on later keys and on each row's padding
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
          blasAttention(blas, values, q, k, v, scale, padding);
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
