import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { una } from "../../../../runtime/rl/objectives/una.ts";
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

// UNA has no advantages: each σ(β·u_i) is regressed onto σ(r_i) on its own, so equal rewards
// still move every u_i towards r_i/β, at the reference included. The zero-advantage check does
// not apply.
runObjectiveConformance(una, {}, { zeroAdvantageGradient: "never" });

const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));

Deno.test("una loss and gradient on a hand-computed case", () => {
  const batch = handBatch({
    logp: [[-1, -1], [-0.5, -0.5], [-2, 5]],
    refLogp: [[-1, -1], [-1.5, -1.5], [-1, 0]], // u = [0, 2, −1] (row 2's padding ignored)
    mask: [[1, 1], [1, 1], [1, 0]],
    rewards: [0, 1, -1],
    groupSize: 3,
  });
  const { loss, metrics } = una.loss(batch, { beta: 1 });
  const d1 = sigmoid(2) - sigmoid(1);
  assertClose(scalarOf(loss), (0 + d1 ** 2 + 0) / 3, 1e-7, "loss"); // σ(−1) = σ(r) on row 2
  assertClose(scalarOf(metrics.implicitReward), 1 / 3, 1e-7, "implicitReward");
  // ∂L/∂u_i = (2/B)·(σ(βu_i) − σ(r_i))·β·σ'(βu_i), on each masked token
  const g = (2 / 3) * d1 * sigmoid(2) * (1 - sigmoid(2));
  assertAllClose(gradientOf(una, batch, { beta: 1 }), [0, 0, g, g, 0, 0], 1e-7, "∇");
  tf.dispose([loss, metrics]);
  disposeBatch(batch);
});

Deno.test("una loss with the default β = 0.03 matches mean (σ(β·u) − σ(r))²", () => {
  const data = randomBatchData(21, { groups: 2, groupSize: 4, length: 6, regimes: ["random"] });
  data.logp = data.logp.map((row) => row.map((v, t) => (t === 0 ? v + 20 : v))); // |u| ≫ 1/β
  data.rewards = data.rewards.map((r) => 4 * r - 2);
  const u = data.logp.map((row, i) =>
    row.reduce((s, v, t) => s + data.mask[i]![t]! * (v - data.refLogp[i]![t]!), 0)
  );
  const expected = u.reduce(
    (s, ui, i) => s + (sigmoid(0.03 * ui) - sigmoid(data.rewards[i]!)) ** 2,
    0,
  ) / u.length;
  const batch = toBatch(data, true);
  const { loss, metrics } = una.loss(batch, {});
  assertClose(scalarOf(loss), expected, 1e-6, "loss");
  assert.ok(expected > 0.01, `the case is not trivial (${expected})`);
  tf.dispose([loss, metrics]);
  disposeBatch(batch);
});
