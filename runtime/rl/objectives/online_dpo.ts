/**
 * Online DPO: Direct Preference Optimization (arXiv 2305.18290) on pairs drawn from the policy's
 * own samples (Guo et al., arXiv 2402.04792), the pair chosen by the reward. For P prompts ×
 * G completions (B = P·G rows, groups consecutive), exactly as docs/objectives.md:
 *
 * 1. Pairs: in each group, the completion with the highest reward is chosen (c) and the one with
 *    the lowest is rejected (r); among equal rewards the first row wins (as the backend's argMax
 *    and argMin give it). A group whose rewards are all equal (max = min, including every group
 *    of size 1) gives no pair.
 * 2. Implicit rewards, sums over completion tokens: `u_i = Σ_t mask·(logp − refLogp)`. Without
 *    `refLogp` in the batch, the reference is the rollout policy (`oldLogp`).
 * 3. Loss per pair: `−log σ(β·[(Σlogp_c − Σlogp_r) − (ΣrefLogp_c − ΣrefLogp_r)])
 *    = −log σ(β·(u_c − u_r))`, β = 0.1 (the DPO temperature), averaged over the pairs.
 * 4. A batch without any pair has the loss 0 exactly, still computed from `logp`, so its gradient
 *    is zeros rather than an error.
 *
 * Deliberately left out: no importance ratio (the samples are treated as on-policy), no clipping,
 * no KL term (β·u is the KL-regularised implicit reward), no use of the middle completions of a
 * group, no judge: rewards alone rank the pair. The pair is picked with one-hot masks rather than a
 * gather (which has no gradient on the wasm backend), and −log σ(x) is `softplus(−x)`.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { deviceConstant } from "../../engine/kernels/constants.ts";
import { type ObjectiveOptions, resolveObjective } from "../../../dsl/objectives.ts";
import { checkBatch, groupView, sequenceSum, stopGradient } from "./group.ts";
import type { Objective, ObjectiveBatch, ObjectiveResult } from "./types.ts";

/**
 * Options of the online DPO loss: the recipe's `onlineDpo()` options, each optional. Their defaults are
 * the recipe schema's (`dsl/schema.ts`), filled in by `resolveObjective()`; a plan's options are
 * already resolved. Extra fields are ignored.
 *
 * @example
 * ```ts
 * const options: OnlineDpoOptions = { beta: 0.2 }; // the others at the schema's defaults
 * ```
 */
export type OnlineDpoOptions = ObjectiveOptions<"onlineDpo">;

/**
 * Each group's preference pair as masks over its rows, from constant rewards [B]: `chosen` and
 * `rejected` [P, G] one-hot rows (best and worst reward, first among equals), `hasPair` [P] 1 where
 * the group's rewards are not all equal, else 0.
 */
function preferencePairs(
  rewards: tf.Tensor1D,
  groupSize: number,
): { chosen: tf.Tensor2D; rejected: tf.Tensor2D; hasPair: tf.Tensor1D } {
  return tf.tidy(() => {
    const r = groupView(stopGradient(rewards), groupSize); // [P, G]
    return {
      chosen: tf.cast(tf.oneHot(tf.argMax(r, 1), groupSize), "float32") as tf.Tensor2D, // [P, G]
      rejected: tf.cast(tf.oneHot(tf.argMin(r, 1), groupSize), "float32") as tf.Tensor2D, // [P, G]
      hasPair: tf.sign(tf.sub(tf.max(r, 1), tf.min(r, 1))) as tf.Tensor1D, // [P] max ≥ min
    };
  });
}

function onlineDpoLoss(batch: ObjectiveBatch, options: OnlineDpoOptions): ObjectiveResult {
  checkBatch(batch, "the onlineDpo loss");
  const { logp, mask, rewards, groupSize } = batch;
  const { beta } = resolveObjective({ ...options, kind: "onlineDpo" });
  const refLogp = batch.refLogp ?? batch.oldLogp; // [B, T] rollout reference when none declared
  return tf.tidy(() => {
    // 1) the pair of each group, from the rewards
    const { chosen, rejected, hasPair } = preferencePairs(rewards, groupSize);
    // 2) implicit rewards, a sum over completion tokens
    const u = groupView(sequenceSum(tf.sub(logp, refLogp), mask), groupSize); // [P, G]
    // 3) −log σ(β·(u_c − u_r)) per group; groups without a pair weigh 0
    const margin = tf.mul(tf.sum(tf.mul(tf.sub(chosen, rejected), u), 1), deviceConstant(beta)); // [P]
    const perPair = tf.softplus(tf.neg(margin)); // [P]
    // 4) the mean over pairs: exactly 0 (and a zero gradient) when there is none
    const pairs = tf.sum(hasPair); // []
    const count = tf.maximum(pairs, deviceConstant(1)); // []
    const loss = tf.div(tf.sum(tf.mul(perPair, hasPair)), count) as tf.Scalar;
    const metrics: Record<string, tf.Scalar> = {
      pairs: pairs as tf.Scalar,
      margin: tf.div(tf.sum(tf.mul(stopGradient(margin), hasPair)), count) as tf.Scalar,
    };
    return { loss, metrics };
  });
}

/**
 * The online DPO objective: the best against the worst completion of each group, by reward,
 * `−log σ(β·(u_c − u_r))` averaged over the pairs; ties give no pair. Reads `refLogp` (`oldLogp`
 * when the batch has none). Metrics: `pairs` (the number of pairs) and `margin` (the mean over
 * pairs of β·(u_c − u_r), the DPO reward margin; 0 without pairs).
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { onlineDpo } from "./online_dpo.ts";
 *
 * const logp = tf.tensor2d([[-1, -2], [-0.5, -1]]); // [B, T]
 * const refLogp = tf.tensor2d([[-1, -2], [-1, -1]]); // [B, T]: u = [0, 0.5]
 * const mask = tf.ones([2, 2]) as tf.Tensor2D; // [B, T]
 * const rewards = tf.tensor1d([0, 1]); // [B]: row 1 is chosen, row 0 rejected
 * const batch = { logp, oldLogp: logp, refLogp, mask, rewards, groupSize: 2 };
 * const { loss } = onlineDpo.loss(batch, { beta: 0.1 }); // log(1 + e^−0.05) ≈ 0.669
 * ```
 */
export const onlineDpo: Objective<OnlineDpoOptions> = {
  name: "onlineDpo",
  loss: onlineDpoLoss,
};
