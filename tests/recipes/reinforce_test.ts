import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { reinforce } from "../../recipes/objectives/reinforce.ts";
import { runObjectiveConformance } from "../runtime/rl/objectives/_conformance.ts";

// Equal rewards in a group give A = 0 and so a zero gradient anywhere.
runObjectiveConformance(reinforce, {}, { name: "reinforce", zeroAdvantageGradient: "anywhere" });

Deno.test("reinforce loss is −mean(A · Σ logp) with a group-mean baseline", async () => {
  await tf.setBackend("cpu");
  tf.tidy(() => {
    // One group of 2: rewards [1, 0] → A = [0.5, −0.5]; Σ logp = [−1, −3] (the mask drops −9).
    const { loss } = reinforce.loss({
      logp: tf.tensor2d([[-0.5, -0.5], [-3, -9]]),
      oldLogp: tf.zeros([2, 2]),
      mask: tf.tensor2d([[1, 1], [1, 0]]),
      rewards: tf.tensor1d([1, 0]),
      groupSize: 2,
    }, { scale: 2 });
    // −mean(0.5·(−1), −0.5·(−3)) · 2 = −((−0.5 + 1.5) / 2) · 2 = −1
    assert.ok(Math.abs(loss.dataSync()[0]! - -1) < 1e-6);
  });
});
