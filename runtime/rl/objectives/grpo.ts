/**
 * GRPO: Group Relative Policy Optimization (DeepSeekMath, arXiv 2402.03300), as TRL's `"grpo"`
 * loss. For P prompts × G completions (B = P·G rows, groups consecutive), exactly as docs/objectives.md:
 *
 * 1. Advantage (constant): `A_i = (r_i − mean_g r) / (std_g r + ε)`, sample std, ε = 1e-4 (TRL's).
 *    A group whose rewards are all equal gives `A_i = 0` exactly, so its policy-gradient term is 0.
 * 2. Token ratio `w[i,t] = exp(logp − oldLogp)`, clipped to `[1 − ε, 1 + ε_high]`
 *    (ε = ε_high = 0.2), and the per-token surrogate `ℓ = −min(w·A_i, clip(w)·A_i)`.
 * 3. KL to the reference (k3) in the loss: `ℓ[i,t] + β·(exp(ref − logp) − (ref − logp) − 1)`,
 *    β = 0.04. Without `refLogp` in the batch the reference is the rollout policy (`oldLogp`).
 * 4. Aggregation `sequence-mean`: `L = (1/B) Σ_i Σ_t mask·ℓ / |y_i|`.
 *
 * Deliberately left out: no entropy bonus, no value function, no dynamic sampling (DAPO's), no
 * reward scaling across the batch. The behaviour is read from `objectiveAxes()`
 * (dsl/objectives.ts); the math of each axis lives in axes.ts.
 *
 * @module
 */

import { objectiveAxes, type ObjectiveOptions, resolveObjective } from "../../../dsl/objectives.ts";
import { surrogateLoss } from "./_surrogate.ts";
import type { Objective, ObjectiveBatch, ObjectiveResult } from "./types.ts";

/**
 * Options of the GRPO loss: the recipe's `grpo()` options, each optional. Their defaults are
 * the recipe schema's (`dsl/schema.ts`), filled in by `resolveObjective()`; a plan's options are
 * already resolved. Extra fields are ignored.
 *
 * @example
 * ```ts
 * const options: GrpoOptions = { beta: 0 }; // the others at the schema's defaults
 * ```
 */
export type GrpoOptions = ObjectiveOptions<"grpo">;

function grpoLoss(batch: ObjectiveBatch, options: GrpoOptions): ObjectiveResult {
  const resolved = resolveObjective({ ...options, kind: "grpo" });
  return surrogateLoss(batch, objectiveAxes(resolved), "grpo");
}

/**
 * The GRPO objective: group-standardised advantages, a token-level clipped ratio, β·k3 in the loss,
 * sequence-mean aggregation. Reads `refLogp` when β > 0 (`oldLogp` when the batch has none).
 * Metrics: `clipLow`, `clipHigh`, `ratioMean`, `advantageAbs`, and `klPenalty` when β > 0.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { grpo } from "./grpo.ts";
 *
 * const logp = tf.tensor2d([[-1, -2], [-0.5, -1]]); // [B, T]
 * const oldLogp = tf.tensor2d([[-1.1, -2], [-0.6, -1]]); // [B, T]
 * const mask = tf.tensor2d([[1, 1], [1, 0]]); // [B, T]
 * const rewards = tf.tensor1d([1, 0]); // [B]
 * const { loss, metrics } = grpo.loss({ logp, oldLogp, mask, rewards, groupSize: 2 }, {});
 * console.log(loss.dataSync()[0], metrics.clipHigh?.dataSync()[0]);
 * ```
 */
export const grpo: Objective<GrpoOptions> = {
  name: "grpo",
  loss: grpoLoss,
};
