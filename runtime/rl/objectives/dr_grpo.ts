/**
 * Dr. GRPO: "GRPO Done Right" (Understanding R1-Zero-Like Training, arXiv 2503.20783). GRPO without
 * its two length and difficulty biases. For P prompts × G completions (B = P·G rows), exactly as
 * docs/objectives.md:
 *
 * 1. Advantage (constant): `A_i = r_i − mean_g r`: no division by the group std (which up-weights
 *    groups that are nearly all right or all wrong).
 * 2. Token ratio `w[i,t] = exp(logp − oldLogp)`, clipped to `[1 − ε, 1 + ε_high]` (ε = ε_high =
 *    0.2), per-token surrogate `ℓ = −min(w·A_i, clip(w)·A_i)`.
 * 3. No KL term by default (β = 0); with β > 0, `β·k3` per token in the loss, aggregated alike.
 * 4. Aggregation `constant`: `L = Σ_{i,t} mask·ℓ / (B·T)`, T the padded completion length (the
 *    trainer pads to `maxNewTokens`): no division by each completion's own length, which would
 *    favour long wrong answers.
 *
 * Deliberately left out: no std scaling, no per-sequence length normalisation, no entropy bonus.
 * The behaviour is read from `objectiveAxes()` (dsl/objectives.ts); each axis lives in axes.ts.
 *
 * @module
 */

import { objectiveAxes, type ObjectiveOptions, resolveObjective } from "../../../dsl/objectives.ts";
import { surrogateLoss } from "./_surrogate.ts";
import type { Objective, ObjectiveBatch, ObjectiveResult } from "./types.ts";

/**
 * Options of the Dr. GRPO loss: the recipe's `drGrpo()` options, each optional. Their defaults are
 * the recipe schema's (`dsl/schema.ts`), filled in by `resolveObjective()`; a plan's options are
 * already resolved. Extra fields are ignored.
 *
 * @example
 * ```ts
 * const options: DrGrpoOptions = { epsilonHigh: 0.28 }; // the others at the schema's defaults
 * ```
 */
export type DrGrpoOptions = ObjectiveOptions<"drGrpo">;

function drGrpoLoss(batch: ObjectiveBatch, options: DrGrpoOptions): ObjectiveResult {
  const resolved = resolveObjective({ ...options, kind: "drGrpo" });
  return surrogateLoss(batch, objectiveAxes(resolved), "drGrpo");
}

/**
 * The Dr. GRPO objective: mean-centred advantages, a token-level clipped ratio, the constant
 * normaliser B·T. Reads no reference by default; with β > 0 it reads `refLogp` (`oldLogp` when the
 * batch has none). Metrics: `clipLow`, `clipHigh`, `ratioMean`, `advantageAbs`, and `klPenalty`
 * when β > 0.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { drGrpo } from "./dr_grpo.ts";
 *
 * const logp = tf.tensor2d([[-1, -2], [-0.5, -1]]); // [B, T]
 * const mask = tf.tensor2d([[1, 1], [1, 0]]); // [B, T]
 * const rewards = tf.tensor1d([1, 0]); // [B]
 * const batch = { logp, oldLogp: logp, mask, rewards, groupSize: 2 };
 * const { loss } = drGrpo.loss(batch, {}); // on-policy: −Σ mask·A / (B·T) = −(0.5·2 − 0.5) / 4
 * ```
 */
export const drGrpo: Objective<DrGrpoOptions> = {
  name: "drGrpo",
  loss: drGrpoLoss,
};
