/**
 * An objective of your own, as a recipe names it: `customObjective("./objectives/reinforce.ts",
 * { export: "reinforce", reads: { reference: false } })`. It implements the runtime's `Objective`
 * contract (`runtime/rl/objectives/types.ts`) and passes the same conformance suite as the presets.
 *
 * REINFORCE with a group-mean baseline and no importance ratio:
 *   A_i = r_i − mean_g r                      (a constant)
 *   L   = −(1/B) Σ_i A_i · Σ_t mask[i,t] · logp[i,t]
 * Left out on purpose: std scaling, clipping, a KL term. Options: `scale` multiplies the loss.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import type { Objective, ObjectiveBatch } from "../../mod.ts";

/** The options a recipe passes as `customObjective(…, { options: { scale } })`. */
export interface ReinforceOptions {
  /** Multiplies the loss. @default 1 */
  scale?: number;
}

/** REINFORCE with a group-mean baseline. */
export const reinforce: Objective<ReinforceOptions> = {
  name: "reinforce",
  needs: { reference: false },
  loss(batch: ObjectiveBatch, options: ReinforceOptions) {
    const { logp, mask, rewards, groupSize } = batch;
    const rows = rewards.shape[0];
    if (rows % groupSize !== 0) {
      throw new Error(`reinforce: ${rows} rows do not make whole groups of ${groupSize}`);
    }
    return tf.tidy(() => {
      const grouped = tf.reshape(rewards, [rows / groupSize, groupSize]); // [P, G]
      // r − mean r, with the mean taken about the group's first reward so that a group of equal
      // rewards gives exactly 0 (a float32 mean of three 0.1s is not exactly 0.1).
      const first = tf.slice(grouped, [0, 0], [-1, 1]); // [P, 1]
      const centred = tf.sub(grouped, first);
      const advantage = tf.reshape(tf.sub(centred, tf.mean(centred, 1, true)), [rows]); // [B]
      const sequenceLogp = tf.sum(tf.mul(logp, mask), 1); // [B]
      const loss = tf.mul(tf.neg(tf.mean(tf.mul(advantage, sequenceLogp))), options.scale ?? 1);
      return {
        loss: loss as tf.Scalar,
        metrics: { advantageAbs: tf.mean(tf.abs(advantage)) as tf.Scalar },
      };
    });
  },
};
