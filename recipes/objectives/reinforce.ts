/**
 * An objective of your own, as a recipe names it: `customObjective("./objectives/reinforce.ts",
 * { export: "reinforce", reads: { reference: false } })`. It implements the runtime's `Objective`
 * contract and passes the same conformance suite as the presets. It is composed from the
 * building blocks the presets are made of (`giftwrap/runtime`: advantages, sequence sums, the
 * batch check), so it shares their exactness: a group of equal rewards gives advantages of
 * exactly 0.
 *
 * REINFORCE with a group-mean baseline and no importance ratio:
 *   A_i = r_i − mean_g r                      (a constant)
 *   L   = −(1/B) Σ_i A_i · Σ_t mask[i,t] · logp[i,t]
 * Left out on purpose: std scaling, clipping, a KL term. Options: `scale` multiplies the loss.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import {
  type AdvantageAxis,
  advantages,
  checkBatch,
  type Objective,
  sequenceSum,
} from "../../runtime/mod.ts";

/** The options a recipe passes as `customObjective(…, { options: { scale } })`. */
export interface ReinforceOptions {
  /** Multiplies the loss. @default 1 */
  scale?: number;
}

/** r − mean_g r, unscaled: Dr. GRPO's advantage. */
const GROUP_MEAN: AdvantageAxis = { baseline: "group-mean", scale: "none", epsilon: 0 };

/** REINFORCE with a group-mean baseline. */
export const reinforce: Objective<ReinforceOptions> = {
  name: "reinforce",
  loss(batch, options) {
    checkBatch(batch, "the reinforce loss");
    const { logp, mask, rewards, groupSize } = batch;
    return tf.tidy(() => {
      const advantage = advantages(rewards, groupSize, GROUP_MEAN); // [B] constants
      const sequenceLogp = sequenceSum(logp, mask); // [B]
      const loss = tf.mul(tf.neg(tf.mean(tf.mul(advantage, sequenceLogp))), options.scale ?? 1);
      return {
        loss: loss as tf.Scalar,
        metrics: { advantageAbs: tf.mean(tf.abs(advantage)) as tf.Scalar },
      };
    });
  },
};
