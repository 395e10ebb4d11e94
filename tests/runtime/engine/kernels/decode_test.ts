// The OpenBLAS decoder (runtime/engine/kernels/decode.ts) must give forward()'s logits (1e-5
// relative, norm-wise) on wasm and cpu: prefill then one token at a time, with grouped-query
// attention, tied and untied heads and left padding; a row that ended runs no more. Without the
// library these tests are skipped, saying so, unless GIFTWRAP_REQUIRE_BLAS=1. (Every kernel set's
// decoder against the plain tfjs forward(): _conformance.ts.)

import assert from "node:assert/strict";
import { relativeError } from "../../_numeric.ts";
import { BLAS_PROBE, needsBlas } from "../../_blas.ts";
import { tf, useBackend } from "../../../../runtime/engine/backend.ts";
import type { Blas } from "../../../../runtime/engine/blas.ts";
import { blasDecoder } from "../../../../runtime/engine/kernels/decode.ts";
import { forward, initParams } from "../../../../runtime/engine/model/transformer.ts";
import { Rng } from "../../../../runtime/engine/random.ts";
import { DECODER_CONFIGS } from "./_conformance.ts";

/** The OpenBLAS these tests run with (they are skipped without it). */
function openBlas(): Blas {
  assert.ok(BLAS_PROBE.ok, `OpenBLAS is required here: ${!BLAS_PROBE.ok && BLAS_PROBE.reason}`);
  return BLAS_PROBE.blas;
}

const CONFIGS = DECODER_CONFIGS;

for (const backend of ["wasm", "cpu"] as const) {
  for (const [what, config] of Object.entries(CONFIGS)) {
    Deno.test({
      ...needsBlas(
        `blasDecoder() on ${backend} (${what}) gives forward()'s logits at every step, rows shared or ended`,
      ),
      async fn() {
        const { kernels } = await useBackend(backend);
        const params = initParams(config, new Rng(4));
        // Large weights, so that the logits are far from 0 and a wrong step shows.
        for (const p of Object.values(params)) p.assign(tf.tidy(() => tf.mul(p, 20)));
        const rng = new Rng(5);
        const [rows, width, prefill] = [5, 10, 6];
        const padding = [0, 2, 0, 5, 1];
        const ids = Int32Array.from(
          { length: rows * width },
          (_, i) => i % width < padding[Math.floor(i / width)]! ? 0 : 3 + rng.int(config.vocab - 3),
        );
        // Rows 0 and 2 share their prompt (they share one prefill), then draw different tokens.
        ids.copyWithin(2 * width, 0, prefill);
        const full = tf.tidy(() => {
          const t = tf.tensor2d(ids, [rows, width], "int32");
          return forward(kernels, params, config, t, { padding }).logits.arraySync(); // [B, T, V]
        });
        const decoder = await blasDecoder(openBlas(), params, config, rows, padding, width);
        const columns = (from: number, to: number) =>
          Int32Array.from(
            { length: rows * (to - from) },
            (_, i) => ids[Math.floor(i / (to - from)) * width + from + (i % (to - from))]!,
          );
        let logits = await decoder.next(columns(0, prefill), prefill);
        for (let t = prefill - 1; t < width; t++) {
          // From the second token on, row 3 has ended: it runs no more, and its logits are 0.
          const active = t > prefill ? [0, 1, 2, 4] : undefined;
          if (t >= prefill) logits = await decoder.next(columns(t, t + 1), 1, active);
          const expected = full.flatMap((row, b) =>
            active && !active.includes(b) ? new Array<number>(config.vocab).fill(0) : row[t]!
          );
          const error = relativeError(logits, expected);
          assert.ok(error < 1e-5, `position ${t}: relative error ${error}`);
        }
        assert.throws(() => decoder.next(columns(0, 1), 1), /Cannot run the model on 11 positions/);
        decoder.dispose();
        assert.throws(() => decoder.next(columns(0, 1), 1), /the decoder was disposed/);
        tf.dispose(Object.values(params));
      },
    });
  }
}

for (const backend of ["wasm", "cpu"] as const) {
  Deno.test(`useBackend("${backend}") without OpenBLAS samples through forward(): the prefill's bits`, async () => {
    const config = CONFIGS["one layer, tied head"]!;
    try {
      const { kernels } = await useBackend(backend, { blas: false });
      const params = initParams(config, new Rng(4));
      const ids = Int32Array.from([1, 5, 6, 7, 0, 1, 9, 10]);
      const padding = [0, 1];
      const decoder = await kernels.decoder(params, config, 2, padding, 4);
      const logits = await decoder.next(ids, 4);
      decoder.dispose();
      const expected = tf.tidy(() => {
        const t = tf.tensor2d(ids, [2, 4], "int32");
        return forward(kernels, params, config, t, { logitsFrom: 3, padding }).logits.dataSync();
      });
      assert.deepEqual(logits, expected);
      tf.dispose(Object.values(params));
    } finally {
      await useBackend(backend);
    }
  });
}

Deno.test({
  ...needsBlas(
    "blasDecoder() reads weights again after an update, and a disposed decoder's cache serves the next",
  ),
  async fn() {
    const config = CONFIGS["grouped-query attention, untied head"]!;
    const { kernels } = await useBackend("wasm");
    const params = initParams(config, new Rng(6));
    const ids = Int32Array.from([1, 5, 6, 7, 0, 1, 9, 10]);
    const padding = [0, 1];
    // Each decoder is disposed, so the next one gets its (not cleared) cache arrays.
    const prefill = async () => {
      const decoder = await blasDecoder(openBlas(), params, config, 2, padding, 4);
      try {
        return await decoder.next(ids, 4);
      } finally {
        decoder.dispose();
      }
    };
    const expected = () =>
      tf.tidy(() => {
        const t = tf.tensor2d(ids, [2, 4], "int32");
        return forward(kernels, params, config, t, { logitsFrom: 3, padding }).logits.dataSync();
      });
    const first = await prefill();
    assert.ok(relativeError(first, expected()) < 1e-5);
    // The same weights again (read once, kept), in the first decoder's cache: the same logits.
    assert.deepEqual(await prefill(), first);
    // An update (as the optimiser's `assign`): the decoder must see the new weights.
    for (const p of Object.values(params)) p.assign(tf.tidy(() => tf.mul(p, 3)));
    const after = await prefill();
    const error = relativeError(after, expected());
    assert.ok(error < 1e-5, `after the update: relative error ${error}`);
    assert.ok(relativeError(after, first) > 1e-3, "the logits changed with the weights");
    tf.dispose(Object.values(params));
  },
});

Deno.test({
  ...needsBlas(
    "the wasm set's decoder reads the weights in the heap, and again after the heap grew mid-sampling",
  ),
  async fn() {
    const config = CONFIGS["grouped-query attention, untied head"]!;
    const { kernels } = await useBackend("wasm");
    const params = initParams(config, new Rng(7));
    const ids = Int32Array.from([1, 5, 6, 7, 4, 0, 1, 9, 10, 3]); // [2, 5]
    const padding = [0, 1];
    const expected = tf.tidy(() => {
      const t = tf.tensor2d(ids, [2, 5], "int32");
      return forward(kernels, params, config, t, { padding }).logits.arraySync(); // [2, 5, V]
    });
    const backend = tf.backend() as unknown as { wasm: { HEAPF32: Float32Array } };
    const decoder = await kernels.decoder(params, config, 2, padding, 5);
    let big: tf.Tensor | null = null;
    try {
      const prefill = Int32Array.from([1, 5, 6, 7, 0, 1, 9, 10]);
      const first = await decoder.next(prefill, 4);
      const at = (t: number) => expected.flatMap((row) => row[t]!);
      assert.ok(relativeError(first, at(3)) < 1e-5);
      // Grow the heap past its size: the buffer the decoder's views were on is detached.
      const before = backend.wasm.HEAPF32.buffer;
      big = tf.zeros([before.byteLength / 4 + (1 << 20)]);
      assert.notEqual(backend.wasm.HEAPF32.buffer, before, "the heap grew");
      assert.equal(before.byteLength, 0, "its old buffer is detached");
      const second = await decoder.next(Int32Array.from([4, 3]), 1);
      const error = relativeError(second, at(4));
      assert.ok(error < 1e-5, `after the heap grew: relative error ${error}`);
    } finally {
      decoder.dispose();
      big?.dispose();
      tf.dispose(Object.values(params));
    }
  },
});

Deno.test({
  ...needsBlas(
    "blasDecoder() runs a step's small products on one thread, then gives the threads back",
  ),
  async fn() {
    const config = CONFIGS["grouped-query attention, untied head"]!;
    const { kernels } = await useBackend("wasm");
    const params = initParams(config, new Rng(8));
    const calls: number[] = [];
    const real = openBlas();
    const blas: Blas = { ...real, threads: 2, setThreads: (n) => calls.push(n) };
    const decoder = await blasDecoder(blas, params, config, 2, [0, 0], 6);
    try {
      const logits = await decoder.next(Int32Array.from([1, 5, 6, 1, 9, 10]), 3);
      assert.deepEqual(calls, [1, 2], "one thread for 6 rows, then the library's 2 again");
      const expected = tf.tidy(() => {
        const t = tf.tensor2d([[1, 5, 6], [1, 9, 10]], [2, 3], "int32");
        return forward(kernels, params, config, t, { logitsFrom: 2 }).logits.dataSync();
      });
      assert.ok(relativeError(logits, expected) < 1e-5);
    } finally {
      decoder.dispose();
      tf.dispose(Object.values(params));
    }
  },
});
