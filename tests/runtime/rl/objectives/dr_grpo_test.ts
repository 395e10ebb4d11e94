import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { drGrpo } from "../../../../runtime/rl/objectives/dr_grpo.ts";
import {
  assertAllClose,
  assertClose,
  disposeBatch,
  handBatch,
  logpGradient,
  presetReadsReference,
  runObjectiveConformance,
  scalarOf,
} from "./_conformance.ts";

await tf.setBackend("cpu");

// No KL term by default: the loss is a pure policy-gradient term, so zero advantages give a zero
// gradient for any logp.
runObjectiveConformance(drGrpo, {}, { zeroAdvantageGradient: "anywhere" });

const LOG = Math.log;

/**
 * Row 0 (A > 0): ratios 1.1 and 1.5 (clipped to 1.2), one padded token; row 1 (A < 0): 0.5
 * (clipped to 0.8), 0.9 and 1. `padding` more padded columns widen T.
 */
function offPolicyBatch(rewards: number[], padding = 0) {
  const pad = (row: number[], value: number) => [...row, ...Array(padding).fill(value)];
  return handBatch({
    logp: [pad([LOG(1.1), LOG(1.5), 7], 3), pad([LOG(0.5), LOG(0.9), 0], 3)],
    oldLogp: [pad([0, 0, 0], 0), pad([0, 0, 0], 0)],
    mask: [pad([1, 1, 0], 0), pad([1, 1, 1], 0)],
    rewards,
    groupSize: 2,
  });
}

Deno.test("drGrpo loss and gradient on hand-built ratios: mean-centred A, normaliser B·T", () => {
  const batch = offPolicyBatch([1, 0]); // A = ±0.5, no std scaling
  const { loss, metrics } = drGrpo.loss(batch, {});
  // Σ mask·ℓ = −0.5·(1.1 + 1.2) + 0.5·(0.8 + 0.9 + 1) = 0.2, over B·T = 2·3
  assertClose(scalarOf(loss), 0.2 / 6, 1e-7, "loss");
  assert.deepEqual(Object.keys(metrics).sort(), [
    "advantageAbs",
    "clipHigh",
    "clipLow",
    "ratioMean",
  ]);
  assert.equal(scalarOf(metrics.advantageAbs), 0.5);
  const grad = logpGradient(drGrpo, batch, {});
  assertAllClose(
    grad.dataSync(),
    [(-0.5 * 1.1) / 6, 0, 0, 0, (0.5 * 0.9) / 6, 0.5 / 6],
    1e-7,
    "gradient: −A·w/(B·T) where unclipped",
  );
  tf.dispose([loss, metrics, grad]);
  disposeBatch(batch);
});

Deno.test("drGrpo does not scale advantages by the group std", () => {
  const losses = [[1, 0], [2, 0]].map((rewards) => {
    const batch = offPolicyBatch(rewards);
    const { loss, metrics } = drGrpo.loss(batch, {});
    const value = scalarOf(loss);
    tf.dispose([loss, metrics]);
    disposeBatch(batch);
    return value;
  });
  assertClose(losses[1]!, 2 * losses[0]!, 1e-7, "doubling the rewards doubles the loss");
});

Deno.test("drGrpo divides by the padded length T, not by the completion lengths", () => {
  const batch = offPolicyBatch([1, 0], 3); // T = 6: three more padded columns
  const { loss, metrics } = drGrpo.loss(batch, {});
  assertClose(scalarOf(loss), 0.2 / 12, 1e-7, "loss over B·T = 2·6");
  tf.dispose([loss, metrics]);
  disposeBatch(batch);
});

Deno.test("drGrpo reads no reference by default; with β > 0 it adds β·Σ mask·k3 / (B·T)", () => {
  assert.equal(presetReadsReference("drGrpo"), false);
  const base = offPolicyBatch([1, 0]);
  const refLogp = tf.tensor2d([[0, 0, 0], [0, 0, 0]]); // k3 against log-ratios as above
  const batch = { ...base, refLogp };
  const value = (options: { beta?: number }) => {
    const { loss, metrics } = drGrpo.loss(batch, options);
    const out = { loss: scalarOf(loss), keys: Object.keys(metrics).sort() };
    tf.dispose([loss, metrics]);
    return out;
  };
  assertClose(value({}).loss, 0.2 / 6, 1e-7, "refLogp ignored at β = 0");
  const k3 = (w: number) => 1 / w + Math.log(w) - 1; // exp(ref − logp) − (ref − logp) − 1
  const kl = [1.1, 1.5, 0.5, 0.9, 1].reduce((s, w) => s + k3(w), 0) / 6;
  const withKl = value({ beta: 0.1 });
  assertClose(withKl.loss, 0.2 / 6 + 0.1 * kl, 1e-6, "loss with β = 0.1");
  assert.ok(withKl.keys.includes("klPenalty"));
  refLogp.dispose();
  disposeBatch(base);
});
