import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { gspo } from "../../../../runtime/rl/objectives/gspo.ts";
import {
  assertAllClose,
  assertClose,
  disposeBatch,
  gradientOf,
  handBatch,
  randomBatchData,
  runObjectiveConformance,
  scalarOf,
  toBatch,
} from "./_conformance.ts";

await tf.setBackend("cpu");

// No KL term by default: the loss is a pure policy-gradient term, so zero advantages give a zero
// gradient for any logp.
runObjectiveConformance(gspo, {}, { zeroAdvantageGradient: "anywhere" });

const A = 0.5 / (Math.SQRT1_2 + 1e-4); // |A| for rewards [1, 0]: mean 0.5, std √0.5, ε = 1e-4

Deno.test("gspo sequence ratio is exactly 1 on-policy (property 8)", () => {
  const data = randomBatchData(8, { groups: 3, groupSize: 4, length: 6, regimes: ["random"] });
  const batch = toBatch({ ...data, oldLogp: data.logp }, false);
  const { loss, metrics } = gspo.loss(batch, {});
  assert.equal(scalarOf(metrics.ratioMean), 1);
  assert.equal(scalarOf(metrics.clipLow), 0);
  assert.equal(scalarOf(metrics.clipHigh), 0);
  assertClose(scalarOf(loss), 0, 1e-6, "loss = −mean A = 0");
  // ∂L/∂logp[i,t] = −A_i·mask / (|y_i|·B): every token of a sequence gets the same weight
  const rows = data.rewards.length;
  const expected = data.mask.flatMap((mask, i) => {
    const group = data.rewards.slice(i - (i % 4), i - (i % 4) + 4);
    const mean = group.reduce((s, r) => s + r, 0) / 4;
    const std = Math.sqrt(group.reduce((s, r) => s + (r - mean) ** 2, 0) / 3);
    const a = (data.rewards[i]! - mean) / (std + 1e-4);
    const used = mask.reduce((s, m) => s + m, 0);
    return mask.map((m) => (m === 0 ? 0 : -a / (used * rows)));
  });
  assertAllClose(gradientOf(gspo, batch, {}), expected, 1e-6, "gradient");
  tf.dispose([loss, metrics]);
  disposeBatch(batch);
});

Deno.test("gspo clip range is asymmetric: [1 − 3e-4, 1 + 4e-4] on the sequence ratio (property 8)", () => {
  // log-ratios per token (oldLogp = 0); A = +A, −A, +A, −A
  const batch = handBatch({
    logp: [[2e-4, 5e-4], [-3.5e-4, 9], [4.5e-4, 4.5e-4], [-2.5e-4, -2.5e-4]],
    oldLogp: [[0, 0], [0, 0], [0, 0], [0, 0]],
    mask: [[1, 1], [1, 0], [1, 1], [1, 1]],
    rewards: [1, 0, 1, 0],
    groupSize: 2,
  });
  // s = e^3.5e-4 (A > 0, inside), e^−3.5e-4 (A < 0, below 0.9997: clipped),
  //     e^4.5e-4 (A > 0, above 1.0004: clipped), e^−2.5e-4 (A < 0, inside)
  const s0 = Math.exp(3.5e-4);
  const s3 = Math.exp(-2.5e-4);
  const { loss, metrics } = gspo.loss(batch, {});
  assertClose(scalarOf(loss), (A * (-s0 + (1 - 3e-4) - (1 + 4e-4) + s3)) / 4, 2e-6, "loss");
  assertClose(scalarOf(metrics.clipLow), 1 / 4, 1e-7, "clipLow");
  assertClose(scalarOf(metrics.clipHigh), 1 / 4, 1e-7, "clipHigh");
  // ∂L/∂logp[i,t] = −A_i·s_i / (|y_i|·B) unclipped, 0 where clipped
  assertAllClose(
    gradientOf(gspo, batch, {}),
    [(-A * s0) / 8, (-A * s0) / 8, 0, 0, 0, 0, (A * s3) / 8, (A * s3) / 8],
    1e-6,
    "gradient",
  );
  tf.dispose([loss, metrics]);
  disposeBatch(batch);
});
