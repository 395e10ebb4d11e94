// The update's log-softmax estimate (dsl/budget.ts, `updateActivations`) against the live buffers
// of a real forward and backward pass on wasm, for a model whose logits outweigh everything else:
// one small block, 16,384 or more tokens in the vocabulary.

import assert from "node:assert/strict";
import { tf, useBackend } from "../../runtime/engine/backend.ts";
import {
  initParams,
  type ModelConfig,
  tokenLogProbs,
} from "../../runtime/engine/model/transformer.ts";
import { Rng } from "../../runtime/engine/random.ts";
import { GQA_CONFIG } from "../runtime/_tiny.ts";
import { peakBytes } from "../runtime/engine/_peak_bytes.ts";
import { updateActivations } from "../../dsl/budget.ts";

/** One block of width 16 before a vocabulary of `vocab`. */
function model(vocab: number): ModelConfig {
  return {
    ...GQA_CONFIG,
    vocab,
    layers: 1,
    dModel: 16,
    heads: 2,
    kvHeads: 1,
    headDim: 8,
    ffnDim: 32,
    contextLength: 80,
  };
}

/**
 * The most bytes live at once in one checkpointed forward and backward pass of `rows` rows of 8
 * prompt + 64 completion tokens, less the parameters' gradients (which the estimate counts apart).
 */
async function measured(config: ModelConfig, rows: number): Promise<number> {
  const { kernels } = await useBackend("wasm");
  const params = initParams(config, new Rng(21));
  const rng = new Rng(22);
  const ids = tf.tensor2d(
    Int32Array.from({ length: rows * 72 }, () => rng.int(config.vocab)),
    [rows, 72],
    "int32",
  );
  const vars = Object.values(params);
  const peak = peakBytes(() => {
    const { value, grads } = tf.variableGrads(
      () =>
        tf.tidy(() =>
          tf.neg(
            tf.sum(tokenLogProbs(kernels, params, config, ids, 8, 1, undefined, {
              gradientCheckpointing: true,
            })),
          ) as tf.Scalar
        ),
      vars,
    );
    tf.dispose([value, ...Object.values(grads)]);
  });
  const gradients = 4 * vars.reduce((n, v) => n + v.size, 0);
  tf.dispose([ids, ...vars]);
  return peak - gradients;
}

for (const [vocab, rows] of [[16_384, 4], [16_384, 8], [65_536, 4]] as const) {
  Deno.test(`updateActivations() is within 15% of a pass's live peak on wasm (V ${vocab}, ${rows} rows)`, async () => {
    const config = model(vocab);
    const estimate = updateActivations(config, {
      rows,
      promptTokens: 8,
      newTokens: 64,
      gradientCheckpointing: true,
      lora: null,
    }).total;
    const peak = await measured(config, rows);
    const ratio = peak / estimate;
    assert.ok(ratio > 0.85 && ratio < 1.15, `measured ${peak} B, estimated ${estimate} B`);
  });
}
