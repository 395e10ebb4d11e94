/**
 * The clipped-surrogate family (GRPO, Dr. GRPO, DAPO, GSPO, RLOO) as one loss over the shared axes:
 * each preset only resolves its options and reads its point of the axes from `objectiveAxes()` of
 * dsl/objectives.ts, so the table there stays the one source of truth and no code branches on a
 * preset's name.
 *
 * 1. Rewards, with RLOO's KL in the reward: `r'_i = r_i − β·Σ_t mask·(oldLogp − refLogp)`.
 * 2. Advantages `A_i` from the rewards (baseline and scale), constants.
 * 3. Importance ratio: token `w[i,t] = exp(logp − oldLogp)` or sequence
 *    `s_i = exp(Σ_t mask·(logp − oldLogp) / |y_i|)`, and the clipped surrogate
 *    `ℓ = −min(w·A, clip(w, 1 − ε_low, 1 + ε_high)·A)` (a sequence's ℓ_i applies to each token).
 * 4. KL in the loss: `ℓ[i,t] + β·k3[i,t]`, aggregated like the surrogate.
 * 5. Aggregation of the per-token loss: sequence-mean, token-mean or constant.
 *
 * Without `refLogp` in the batch, the reference is the rollout policy (`oldLogp`), so a KL term is
 * then 0 at the first update after sampling.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { deviceConstant } from "../../engine/kernels/constants.ts";
import type { ObjectiveAxes } from "../../../dsl/objectives.ts";
import {
  advantages,
  aggregate,
  type Aggregation,
  clipFractions,
  clippedSurrogate,
  klK3,
  sequenceRatio,
  tokenRatio,
} from "./axes.ts";
import { checkBatch, sequenceSum, stopGradient } from "./group.ts";
import type { ObjectiveBatch, ObjectiveResult } from "./types.ts";

/**
 * The loss of one batch for a preset of the clipped-surrogate family, given its axes. `name` is the
 * preset's (for error messages). Metrics: `clipLow` and `clipHigh` (fractions of masked tokens, or
 * of non-empty sequences for a sequence ratio, where the clip is active on that side), `ratioMean`
 * (over the same entries), `advantageAbs` (mean |A|) and, with a KL coefficient above 0,
 * `klPenalty`: the KL term's value (β times the aggregated k3 in the loss, or the mean of
 * β·Σ_t mask·(oldLogp − refLogp) taken off the reward).
 *
 * @example
 * ```ts
 * import { objectiveAxes } from "../../../dsl/objectives.ts";
 * const axes = objectiveAxes({ kind: "grpo", beta: 0.04, epsilon: 0.2, epsilonHigh: 0.2 });
 * // const { loss, metrics } = surrogateLoss(batch, axes, "grpo");
 * ```
 */
export function surrogateLoss(
  batch: ObjectiveBatch,
  axes: ObjectiveAxes,
  name: string,
): ObjectiveResult {
  const what = `the ${name} loss`;
  checkBatch(batch, what);
  const { advantage: advantageAxis, ratio: ratioAxis, kl } = axes;
  if (advantageAxis === null || ratioAxis === null || axes.aggregation === "pair-mean") {
    throw new Error(
      `Cannot compute ${what} as its axes are not a clipped surrogate: ` +
        `advantage ${JSON.stringify(advantageAxis)}, ratio ${JSON.stringify(ratioAxis)}, ` +
        `aggregation '${axes.aggregation}'`,
    );
  }
  const aggregation: Aggregation = axes.aggregation;
  const { logp, oldLogp, mask, rewards, groupSize } = batch;
  const refLogp = batch.refLogp ?? oldLogp; // [B, T] rollout reference when none declared
  return tf.tidy(() => {
    const metrics: Record<string, tf.Scalar> = {};
    // 1) rewards, less the KL to the reference when it is placed in the reward (a constant)
    let shaped = rewards; // [B]
    if (kl !== null && kl.placement === "reward") {
      const klSum = sequenceSum(tf.sub(oldLogp, refLogp), mask); // [B]
      shaped = tf.sub(rewards, tf.mul(klSum, deviceConstant(kl.beta))); // [B]
      metrics.klPenalty = tf.mean(
        tf.mul(stopGradient(klSum), deviceConstant(kl.beta)),
      ) as tf.Scalar;
    }
    // 2) advantages, constants
    const advantage = advantages(shaped, groupSize, advantageAxis); // [B]
    // 3) importance ratio and the clipped surrogate, one value per token or per sequence
    let surrogate: tf.Tensor2D; // [B, T] or [B, 1]
    let ratio: tf.Tensor; // [B, T] or [B]
    let weights: tf.Tensor; // like ratio: which entries the ratio metrics count
    if (ratioAxis.level === "token") {
      const w = tokenRatio(logp, oldLogp); // [B, T]
      const a = tf.expandDims(advantage, 1); // [B, 1]
      surrogate = clippedSurrogate(w, a, ratioAxis.clipLow, ratioAxis.clipHigh); // [B, T]
      Object.assign(metrics, clipFractions(w, a, mask, ratioAxis.clipLow, ratioAxis.clipHigh));
      ratio = w;
      weights = mask; // [B, T]
    } else {
      ratio = sequenceRatio(logp, oldLogp, mask); // [B]
      const { clipLow, clipHigh } = ratioAxis;
      const perSequence = clippedSurrogate(ratio, advantage, clipLow, clipHigh); // [B]
      surrogate = tf.expandDims(perSequence, 1) as tf.Tensor2D; // [B, 1]
      weights = tf.minimum(tf.sum(mask, 1), deviceConstant(1)); // [B] 1 on non-empty sequences
      Object.assign(
        metrics,
        clipFractions(ratio, advantage, weights, ratioAxis.clipLow, ratioAxis.clipHigh),
      );
    }
    // 4) the KL term in the loss, per token
    let perToken: tf.Tensor2D = surrogate; // [B, T] or [B, 1]
    if (kl !== null && kl.placement === "loss") {
      const k3 = klK3(logp, refLogp); // [B, T]
      perToken = tf.add(surrogate, tf.mul(k3, deviceConstant(kl.beta))); // [B, T]
      metrics.klPenalty = tf.mul(
        aggregate(stopGradient(k3), mask, aggregation),
        deviceConstant(kl.beta),
      );
    }
    // 5) aggregation
    const loss = aggregate(perToken, mask, aggregation);
    const detached = stopGradient(ratio);
    metrics.ratioMean = tf.div(
      tf.sum(tf.mul(detached, weights)),
      tf.maximum(tf.sum(weights), deviceConstant(1)),
    ) as tf.Scalar;
    metrics.advantageAbs = tf.mean(tf.abs(advantage)) as tf.Scalar;
    return { loss, metrics };
  });
}
