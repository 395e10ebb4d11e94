/**
 * GSPO: Group Sequence Policy Optimization (arXiv 2507.18071). GRPO's advantages with the
 * importance ratio taken per sequence, as the reward is. For P prompts × G completions
 * (B = P·G rows), exactly as docs/objectives.md:
 *
 * 1. Advantage (constant): `A_i = (r_i − mean_g r) / (std_g r + ε)`, sample std, ε = 1e-4.
 * 2. Sequence ratio, length-normalised: `s_i = exp(Σ_t mask·(logp − oldLogp) / |y_i|)`, exactly 1
 *    on-policy; clipped to the tiny asymmetric range `[1 − 3e-4, 1 + 4e-4]` (a sequence ratio
 *    moves far less than a token ratio). Per sequence `ℓ_i = −min(s_i·A_i, clip(s_i)·A_i)`,
 *    applied to each of its tokens, so every token of a sequence gets the same weight.
 * 3. No KL term by default (β = 0); with β > 0, `β·k3` per token in the loss, aggregated alike.
 * 4. Aggregation `sequence-mean`: `L = (1/B) Σ_i Σ_t mask·ℓ / |y_i|`, i.e. the mean of ℓ_i.
 *
 * Deliberately left out: no token-level ratio (GSPO-token), no entropy bonus. The behaviour is read
 * from `objectiveAxes()` (dsl/objectives.ts); each axis lives in axes.ts.
 *
 * @module
 */

import { objectiveAxes, type ObjectiveOptions, resolveObjective } from "../../../dsl/objectives.ts";
import { surrogateLoss } from "./_surrogate.ts";
import type { Objective, ObjectiveBatch, ObjectiveResult } from "./types.ts";

/**
 * Options of the GSPO loss: the recipe's `gspo()` options, each optional. Their defaults are
 * the recipe schema's (`dsl/schema.ts`), filled in by `resolveObjective()`; a plan's options are
 * already resolved. Extra fields are ignored.
 *
 * @example
 * ```ts
 * const options: GspoOptions = { epsilon: 2e-4 }; // the others at the schema's defaults
 * ```
 */
export type GspoOptions = ObjectiveOptions<"gspo">;

function gspoLoss(batch: ObjectiveBatch, options: GspoOptions): ObjectiveResult {
  const resolved = resolveObjective({ ...options, kind: "gspo" });
  return surrogateLoss(batch, objectiveAxes(resolved), "gspo");
}

/**
 * The GSPO objective: group-standardised advantages, a clipped length-normalised sequence ratio,
 * sequence-mean aggregation. Reads no reference by default; with β > 0 it reads `refLogp`
 * (`oldLogp` when the batch has none). Metrics: `clipLow` and `clipHigh` (fractions of non-empty
 * sequences), `ratioMean` (mean s_i), `advantageAbs`, and `klPenalty` when β > 0.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { gspo } from "./gspo.ts";
 *
 * const logp = tf.tensor2d([[-1, -2], [-0.5, -1]]); // [B, T]
 * const mask = tf.tensor2d([[1, 1], [1, 0]]); // [B, T]
 * const rewards = tf.tensor1d([1, 0]); // [B]
 * const { metrics } = gspo.loss({ logp, oldLogp: logp, mask, rewards, groupSize: 2 }, {});
 * console.log(metrics.ratioMean?.dataSync()[0]); // 1 exactly: on-policy
 * ```
 */
export const gspo: Objective<GspoOptions> = {
  name: "gspo",
  loss: gspoLoss,
};
