import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { dapo } from "../../../../runtime/rl/objectives/dapo.ts";
import { grpo } from "../../../../runtime/rl/objectives/grpo.ts";
import {
  assertAllClose,
  assertClose,
  disposeBatch,
  gradientOf,
  handBatch,
  presetReadsReference,
  randomBatchData,
  runObjectiveConformance,
  scalarOf,
  toBatch,
} from "./_conformance.ts";

await tf.setBackend("cpu");

// No KL term by default: the loss is a pure policy-gradient term, so zero advantages give a zero
// gradient for any logp.
runObjectiveConformance(dapo, {}, { zeroAdvantageGradient: "anywhere" });

const LOG = Math.log;
const A = 0.5 / (Math.SQRT1_2 + 1e-4); // |A| for rewards [1, 0]: mean 0.5, std √0.5, ε = 1e-4

Deno.test("dapo loss on hand-built ratios: clip-higher at 1.28 and token-mean", () => {
  const batch = handBatch({
    logp: [[LOG(1.1), LOG(1.5), 7], [LOG(0.5), LOG(0.9), 0]],
    oldLogp: [[0, 0, 0], [0, 0, 0]],
    mask: [[1, 1, 0], [1, 1, 1]],
    rewards: [1, 0],
    groupSize: 2,
  });
  const { loss, metrics } = dapo.loss(batch, {});
  // Σ mask·ℓ = −A·(1.1 + 1.28) + A·(0.8 + 0.9 + 1), over the 5 tokens
  assertClose(scalarOf(loss), (A * (-2.38 + 2.7)) / 5, 1e-6, "loss");
  assertClose(scalarOf(metrics.clipHigh), 1 / 5, 1e-7, "clipHigh");
  assertClose(scalarOf(metrics.clipLow), 1 / 5, 1e-7, "clipLow");
  tf.dispose([loss, metrics]);
  disposeBatch(batch);
});

Deno.test("dapo leaves a ratio of 1.25 with A > 0 unclipped, where GRPO clips it", () => {
  const batch = handBatch({
    logp: [[LOG(1.25)], [LOG(0.75)]],
    oldLogp: [[0], [0]],
    mask: [[1], [1]],
    rewards: [1, 0],
    groupSize: 2,
  });
  // ∂L/∂logp = −A·w / Σ mask unclipped; the lower clip (0.8) binds at 0.75 with A < 0 in both
  assertAllClose(gradientOf(dapo, batch, {}), [(-A * 1.25) / 2, 0], 1e-6, "dapo ∇");
  assertAllClose(gradientOf(grpo, batch, { beta: 0 }), [0, 0], 0, "grpo ∇");
  disposeBatch(batch);
});

Deno.test("dapo weighs every token alike whatever its completion's length (token-mean)", () => {
  // on-policy, lengths 1 and 3: ∂L/∂logp = −A_i / Σ mask for every real token
  const batch = handBatch({
    logp: [[-1, -2, -3], [-1, -1, -1]],
    mask: [[1, 0, 0], [1, 1, 1]],
    rewards: [1, 0],
    groupSize: 2,
  });
  assertAllClose(
    gradientOf(dapo, batch, {}),
    [-A / 4, 0, 0, A / 4, A / 4, A / 4],
    1e-6,
    "gradient",
  );
  disposeBatch(batch);
});

Deno.test("dapo loss ignores the options the trainer acts on (dynamic sampling, truncation)", () => {
  const batch = toBatch(randomBatchData(3, { groups: 3, groupSize: 4, length: 5 }), false);
  const value = (options: Parameters<typeof dapo.loss>[1]) => {
    const { loss, metrics } = dapo.loss(batch, options);
    const out = scalarOf(loss);
    tf.dispose([loss, metrics]);
    return out;
  };
  assert.equal(
    value({ kind: "dapo", dynamicSampling: false, maxSamplingRounds: 3, maskTruncated: true }),
    value({}),
  );
  assert.equal(presetReadsReference("dapo"), false);
  disposeBatch(batch);
});
