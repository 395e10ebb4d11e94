import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { reinforce } from "../../recipes/objectives/reinforce.ts";
import type { ObjectiveBatch } from "../../runtime/mod.ts";
import {
  disposeBatch,
  logpGradient,
  randomBatchData,
  runObjectiveConformance,
  toBatch,
} from "../runtime/rl/objectives/_conformance.ts";

// Equal rewards in a group give A = 0 and so a zero gradient anywhere.
runObjectiveConformance(reinforce, {}, {
  name: "reinforce",
  zeroAdvantageGradient: "anywhere",
  reference: false,
});

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

/**
 * The objective this recipe shipped before it was composed from the runtime's building blocks,
 * verbatim: the group mean taken about the group's first reward, as (r − r₀) − mean(r − r₀).
 */
function copiedReinforce(batch: ObjectiveBatch, scale: number) {
  const { logp, mask, rewards, groupSize } = batch;
  const rows = rewards.shape[0];
  return tf.tidy(() => {
    const grouped = tf.reshape(rewards, [rows / groupSize, groupSize]); // [P, G]
    const first = tf.slice(grouped, [0, 0], [-1, 1]); // [P, 1]
    const centred = tf.sub(grouped, first);
    const advantage = tf.reshape(tf.sub(centred, tf.mean(centred, 1, true)), [rows]); // [B]
    const sequenceLogp = tf.sum(tf.mul(logp, mask), 1); // [B]
    const loss = tf.mul(tf.neg(tf.mean(tf.mul(advantage, sequenceLogp))), scale);
    return {
      loss: loss as tf.Scalar,
      metrics: { advantageAbs: tf.mean(tf.abs(advantage)) as tf.Scalar },
    };
  });
}

Deno.test("reinforce from the shared blocks equals the copy it replaced, to float32 rounding", async () => {
  await tf.setBackend("cpu");
  // The blocks centre as r − (r₀ + mean(r − r₀)), the copy as (r − r₀) − mean(r − r₀): the same
  // number, rounded once more or less, so the advantages agree to within one float32 ulp of the
  // largest reward, and are both exactly 0 on a group of equal rewards (the conformance suite).
  // The gradient of either loss in logp[i, t] is −scale·A_i·mask[i, t]/B, so it shows each A_i.
  const ulp = 2 ** -23;
  let compared = 0;
  let differing = 0;
  for (let seed = 1; seed <= 24; seed++) {
    const groupSize = [2, 3, 4, 8][seed % 4]!;
    const data = randomBatchData(seed, { groups: 4, groupSize, length: 6 });
    data.rewards = data.rewards.map((r) => (seed % 3 === 0 ? 100 * r : r));
    const batch = toBatch(data, false);
    const scale = seed % 2 === 0 ? 1 : 2.5;
    const rows = data.rewards.length;
    const largest = Math.max(...data.rewards.map(Math.abs));
    const composed = reinforce.loss(batch, { scale });
    const copied = copiedReinforce(batch, scale);
    const sequenceLogp = data.logp.map((row, i) =>
      row.reduce((sum, v, t) => sum + v * data.mask[i]![t]!, 0)
    );
    const meanAbsLogp = sequenceLogp.reduce((a, v) => a + Math.abs(v), 0) / rows;
    const [l1, l2] = [composed.loss.dataSync()[0]!, copied.loss.dataSync()[0]!];
    assert.ok(
      Math.abs(l1 - l2) <= 2 * ulp * largest * meanAbsLogp * scale,
      `seed ${seed}: loss ${l1} vs the copy's ${l2}`,
    );
    const [a1, a2] = [composed.metrics.advantageAbs!, copied.metrics.advantageAbs!];
    assert.ok(Math.abs(a1.dataSync()[0]! - a2.dataSync()[0]!) <= 2 * ulp * largest);
    const g1 = logpGradient(reinforce, batch, { scale });
    const g2 = tf.grad((logp: tf.Tensor) =>
      copiedReinforce({ ...batch, logp: logp as tf.Tensor2D }, scale).loss
    )(batch.logp);
    const [v1, v2] = [g1.dataSync(), g2.dataSync()];
    for (let k = 0; k < v1.length; k++) {
      compared++;
      if (v1[k] !== v2[k]) differing++;
      assert.ok(
        Math.abs(v1[k]! - v2[k]!) <= (ulp * largest * scale) / rows,
        `seed ${seed}, gradient [${k}]: ${v1[k]} vs the copy's ${v2[k]}`,
      );
    }
    tf.dispose([composed.loss, composed.metrics, copied.loss, copied.metrics, g1, g2]);
    disposeBatch(batch);
  }
  // The comparison sees rounding, not a different formula: most entries agree exactly.
  assert.ok(differing < compared / 2, `${differing} of ${compared} gradient entries differ`);
});
