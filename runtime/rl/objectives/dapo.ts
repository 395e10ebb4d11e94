/**
 * DAPO: Decoupled Clip and Dynamic sAmpling Policy Optimization (arXiv 2503.14476), its loss. For
 * P prompts × G completions (B = P·G rows), exactly as docs/objectives.md:
 *
 * 1. Advantage (constant): `A_i = (r_i − mean_g r) / (std_g r + ε)`, sample std, ε = 1e-4.
 * 2. Token ratio `w[i,t] = exp(logp − oldLogp)` with the decoupled "clip-higher" range
 *    `[1 − ε_low, 1 + ε_high]` = [0.8, 1.28]: a wider upper bound lets unlikely tokens that did
 *    well gain probability (against entropy collapse). Per-token `ℓ = −min(w·A_i, clip(w)·A_i)`.
 * 3. No KL term by default (β = 0); with β > 0, `β·k3` per token in the loss, aggregated alike.
 * 4. Aggregation `token-mean`: `L = Σ_{i,t} mask·ℓ / Σ_{i,t} mask`, so every token of the batch
 *    weighs the same whatever the length of its completion.
 *
 * Not here, by design: DAPO's dynamic sampling (drop groups whose success rewards are all equal and
 * sample more prompts), the masking of truncated completions (both done by the trainer, from the
 * options `dynamicSampling`, `maxSamplingRounds` and `maskTruncated`, which this loss ignores), and
 * the soft overlong penalty (a reward source). No entropy bonus. The behaviour is read from
 * `objectiveAxes()` (dsl/objectives.ts); each axis lives in axes.ts.
 *
 * @module
 */

import { objectiveAxes, type ObjectiveOptions, resolveObjective } from "../../../dsl/objectives.ts";
import { surrogateLoss } from "./_surrogate.ts";
import type { Objective, ObjectiveBatch, ObjectiveResult } from "./types.ts";

/**
 * Options of the DAPO loss: the recipe's `dapo()` options, each optional. Their defaults are
 * the recipe schema's (`dsl/schema.ts`), filled in by `resolveObjective()`; a plan's options are
 * already resolved. Extra fields are ignored.
 *
 * @example
 * ```ts
 * const options: DapoOptions = { epsilonHigh: 0.3 }; // the others at the schema's defaults
 * ```
 */
export type DapoOptions = ObjectiveOptions<"dapo">;

function dapoLoss(batch: ObjectiveBatch, options: DapoOptions): ObjectiveResult {
  const resolved = resolveObjective({ ...options, kind: "dapo" });
  return surrogateLoss(batch, objectiveAxes(resolved), "dapo");
}

/**
 * The DAPO objective (its loss): group-standardised advantages, a token-level ratio with the
 * clip-higher range, token-mean aggregation. Reads no reference by default; with β > 0 it reads
 * `refLogp` (`oldLogp` when the batch has none). Metrics: `clipLow`, `clipHigh`, `ratioMean`,
 * `advantageAbs`, and `klPenalty` when β > 0.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { dapo } from "./dapo.ts";
 *
 * const logp = tf.tensor2d([[-1, -2], [-0.5, -1]]); // [B, T]
 * const oldLogp = tf.tensor2d([[-1.3, -2], [-0.6, -1]]); // [B, T]
 * const mask = tf.tensor2d([[1, 1], [1, 0]]); // [B, T]
 * const rewards = tf.tensor1d([1, 0]); // [B]
 * const { loss, metrics } = dapo.loss({ logp, oldLogp, mask, rewards, groupSize: 2 }, {});
 * console.log(loss.dataSync()[0], metrics.clipHigh?.dataSync()[0]); // w = e^0.3 ≈ 1.35 > 1.28
 * ```
 */
export const dapo: Objective<DapoOptions> = {
  name: "dapo",
  loss: dapoLoss,
};
