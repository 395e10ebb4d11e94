/**
 * UNA: Unifying alignment through an implicit reward (arXiv 2408.15339), its score-based form with
 * rewards from the recipe's reward sources. For B completions (rows grouped, groups consecutive),
 * exactly as docs/objectives.md:
 *
 * 1. Implicit reward, as in GIFT (a sum over completion tokens): `u_i = Σ_t mask·(logp − refLogp)`.
 *    Without `refLogp` in the batch, the reference is the rollout policy (`oldLogp`).
 * 2. Loss: `L = (1/B) Σ_i (σ(β·u_i) − σ(r_i))²`, β = 0.03 (the sigmoid temperature): the implicit
 *    reward, squashed, regressed onto the explicit one, squashed alike.
 *
 * Deliberately left out: no group statistics (each completion is matched on its own, so the group
 * size only shapes the batch), no advantage, no importance ratio, no clipping, no KL term (β·u is
 * the KL-regularised implicit reward). Unlike GIFT, equal rewards still move the policy: each u_i
 * is pulled towards r_i/β.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { deviceConstant } from "../../engine/kernels/constants.ts";
import { type ObjectiveOptions, resolveObjective } from "../../../dsl/objectives.ts";
import { checkBatch, sequenceSum, stopGradient } from "./group.ts";
import type { Objective, ObjectiveBatch, ObjectiveResult } from "./types.ts";

/**
 * Options of the UNA loss: the recipe's `una()` options, each optional. Their defaults are
 * the recipe schema's (`dsl/schema.ts`), filled in by `resolveObjective()`; a plan's options are
 * already resolved. Extra fields are ignored.
 *
 * @example
 * ```ts
 * const options: UnaOptions = { beta: 0.05 }; // the others at the schema's defaults
 * ```
 */
export type UnaOptions = ObjectiveOptions<"una">;

function unaLoss(batch: ObjectiveBatch, options: UnaOptions): ObjectiveResult {
  checkBatch(batch, "the una loss");
  const { logp, mask, rewards } = batch;
  const { beta } = resolveObjective({ ...options, kind: "una" });
  const refLogp = batch.refLogp ?? batch.oldLogp; // [B, T] rollout reference when none declared
  return tf.tidy(() => {
    // 1) implicit reward, a sum over completion tokens
    const u = sequenceSum(tf.sub(logp, refLogp), mask); // [B]
    // 2) (σ(β·u) − σ(r))², averaged over the sequences
    const target = tf.sigmoid(stopGradient(rewards)); // [B] a constant
    const loss = tf.mean(
      tf.square(tf.sub(tf.sigmoid(tf.mul(u, deviceConstant(beta))), target)),
    ) as tf.Scalar;
    const metrics: Record<string, tf.Scalar> = {
      implicitReward: tf.mean(stopGradient(u)) as tf.Scalar,
    };
    return { loss, metrics };
  });
}

/**
 * The UNA objective: `(σ(β·u_i) − σ(r_i))²` averaged over the sequences, u the summed log-ratio to
 * the reference. Reads `refLogp` (`oldLogp` when the batch has none). Metrics: `implicitReward`
 * (mean u).
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { una } from "./una.ts";
 *
 * const logp = tf.tensor2d([[-1, -1], [-0.5, -0.5]]); // [B, T]
 * const refLogp = tf.tensor2d([[-1, -1], [-1.5, -1.5]]); // [B, T]: u = [0, 2]
 * const mask = tf.ones([2, 2]) as tf.Tensor2D; // [B, T]
 * const rewards = tf.tensor1d([0, 1]); // [B]
 * const batch = { logp, oldLogp: logp, refLogp, mask, rewards, groupSize: 2 };
 * const { loss } = una.loss(batch, { beta: 1 }); // ((σ(2) − σ(1))²) / 2 ≈ 0.0112
 * ```
 */
export const una: Objective<UnaOptions> = {
  name: "una",
  loss: unaLoss,
};
