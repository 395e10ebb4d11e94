// The OpenBLAS decoder must give forward()'s logits (1e-5 relative, norm-wise) on wasm and cpu:
// prefill then one token at a time, with grouped-query attention, tied and untied heads and left
// padding. Without the library the tests are skipped, unless GIFTWRAP_REQUIRE_BLAS=1.

import assert from "node:assert/strict";
import { relativeError } from "../../_numeric.ts";
import { GQA_CONFIG } from "../../_tiny.ts";
import { tf, useBackend } from "../../../../runtime/engine/backend.ts";
import { loadBlas } from "../../../../runtime/engine/blas.ts";
import { blasDecoder } from "../../../../runtime/engine/kernels/decode.ts";
import {
  forward,
  initParams,
  type ModelConfig,
} from "../../../../runtime/engine/model/transformer.ts";
import { Rng } from "../../../../runtime/engine/random.ts";

const ignore = !loadBlas().ok && Deno.env.get("GIFTWRAP_REQUIRE_BLAS") !== "1";

const CONFIGS: Record<string, ModelConfig> = {
  "grouped-query attention, untied head": GQA_CONFIG,
  "one layer, tied head": {
    vocab: 15,
    dModel: 64,
    layers: 1,
    heads: 2,
    kvHeads: 2,
    headDim: 32,
    ffnDim: 96,
    contextLength: 12,
    tiedEmbeddings: true,
    ropeTheta: 10_000,
    normEps: 1e-5,
  },
  // widths that are not multiples of 4: simd.wat's loops end one value at a time
  "odd widths": {
    vocab: 13,
    dModel: 30,
    layers: 2,
    heads: 3,
    kvHeads: 3,
    headDim: 10,
    ffnDim: 42,
    contextLength: 12,
    tiedEmbeddings: false,
    ropeTheta: 10_000,
    normEps: 1e-5,
  },
};

for (const backend of ["wasm", "cpu"] as const) {
  for (const [what, config] of Object.entries(CONFIGS)) {
    Deno.test({
      name:
        `blasDecoder() on ${backend} (${what}) gives forward()'s logits at every step, rows shared or ended`,
      ignore,
      async fn() {
        await useBackend(backend);
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
          return forward(params, config, t, { padding }).logits.arraySync(); // [B, T, V]
        });
        const decoder = await blasDecoder(params, config, rows, padding, width);
        assert.ok(decoder, "OpenBLAS runs the products, so there is a decoder");
        const columns = (from: number, to: number) =>
          Int32Array.from(
            { length: rows * (to - from) },
            (_, i) => ids[Math.floor(i / (to - from)) * width + from + (i % (to - from))]!,
          );
        let logits = decoder.next(columns(0, prefill), prefill);
        for (let t = prefill - 1; t < width; t++) {
          // From the second token on, row 3 has ended: it runs no more, and its logits are 0.
          const active = t > prefill ? [0, 1, 2, 4] : undefined;
          if (t >= prefill) logits = decoder.next(columns(t, t + 1), 1, active);
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

Deno.test({
  name: "blasDecoder() is null where OpenBLAS does not run the backend's products",
  ignore,
  async fn() {
    const config = CONFIGS["one layer, tied head"]!;
    try {
      await useBackend("wasm", { blas: false });
      const params = initParams(config, new Rng(4));
      assert.equal(await blasDecoder(params, config, 1, [0], 4), null);
      tf.dispose(Object.values(params));
    } finally {
      await useBackend("wasm");
    }
  },
});

Deno.test({
  name:
    "blasDecoder() reads weights again after an update, and a disposed decoder's cache serves the next",
  ignore,
  async fn() {
    const config = CONFIGS["grouped-query attention, untied head"]!;
    await useBackend("wasm");
    const params = initParams(config, new Rng(6));
    const ids = Int32Array.from([1, 5, 6, 7, 0, 1, 9, 10]);
    const padding = [0, 1];
    // Each decoder is disposed, so the next one gets its (not cleared) cache arrays.
    const prefill = async () => {
      const decoder = (await blasDecoder(params, config, 2, padding, 4))!;
      try {
        return decoder.next(ids, 4);
      } finally {
        decoder.dispose();
      }
    };
    const expected = () =>
      tf.tidy(() => {
        const t = tf.tensor2d(ids, [2, 4], "int32");
        return forward(params, config, t, { logitsFrom: 3, padding }).logits.dataSync();
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
