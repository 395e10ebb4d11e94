import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { rloo } from "../../../../runtime/rl/objectives/rloo.ts";
import {
  assertAllClose,
  assertClose,
  disposeBatch,
  gradientOf,
  handBatch,
  mulberry32,
  runObjectiveConformance,
  scalarOf,
} from "./_conformance.ts";

await tf.setBackend("cpu");

// The default KL in the reward (β = 0.05) shifts each reward by β·Σ(oldLogp − refLogp): equal
// rewards give equal shaped rewards, hence zero advantages, only where oldLogp = refLogp.
runObjectiveConformance(rloo, {}, { zeroAdvantageGradient: "at-reference" });
// Without it, zero advantages give a zero gradient for any logp.
runObjectiveConformance(rloo, { beta: 0 }, { name: "rloo (β = 0)" });

Deno.test("rloo advantages sum to 0 and equal G/(G−1)·(r − mean r), read off the gradient (property 6)", () => {
  const rand = mulberry32(61);
  const groupSize = 5;
  const rewards = Array.from({ length: 2 * groupSize }, () => rand());
  const rows = rewards.length;
  const batch = handBatch({
    logp: rewards.map(() => [-1]),
    mask: rewards.map(() => [1]),
    rewards,
    groupSize,
  });
  // on-policy, T = 1, β = 0: ∂L/∂logp_i = −A_i / B
  const a = gradientOf(rloo, batch, { beta: 0 }).map((g) => -g * rows);
  for (let g = 0; g < 2; g++) {
    const group = rewards.slice(g * groupSize, (g + 1) * groupSize);
    const sum = group.reduce((s, r) => s + r, 0);
    const got = a.slice(g * groupSize, (g + 1) * groupSize);
    assertClose(got.reduce((s, v) => s + v, 0), 0, 1e-5, `Σ A, group ${g}`);
    const loo = group.map((r) => r - (sum - r) / (groupSize - 1));
    const scaled = group.map((r) => (groupSize / (groupSize - 1)) * (r - sum / groupSize));
    assertAllClose(got, loo, 1e-5, "A = r − mean of the others");
    assertAllClose(got, scaled, 1e-5, "A = G/(G−1)·(r − mean r)");
  }
  disposeBatch(batch);
});

Deno.test("rloo subtracts β·Σ mask·(oldLogp − refLogp) from each reward before the baseline", () => {
  const batch = handBatch({
    logp: [[-1, -2], [-0.5, -1]], // on-policy: oldLogp = logp
    refLogp: [[-1.5, -2], [-0.8, -7]], // Σ mask·(old − ref) = 0.5 and 0.3 (the padding is ignored)
    mask: [[1, 1], [1, 0]],
    rewards: [1, 0],
    groupSize: 2,
  });
  // r' = [1 − 0.1·0.5, 0 − 0.1·0.3] = [0.95, −0.03]: A = ±0.98
  const { loss, metrics } = rloo.loss(batch, { beta: 0.1 });
  assertClose(scalarOf(metrics.advantageAbs), 0.98, 1e-6, "advantageAbs");
  assertClose(scalarOf(metrics.klPenalty), (0.1 * (0.5 + 0.3)) / 2, 1e-7, "klPenalty");
  assertClose(scalarOf(loss), 0, 1e-6, "on-policy loss −mean A = 0");
  // ∂L/∂logp[i,t] = −A_i·s_i·mask / (|y_i|·B), s = 1
  assertAllClose(
    gradientOf(rloo, batch, { beta: 0.1 }),
    [-0.98 / 4, -0.98 / 4, 0.98 / 2, 0],
    1e-6,
    "gradient",
  );
  // β = 0: A = ±1 and no penalty
  const plain = rloo.loss(batch, { beta: 0 });
  assert.equal(scalarOf(plain.metrics.advantageAbs), 1);
  assert.equal(plain.metrics.klPenalty, undefined);
  // the default β = 0.05: r' = [0.975, −0.015], A = ±0.99
  const byDefault = rloo.loss(batch, {});
  assertClose(scalarOf(byDefault.metrics.advantageAbs), 0.99, 1e-6, "advantageAbs, β = 0.05");
  tf.dispose([loss, metrics, plain.loss, plain.metrics, byDefault.loss, byDefault.metrics]);
  disposeBatch(batch);
});

Deno.test("rloo clips the sequence ratio symmetrically at 1 ± 0.2", () => {
  // A = ±1 (β = 0); sequence ratios 1.25 (A > 0) and 0.75 (A < 0) are both clipped
  const batch = handBatch({
    logp: [[Math.log(1.25), Math.log(1.25)], [Math.log(0.75), 3]],
    oldLogp: [[0, 0], [0, 0]],
    mask: [[1, 1], [1, 0]],
    rewards: [1, 0],
    groupSize: 2,
  });
  const { loss, metrics } = rloo.loss(batch, { beta: 0 });
  assertClose(scalarOf(loss), (-1.2 + 0.8) / 2, 1e-6, "loss");
  assert.equal(scalarOf(metrics.clipLow), 0.5);
  assert.equal(scalarOf(metrics.clipHigh), 0.5);
  assertAllClose(gradientOf(rloo, batch, { beta: 0 }), [0, 0, 0, 0], 0, "gradient");
  tf.dispose([loss, metrics]);
  disposeBatch(batch);
});
