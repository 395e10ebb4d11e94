import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { onlineDpo } from "../../../../runtime/rl/objectives/online_dpo.ts";
import {
  assertAllClose,
  assertClose,
  disposeBatch,
  gradientOf,
  handBatch,
  logpGradient,
  presetReadsReference,
  randomBatchData,
  runObjectiveConformance,
  scalarOf,
  toBatch,
} from "./_conformance.ts";

await tf.setBackend("cpu");

// Equal rewards in every group (zero advantages) leave no pair at all: the loss is an exact 0,
// still computed from logp, so the gradient is zero for any logp.
runObjectiveConformance(onlineDpo, {}, { zeroAdvantageGradient: "anywhere" });

const softplus = (x: number) => Math.log1p(Math.exp(x)); // −log σ(−x)
const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));

/**
 * Group 0 (rewards 0.2, 0.9, 0.5): u = [0, 0.5, 0.4], so the pair is row 1 (chosen) against row 0
 * (rejected); group 1 has the rewards `second` and random log-probs.
 */
function pairBatch(second: number[]) {
  return handBatch({
    logp: [[-1, -2], [-0.5, -3], [-1, -1], [-2, -1], [-0.3, -0.7], [-1.1, -0.2]],
    oldLogp: [[-1, -1], [-1, -1], [-1, -1], [-1, -1], [-1, -1], [-1, -1]],
    refLogp: [[-1.5, -1.5], [-1, -9], [-1.2, -1.2], [-1, -1.5], [-0.9, -0.4], [-1.4, -0.6]],
    mask: [[1, 1], [1, 0], [1, 1], [1, 1], [1, 1], [1, 1]],
    rewards: [0.2, 0.9, 0.5, ...second],
    groupSize: 3,
  });
}

Deno.test("onlineDpo with all-tied groups: loss 0, zero gradient, no pairs", () => {
  const data = randomBatchData(4, { groups: 3, groupSize: 4, length: 5, regimes: ["random"] });
  data.rewards = data.rewards.map((_, i) => [0.3, 1, 0.1][Math.floor(i / 4)] ?? 0);
  const batch = toBatch(data, true);
  const { loss, metrics } = onlineDpo.loss(batch, {});
  assert.equal(scalarOf(loss), 0);
  assert.equal(scalarOf(metrics.pairs), 0);
  assert.equal(scalarOf(metrics.margin), 0);
  const grad = logpGradient(onlineDpo, batch, {});
  assert.ok(Array.from(grad.dataSync()).every((g) => g === 0), "zero gradient");
  tf.dispose([loss, metrics, grad]);
  disposeBatch(batch);
});

Deno.test("onlineDpo with one pair: −log σ(β·(u_c − u_r)) and its gradient", () => {
  const batch = pairBatch([1, 1, 1]); // group 1 is tied
  const { loss, metrics } = onlineDpo.loss(batch, {}); // β = 0.1
  assertClose(scalarOf(loss), softplus(-0.05), 1e-7, "loss"); // u_c − u_r = 0.5
  assert.equal(scalarOf(metrics.pairs), 1);
  assertClose(scalarOf(metrics.margin), 0.05, 1e-7, "margin");
  // ∂L/∂u_c = −β·σ(−β·0.5), ∂L/∂u_r = +β·σ(−β·0.5), on masked tokens; the middle row and the
  // tied group get nothing
  const g = 0.1 * sigmoid(-0.05);
  assertAllClose(
    gradientOf(onlineDpo, batch, {}),
    [g, g, -g, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    1e-7,
    "gradient",
  );
  tf.dispose([loss, metrics]);
  disposeBatch(batch);
});

Deno.test("onlineDpo averages over the pairs of several groups", () => {
  const batch = pairBatch([0, 1, 0]); // group 1: row 4 chosen, row 3 (first of the worst) rejected
  const u3 = -2 - 1 + 1 + 1.5; // −0.5
  const u4 = -0.3 - 0.7 + 0.9 + 0.4; // 0.3
  const { loss, metrics } = onlineDpo.loss(batch, { beta: 0.5 });
  const expected = (softplus(-0.5 * 0.5) + softplus(-0.5 * (u4 - u3))) / 2;
  assertClose(scalarOf(loss), expected, 1e-6, "loss");
  assert.equal(scalarOf(metrics.pairs), 2);
  assertClose(scalarOf(metrics.margin), (0.5 * 0.5 + 0.5 * (u4 - u3)) / 2, 1e-6, "margin");
  tf.dispose([loss, metrics]);
  disposeBatch(batch);
});

Deno.test("onlineDpo picks the first row among equal best or equal worst rewards", () => {
  const batch = handBatch({
    logp: [[-1], [-1], [-1], [-1], [-1], [-1]],
    refLogp: [[-1], [-1], [-1], [-1], [-1], [-1]],
    mask: [[1], [1], [1], [1], [1], [1]],
    rewards: [1, 1, 0, 1, 0, 0],
    groupSize: 3,
  });
  // u = 0 everywhere: ∂L/∂u = ∓β·σ(0)/2 per pair (two pairs)
  const g = (0.1 * 0.5) / 2;
  assertAllClose(
    gradientOf(onlineDpo, batch, {}),
    [-g, 0, g, -g, g, 0],
    1e-8,
    "gradient",
  );
  disposeBatch(batch);
});

Deno.test("onlineDpo takes oldLogp as the reference when refLogp is absent", () => {
  const data = randomBatchData(9, { groups: 2, groupSize: 4, length: 5, regimes: ["random"] });
  const value = (batch: ReturnType<typeof toBatch>) => {
    const { loss, metrics } = onlineDpo.loss(batch, {});
    const out = scalarOf(loss);
    tf.dispose([loss, metrics]);
    disposeBatch(batch);
    return out;
  };
  assert.equal(
    value(toBatch(data, false)),
    value(toBatch({ ...data, refLogp: data.oldLogp }, true)),
  );
  assert.equal(presetReadsReference("onlineDpo"), true);
});
