/**
 * RLOO: REINFORCE Leave-One-Out (Ahmadian et al., arXiv 2402.14740), as TRL's RLOO trainer with a
 * sequence-level clipped ratio. For P prompts × G completions (B = P·G rows), exactly as
 * docs/objectives.md:
 *
 * 1. KL in the reward (a constant): `r'_i = r_i − β·Σ_t mask·(oldLogp − refLogp)`, β = 0.05: the
 *    sampled completion's log-ratio to the reference, summed over its tokens. Without `refLogp` in
 *    the batch the reference is the rollout policy and the penalty is 0.
 * 2. Leave-one-out advantage (constant): `A_i = r'_i − (Σ_j r'_j − r'_i)/(G−1)`, unscaled; it
 *    equals `G/(G−1)·(r'_i − mean_g r')` and sums to 0 within each group. A group of size 1 has no
 *    baseline: `A_i = 0`.
 * 3. Sequence ratio `s_i = exp(Σ_t mask·(logp − oldLogp) / |y_i|)`, clipped to `[1 − ε, 1 + ε]`
 *    (ε = 0.2), `ℓ_i = −min(s_i·A_i, clip(s_i)·A_i)` applied to each token of the sequence.
 * 4. Aggregation `sequence-mean`: `L = (1/B) Σ_i Σ_t mask·ℓ / |y_i|`, i.e. the mean of ℓ_i.
 *
 * Deliberately left out: no KL term in the loss (it is in the reward), no std scaling of the
 * advantage, no entropy bonus, no value function. The behaviour is read from `objectiveAxes()`
 * (dsl/objectives.ts); each axis lives in axes.ts.
 *
 * @module
 */

import { objectiveAxes, type ObjectiveOptions, resolveObjective } from "../../../dsl/objectives.ts";
import { surrogateLoss } from "./_surrogate.ts";
import type { Objective, ObjectiveBatch, ObjectiveResult } from "./types.ts";

/**
 * Options of the RLOO loss: the recipe's `rloo()` options, each optional. Their defaults are
 * the recipe schema's (`dsl/schema.ts`), filled in by `resolveObjective()`; a plan's options are
 * already resolved. Extra fields are ignored.
 *
 * @example
 * ```ts
 * const options: RlooOptions = { beta: 0.1 }; // the others at the schema's defaults
 * ```
 */
export type RlooOptions = ObjectiveOptions<"rloo">;

function rlooLoss(batch: ObjectiveBatch, options: RlooOptions): ObjectiveResult {
  const resolved = resolveObjective({ ...options, kind: "rloo" });
  return surrogateLoss(batch, objectiveAxes(resolved), "rloo");
}

/**
 * The RLOO objective: the KL to the reference taken off the reward, leave-one-out advantages, a
 * clipped sequence ratio, sequence-mean aggregation. Reads `refLogp` when β > 0 (`oldLogp` when
 * the batch has none). Metrics: `clipLow` and `clipHigh` (fractions of non-empty sequences),
 * `ratioMean`, `advantageAbs`, and `klPenalty` (mean β·Σ_t mask·(oldLogp − refLogp)) when β > 0.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { rloo } from "./rloo.ts";
 *
 * const logp = tf.tensor2d([[-1, -2], [-0.5, -1]]); // [B, T]
 * const refLogp = tf.tensor2d([[-1.5, -2], [-0.5, -1]]); // [B, T]
 * const mask = tf.tensor2d([[1, 1], [1, 0]]); // [B, T]
 * const rewards = tf.tensor1d([1, 0]); // [B]: r' = [1 − 0.05·0.5, 0], A = [0.975, −0.975]
 * const batch = { logp, oldLogp: logp, refLogp, mask, rewards, groupSize: 2 };
 * const { metrics } = rloo.loss(batch, {});
 * console.log(metrics.advantageAbs?.dataSync()[0]); // 0.975
 * ```
 */
export const rloo: Objective<RlooOptions> = {
  name: "rloo",
  loss: rlooLoss,
};
