import assert from "node:assert/strict";
import {
  activationBytes,
  blockBytes,
  forwardBytes,
  forwardFlops,
  LARGE_VOCAB,
  LOG_SOFTMAX_CHUNK_VALUES,
  loraParamCount,
  loraValues,
  matmulParams,
  type ModelShape,
  parameterCount,
  samplingBytes,
  samplingFlops,
  trainFlops,
  updateActivations,
} from "../../dsl/budget.ts";
import { LOG_SOFTMAX_CHUNK_VALUES as KERNEL_CHUNK } from "../../runtime/engine/kernels/log_softmax.ts";
import { compile, grpo } from "../../mod.ts";
import { base } from "./_fixtures.ts";

// A model small enough to count by hand: d 4, 2 heads of width 2, 1 key/value head, ffn 8, vocab 5.
const tiny: ModelShape = {
  layers: 1,
  dModel: 4,
  heads: 2,
  kvHeads: 1,
  ffnDim: 8,
  vocab: 5,
  tiedEmbeddings: true,
};

Deno.test("parameterCount() and matmulParams() count a tiny model by hand", () => {
  // q, o: 4·4 each; k, v: 4·2 each; gate, up, down: 4·8 each; head: 4·5.
  assert.equal(matmulParams(tiny), 16 + 16 + 8 + 8 + 3 * 32 + 20);
  // embedding 5·4, the block's matrices 144 and two norms 8, the final norm 4.
  assert.equal(parameterCount(tiny), 20 + 144 + 8 + 4);
  assert.equal(parameterCount({ ...tiny, tiedEmbeddings: false }), 176 + 20);
});

Deno.test("forwardFlops(), trainFlops() and samplingFlops() count a tiny model by hand", () => {
  // 2 rows × (2 · 164 · 3 tokens + 4 · d 4 · 3² for dense attention) = 2 · (984 + 144).
  assert.equal(forwardFlops(tiny, 2, 3), 2256);
  assert.equal(trainFlops(tiny, 2, 3), 3 * 2256);
  // prefill over 3 prompt tokens, then 2 single-token steps attending to 4 and 5 positions.
  assert.equal(samplingFlops(tiny, 2, 3, 3), 2256 + 2 * (328 + 16 * 4) + 2 * (328 + 16 * 5));
  assert.equal(samplingFlops(tiny, 2, 3, 1), 2256);
});

Deno.test("activationBytes(), samplingBytes() and forwardBytes() count a tiny model by hand", () => {
  // per token: 10·4 + 4·8 + 2·2 heads·3 + 3·5 vocab = 99 floats; 2 rows × 3 tokens × 4 bytes.
  assert.equal(activationBytes(tiny, 2, 3), 2 * 3 * 99 * 4);
  // keys and values: 2 · 1 layer · 2 rows · 6 tokens · width 2; logits 2 · 5; 4 bytes each.
  assert.equal(samplingBytes(tiny, 2, 6), 4 * (48 + 10));
  // without gradients, per token: 16·4 + 5·8 + 4·2 heads·3 + 3·5 vocab = 143 floats.
  assert.equal(forwardBytes(tiny, 2, 3), 2 * 3 * 143 * 4);
});

Deno.test("LOG_SOFTMAX_CHUNK_VALUES is the log-softmax kernel's", () => {
  assert.equal(LOG_SOFTMAX_CHUNK_VALUES, KERNEL_CHUNK);
});

Deno.test("loraParamCount() and loraValues() count a tiny model's adapters by hand", () => {
  // rank 2 on q [4, 4], v [4, 2] and down [8, 4]: 2·(4 + 4) + 2·(4 + 2) + 2·(8 + 4) = 52.
  const lora = { rank: 2, targets: ["q_proj", "v_proj", "down_proj"] as const };
  assert.equal(loraParamCount(tiny, lora), 52);
  assert.equal(loraParamCount({ ...tiny, layers: 3 }, lora), 3 * 52);
  // x·A (2) and the update (out) of each, and the unfused SwiGLU's extra ffn-wide product (8).
  assert.equal(loraValues(tiny, lora), (2 + 4) + (2 + 2) + (2 + 4) + 8);
  assert.equal(loraValues(tiny, { rank: 2, targets: ["q_proj"] }), 6);
  assert.equal(loraValues(tiny, null), 0);
});

Deno.test("updateActivations() counts a plain, a checkpointed and a large-vocabulary pass by hand", () => {
  // Plain, small vocabulary: twice activationBytes, the vocabulary at every position (an upper
  // bound the estimate keeps below LARGE_VOCAB).
  const pass = { rows: 2, promptTokens: 1, newTokens: 2, gradientCheckpointing: false, lora: null };
  assert.deepEqual(updateActivations(tiny, pass), {
    blocks: blockBytes(tiny, 2, 3),
    blockInputs: 0,
    logSoftmax: 2 * 4 * 3 * 2 * 3 * 5,
    total: 2 * activationBytes(tiny, 2, 3),
  });
  // per token: 10·4 + 4·8 + 2·2·3 = 84, kept and as much again in the backward pass.
  assert.equal(blockBytes(tiny, 2, 3), 2 * 4 * 6 * 84);
  // Checkpointed, 3 layers: one block at a time and the 3 blocks' inputs and the last output.
  const deep = { ...tiny, layers: 3 };
  const checkpointed = updateActivations(deep, { ...pass, gradientCheckpointing: true });
  assert.equal(checkpointed.blocks, blockBytes(deep, 2, 3));
  assert.equal(checkpointed.blockInputs, 4 * 4 * 6 * 4);
  // From LARGE_VOCAB on, the logits of the 2 completion positions only, and twice more while the
  // softmax is recomputed and becomes their gradient (the forward's chunks are gone by then).
  const large = { ...tiny, vocab: LARGE_VOCAB };
  assert.equal(updateActivations(large, pass).logSoftmax, 4 * 3 * 4 * LARGE_VOCAB);
  // 2²⁰ values a row, 12 rows of logits: however many chunks the forward took, 3 × 12 rows.
  const huge = { ...tiny, vocab: 2 ** 20 };
  const wide = { ...pass, rows: 4, newTokens: 3 };
  assert.equal(updateActivations(huge, wide).logSoftmax, 4 * 3 * 12 * 2 ** 20);
});

Deno.test("forwardBytes() counts logits where they are computed from LARGE_VOCAB on, in chunks", () => {
  const large = { ...tiny, vocab: 2 ** 20 }; // 4 rows of logits a chunk
  const layer = 16 * 4 + 5 * 8 + 4 * 2 * 3; // 128 values per token and layer
  // A prefill: the last position's logits for each of 2 rows, two transients of 2 rows.
  assert.equal(
    forwardBytes(large, 2, 3, { logitPositions: 1 }),
    4 * (2 * 3 * layer + (2 + 2 * 2) * 2 ** 20),
  );
  // 6 rows of logits (2 rows × 3 positions): the transients are a chunk of 4 rows each.
  assert.equal(forwardBytes(large, 2, 3), 4 * (2 * 3 * layer + (6 + 2 * 4) * 2 ** 20));
  // Below it, every position's three rows, whatever logitPositions says.
  assert.equal(forwardBytes(tiny, 2, 3, { logitPositions: 1 }), forwardBytes(tiny, 2, 3));
});

Deno.test("compile() counts the base model's parameters by hand", () => {
  const plan = compile(base);
  // d 64, ffn ⌈8·64/3/32⌉·32 = 192, vocab 15, tied: 15·64 + 2·(4·64² + 3·64·192 + 2·64) + 64.
  assert.equal(plan.model.ffnDim, 192);
  assert.equal(plan.model.params, 960 + 2 * (16384 + 36864 + 128) + 64);
  assert.equal(plan.budget.perStep.peakBytes.weights, 4 * plan.model.params);
  assert.equal(plan.budget.perStep.peakBytes.optimizer, 12 * plan.model.params);
});

Deno.test("compile() adds the per-step budget up and multiplies it by the steps", () => {
  const plan = compile({ ...base, miniBatches: 4, epochs: 2 });
  const { perStep, run } = plan.budget;
  const f = perStep.flops;
  assert.equal(f.total, f.sample + f.oldLogp + f.reference + f.update);
  assert.equal(f.update, 2 * trainFlops(plan.model, 128, 11));
  assert.equal(run.flops.train, 20 * f.total);
  assert.equal(run.flops.total, run.flops.warmStart + run.flops.train + run.flops.eval);
  assert.equal(perStep.tokensSampled, 128 * 4);
  assert.equal(run.tokensSampled, 20 * 128 * 4);
  assert.equal(perStep.optimizerSteps, 8);
  const m = perStep.peakBytes;
  assert.equal(m.total, m.weights + m.optimizer + m.reference + m.activations);
});

Deno.test("compile() reads old log-probs in a separate pass only with several optimiser steps", () => {
  const one = compile({ ...base, objective: grpo() });
  assert.equal(one.budget.perStep.flops.oldLogp, 0);
  assert.equal(one.stages.some((s) => s.name === "old log-probs"), false);
  assert.equal(one.budget.perStep.forwardPasses, 2); // reference + update
  const two = compile({ ...base, objective: grpo(), miniBatches: 2 });
  assert.equal(two.budget.perStep.flops.oldLogp, forwardFlops(two.model, 128, 11));
  assert.equal(two.budget.perStep.forwardPasses, 3);
  const rollout = compile({ ...base, reference: "rollout" }); // GIFT, 2 mini-batches
  assert.ok(rollout.stages.some((s) => s.name === "old log-probs"));
  assert.equal(rollout.stages.some((s) => s.name === "reference log-probs"), false);
});
