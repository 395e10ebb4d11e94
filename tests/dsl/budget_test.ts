import assert from "node:assert/strict";
import {
  activationBytes,
  forwardBytes,
  forwardFlops,
  matmulParams,
  type ModelShape,
  parameterCount,
  samplingBytes,
  samplingFlops,
  trainFlops,
} from "../../dsl/budget.ts";
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
