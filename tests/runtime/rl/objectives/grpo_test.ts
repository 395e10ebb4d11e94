import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { objectiveAxes } from "../../../../dsl/objectives.ts";
import { advantages } from "../../../../runtime/rl/objectives/axes.ts";
import { standardize } from "../../../../runtime/rl/objectives/group.ts";
import { grpo } from "../../../../runtime/rl/objectives/grpo.ts";
import {
  assertAllClose,
  assertClose,
  disposeBatch,
  gradientOf,
  handBatch,
  logpGradient,
  mulberry32,
  randomBatchData,
  runObjectiveConformance,
  scalarOf,
  toBatch,
} from "./_conformance.ts";

await tf.setBackend("cpu");

// With its default KL term (β = 0.04), equal rewards still leave β·k3, whose gradient vanishes
// only where logp = refLogp: zero advantages give a zero gradient at the reference.
runObjectiveConformance(grpo, {}, { zeroAdvantageGradient: "at-reference" });
// Without it, the loss is a pure policy-gradient term: zero advantages give zero gradient anywhere.
runObjectiveConformance(grpo, { beta: 0 }, { name: "grpo (β = 0)" });

const LOG = Math.log;

/**
 * Two completions of one group, off-policy: row 0 (r = 1, A > 0) has ratios 1.1 and 1.5 (clipped
 * to 1.2) and a padded token; row 1 (r = 0, A < 0) has ratios 0.5 (clipped to 0.8), 0.9 and 1.
 */
function offPolicyBatch() {
  return handBatch({
    logp: [[LOG(1.1), LOG(1.5), 7], [LOG(0.5), LOG(0.9), 0]],
    oldLogp: [[0, 0, 0], [0, 0, 0]],
    mask: [[1, 1, 0], [1, 1, 1]],
    rewards: [1, 0],
    groupSize: 2,
  });
}

Deno.test("grpo loss, gradient and metrics on hand-built ratios (β = 0)", () => {
  const a = 0.5 / (Math.SQRT1_2 + 1e-4); // |A|: mean 0.5, sample std √0.5, ε = 1e-4
  const batch = offPolicyBatch();
  const { loss, metrics } = grpo.loss(batch, { beta: 0 });
  // row 0: −a·(1.1 + 1.2)/2 = −1.15a; row 1: a·(0.8 + 0.9 + 1)/3 = 0.9a; mean over sequences
  assertClose(scalarOf(loss), (-1.15 * a + 0.9 * a) / 2, 1e-6, "loss");
  assert.deepEqual(Object.keys(metrics).sort(), [
    "advantageAbs",
    "clipHigh",
    "clipLow",
    "ratioMean",
  ]);
  assertClose(scalarOf(metrics.clipHigh), 1 / 5, 1e-7, "clipHigh: w = 1.5 with A > 0");
  assertClose(scalarOf(metrics.clipLow), 1 / 5, 1e-7, "clipLow: w = 0.5 with A < 0");
  assertClose(scalarOf(metrics.ratioMean), (1.1 + 1.5 + 0.5 + 0.9 + 1) / 5, 1e-6, "ratioMean");
  assertClose(scalarOf(metrics.advantageAbs), a, 1e-6, "advantageAbs");
  // ∂L/∂logp = −A·w / (|y_i|·B) where unclipped, 0 where clipped or padded
  const grad = logpGradient(grpo, batch, { beta: 0 });
  assertAllClose(
    grad.dataSync(),
    [(-a * 1.1) / 4, 0, 0, 0, (a * 0.9) / 6, (a * 1) / 6],
    1e-6,
    "gradient",
  );
  tf.dispose([loss, metrics, grad]);
  disposeBatch(batch);
});

Deno.test("grpo KL term is β·k3 aggregated per sequence, with the gradient towards the reference", () => {
  // equal rewards: A = 0 whatever the ratio, so the loss is the KL term alone
  const batch = handBatch({
    logp: [[-1, -2], [-1.5, -1]],
    oldLogp: [[-1.2, -1.9], [-1.4, -1]],
    refLogp: [[-1.5, -1.5], [-1.5, -4]], // d = ref − logp = [−0.5, 0.5 | 0, padding]
    mask: [[1, 1], [1, 0]],
    rewards: [0.3, 0.3],
    groupSize: 2,
  });
  const k3 = [Math.exp(-0.5) - 0.5, Math.exp(0.5) - 1.5];
  const expected = (0.04 * ((k3[0]! + k3[1]!) / 2 + 0)) / 2;
  const { loss, metrics } = grpo.loss(batch, {});
  assertClose(scalarOf(loss), expected, 1e-7, "loss");
  assertClose(scalarOf(metrics.klPenalty), expected, 1e-7, "klPenalty");
  assert.equal(scalarOf(metrics.advantageAbs), 0);
  const grad = gradientOf(grpo, batch, {});
  // β·(1 − e^d)/(|y|·B): above the reference (d < 0) positive, below it negative, at it 0
  assertAllClose(
    grad,
    [(0.04 * (1 - Math.exp(-0.5))) / 4, (0.04 * (1 - Math.exp(0.5))) / 4, 0, 0],
    1e-7,
    "gradient",
  );
  assert.ok(grad[0]! > 0 && grad[1]! < 0, "descent pulls logp towards refLogp");
  tf.dispose([loss, metrics]);
  disposeBatch(batch);
});

Deno.test("grpo advantage equals GIFT's Â for binary rewards with k of G correct (property 3)", () => {
  const groupSize = 8;
  const rand = mulberry32(3);
  const rewards = Array.from(
    { length: groupSize + 1 },
    (_, k) =>
      Array.from({ length: groupSize }, (_, j) => (j < k ? 1 : 0))
        .map((r) => ({ r, key: rand() }))
        .sort((x, y) => x.key - y.key)
        .map((x) => x.r),
  ).flat(); // group k has k correct completions
  const rows = rewards.length;
  const r = tf.tensor1d(rewards);
  const giftAdvantage = standardize(r, groupSize, { epsilon: 1e-6, singleton: "identity" });
  const axes = objectiveAxes({ kind: "grpo", beta: 0, epsilon: 0.2, epsilonHigh: 0.2 });
  const grpoAdvantage = advantages(r, groupSize, axes.advantage!);
  const gift = Array.from(giftAdvantage.dataSync());
  assertAllClose(grpoAdvantage.dataSync(), gift, 1e-3, "A (ε = 1e-4 against 1e-6)");
  // the same A read off the GRPO gradient on-policy with T = 1: ∂L/∂logp_i = −A_i / B
  const zeros = Array.from({ length: rows }, () => [0]);
  const batch = handBatch({
    logp: zeros,
    mask: zeros.map(() => [1]),
    rewards,
    groupSize,
  });
  const grad = logpGradient(grpo, batch, { beta: 0 });
  assertAllClose(Array.from(grad.dataSync()).map((g) => -g * rows), gift, 1e-3, "A from ∇");
  tf.dispose([r, giftAdvantage, grpoAdvantage, grad]);
  disposeBatch(batch);
});

Deno.test("grpo policy-gradient term is 0 at an equal-reward group (property 5)", () => {
  const data = randomBatchData(5, { groups: 3, groupSize: 4, length: 5, regimes: ["random"] });
  data.rewards = data.rewards.map((_, i) => [0.1, 0.7, 1 / 3][Math.floor(i / 4)] ?? 0);
  const batch = toBatch(data, true);
  // β = 0: the loss and its gradient are exactly 0, off-policy and all
  const { loss, metrics } = grpo.loss(batch, { beta: 0 });
  assert.equal(scalarOf(loss), 0);
  assert.equal(scalarOf(metrics.advantageAbs), 0);
  const grad = logpGradient(grpo, batch, { beta: 0 });
  assert.ok(Array.from(grad.dataSync()).every((g) => g === 0), "zero gradient");
  // β > 0: only the KL term is left
  const withKl = grpo.loss(batch, { beta: 0.04 });
  assert.ok(scalarOf(withKl.loss) > 0);
  assertClose(scalarOf(withKl.loss), scalarOf(withKl.metrics.klPenalty), 1e-7, "loss = KL term");
  tf.dispose([loss, metrics, grad, withKl.loss, withKl.metrics]);
  disposeBatch(batch);
});

Deno.test("grpo takes its KL to oldLogp (the rollout reference) when refLogp is absent", () => {
  const data = randomBatchData(13, { groups: 2, groupSize: 4, length: 5, regimes: ["random"] });
  const without = toBatch(data, false);
  const rollout = toBatch({ ...data, refLogp: data.oldLogp }, true);
  const declared = toBatch(data, true);
  const [a, b, c] = [without, rollout, declared].map((batch) => {
    const { loss, metrics } = grpo.loss(batch, { beta: 1 });
    const value = scalarOf(loss);
    tf.dispose([loss, metrics]);
    return value;
  });
  assert.equal(a, b);
  assert.ok(Math.abs(a! - c!) > 1e-4, "refLogp is read when given");
  [without, rollout, declared].forEach(disposeBatch);
});

Deno.test("grpo clips asymmetrically with epsilonHigh, and epsilonHigh defaults to epsilon", () => {
  const batch = offPolicyBatch();
  const value = (options: Parameters<typeof grpo.loss>[1]) => {
    const { loss, metrics } = grpo.loss(batch, options);
    const out = [scalarOf(loss), scalarOf(metrics.clipHigh)];
    tf.dispose([loss, metrics]);
    return out;
  };
  const a = 0.5 / (Math.SQRT1_2 + 1e-4);
  // ε_high = 0.6: the ratio 1.5 of row 0 is no longer clipped
  const [wide, clipHigh] = value({ beta: 0, epsilonHigh: 0.6 });
  assertClose(wide!, (-1.3 * a + 0.9 * a) / 2, 1e-6, "loss with ε_high = 0.6");
  assert.equal(clipHigh, 0);
  assert.deepEqual(
    value({ beta: 0, epsilon: 0.3 }),
    value({ beta: 0, epsilon: 0.3, epsilonHigh: 0.3 }),
  );
  disposeBatch(batch);
});
