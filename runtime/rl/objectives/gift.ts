/**
 * GIFT: Group-relative Implicit Fine-Tuning (arXiv 2510.23868). Reward *matching* instead of reward
 * maximisation: make the group-standardised implicit reward of each completion equal its
 * group-standardised explicit reward. For P prompts × G completions (B = P·G rows, groups
 * consecutive), exactly as docs/objectives.md:
 *
 * 1. Explicit side (constant): Â_i = (r_i − mean_g r) / (std_g r + ε), sample std, ε = 1e-6.
 *    A group of size 1: Â_i = r_i. A group whose rewards are all equal: Â_i = 0 (the group is kept).
 * 2. Implicit reward (DPO form; β·log Z(x) cancels under standardisation), a SUM over tokens:
 *    u_i = Σ_t mask[i,t] · (logp[i,t] − refLogp[i,t]). Without `refLogp`, the reference is the
 *    rollout policy (`oldLogp`), as in the author's verl implementation.
 * 3. Implicit side: ũ_i = (u_i − m_g) / (s_g + ε), with m_g = mean_g u and s_g = std_g u constants
 *    (stop-gradient): the gradient flows only through u_i. A group of size 1: ũ_i = 0.
 * 4. Loss: L = (1/B) Σ_i (Â_i − β_c · ũ_i)², β_c = 1 by default (the paper's form).
 * 5. Statistics over whole groups only: a batch never splits a group.
 * 6. m_g and s_g come from `stopGradient(u)` (stop-gradient applied to u first), never from
 *    detaching statistics computed from u: at a zero-variance group (u ≡ 0 on the first update
 *    after sampling) the backward pass of `sqrt` would give 0·∞ = NaN. There s_g = 0 and the
 *    gradient is scaled by 1/ε, in the REINFORCE direction −Σ_i Â_i ∇u_i; that is the reference
 *    behaviour, and the trainer's gradient-norm clipping makes it a normal step.
 *
 * Deliberately left out: no importance ratio, no clipping, no KL term, no entropy bonus. The
 * population minimiser (fixed sampling distribution) is u an increasing affine function of r per
 * group, i.e. π ∝ π_ref · exp(r / β(x)): the loss per group is 2(G−1)/G · (1 − corr(r, u)).
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { deviceConstant } from "../../engine/kernels/constants.ts";
import { type ObjectiveOptions, resolveObjective } from "../../../dsl/objectives.ts";
import { checkBatch, constantGroupStd, sequenceSum, standardize, stopGradient } from "./group.ts";
import type { Objective, ObjectiveBatch, ObjectiveResult } from "./types.ts";

/**
 * Options of the GIFT loss: the recipe's `gift()` options, each optional. Their defaults are
 * the recipe schema's (`dsl/schema.ts`), filled in by `resolveObjective()`; a plan's options are
 * already resolved. Extra fields are ignored.
 *
 * @example
 * ```ts
 * const options: GiftOptions = { betaC: 0.5 }; // the others at the schema's defaults
 * ```
 */
export type GiftOptions = ObjectiveOptions<"gift">;

function giftLoss(batch: ObjectiveBatch, options: GiftOptions): ObjectiveResult {
  checkBatch(batch, "the gift loss");
  const { logp, mask, rewards, groupSize } = batch;
  const { betaC, stdEpsilon: epsilon } = resolveObjective({ ...options, kind: "gift" });
  const refLogp = batch.refLogp ?? batch.oldLogp; // [B, T] rollout reference when none declared
  return tf.tidy(() => {
    // 1) explicit side, a constant: Â = (r − mean_g r) / (std_g r + ε), the rewards' statistics
    // constants (as r is: the same values, and on webgpu 2 dispatches instead of 13)
    const advantage = standardize(rewards, groupSize, {
      epsilon,
      singleton: "identity",
      constantStatistics: true,
    }); // [B]
    // 2) implicit reward, a sum over completion tokens
    const u = sequenceSum(tf.sub(logp, refLogp), mask); // [B]
    // 3) implicit side: statistics from stopGradient(u), the gradient flows through u only
    const uTilde = standardize(u, groupSize, {
      epsilon,
      singleton: "zero",
      constantStatistics: true,
    }); // [B]
    // 4) L = mean_i (Â_i − β_c ũ_i)²
    const loss = tf.mean(
      tf.square(tf.sub(advantage, tf.mul(uTilde, deviceConstant(betaC)))),
    ) as tf.Scalar;
    const metrics: Record<string, tf.Scalar> = {
      implicitReward: tf.mean(stopGradient(u)) as tf.Scalar,
      implicitStd: tf.mean(constantGroupStd(u, groupSize)) as tf.Scalar,
      advantageAbs: tf.mean(tf.abs(advantage)) as tf.Scalar,
    };
    return { loss, metrics };
  });
}

/**
 * The GIFT objective: group-standardised implicit rewards matched to group-standardised rewards,
 * L = mean_i (Â_i − β_c · ũ_i)². Reads `refLogp` (the declared reference), or `oldLogp` when the
 * batch has none (the rollout reference). Metrics: `implicitReward` (mean u), `implicitStd` (mean
 * over groups of std_g u) and `advantageAbs` (mean |Â|). Throws when the batch does not hold whole
 * groups or the shapes disagree.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { gift } from "./gift.ts";
 *
 * const logp = tf.tensor2d([[-1, -2], [-0.5, -1], [-2, 0], [-1, -1]]); // [B, T]
 * const oldLogp = tf.tensor2d([[-1.1, -2], [-0.6, -1], [-2, 0], [-1, -1.2]]); // [B, T]
 * const mask = tf.tensor2d([[1, 1], [1, 0], [1, 0], [1, 1]]); // [B, T]
 * const rewards = tf.tensor1d([1, 0, 0, 1]); // [B]
 * const { loss, metrics } = gift.loss({ logp, oldLogp, mask, rewards, groupSize: 4 }, {});
 * console.log(loss.dataSync()[0], metrics.advantageAbs?.dataSync()[0]);
 * ```
 */
export const gift: Objective<GiftOptions> = {
  name: "gift",
  loss: giftLoss,
};
