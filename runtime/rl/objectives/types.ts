/**
 * The contract between the trainer and an objective (docs/architecture.md, "Contracts"). An objective
 * is a pure function of one batch of sampled groups: the trainer builds an `ObjectiveBatch`, calls
 * `objective.loss(batch, options)` under `tf.grad`/`optimizer.minimize`, and never branches on the
 * objective's name.
 *
 * @module
 */

import type * as tf from "@tensorflow/tfjs";

/**
 * One batch of P prompts × G completions, B = P·G rows. Rows of one group are consecutive: row i
 * belongs to group ⌊i/G⌋, and a batch never splits a group. T is the padded completion length.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * const batch: ObjectiveBatch = {
 *   logp: tf.tensor2d([[-1, -2], [-0.5, -1]]), // [B, T]
 *   oldLogp: tf.tensor2d([[-1, -2], [-0.5, -1]]), // [B, T]
 *   mask: tf.tensor2d([[1, 1], [1, 0]]), // [B, T]: row 1 has one token
 *   rewards: tf.tensor1d([1, 0]), // [B]
 *   groupSize: 2, // one group of two
 * };
 * ```
 */
export interface ObjectiveBatch {
  /** [B, T] log-probability of each completion token under the policy being trained (differentiable). */
  logp: tf.Tensor2D;
  /** [B, T] the same under the policy that sampled the batch (constant). */
  oldLogp: tf.Tensor2D;
  /**
   * [B, T] the same under the declared reference policy (constant). Absent when the recipe has no
   * reference; an objective that needs one may then fall back to `oldLogp` (the rollout reference).
   */
  refLogp?: tf.Tensor2D;
  /** [B, T] 1 on completion tokens (including a generated stop token), 0 on padding. */
  mask: tf.Tensor2D;
  /** [B] scalar reward of each completion (the weighted sum of the recipe's reward sources). */
  rewards: tf.Tensor1D;
  /** G, the number of completions per prompt; B must be a multiple of it. */
  groupSize: number;
}

/**
 * What `Objective.loss` returns; the caller owns (and disposes) every tensor in it.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * const { loss, metrics }: ObjectiveResult = objectives.una.loss(batch, {});
 * console.log(loss.dataSync()[0], metrics.implicitReward?.dataSync()[0]);
 * tf.dispose([loss, ...Object.values(metrics)]);
 * ```
 */
export interface ObjectiveResult {
  /** The scalar to minimise. */
  loss: tf.Scalar;
  /** Diagnostic scalars by name (logged, never differentiated). */
  metrics: Record<string, tf.Scalar>;
}

/**
 * One training objective: a loss over a batch of groups, with its own options type `O`. What the
 * batch carries is declared by the recipe, not here: a preset's axes (dsl/objectives.ts) say
 * whether it reads the reference and π_old, and a custom objective declares it as
 * `customObjective(module, { reads: { reference, old } })`, so that `compile()` knows it without
 * loading the module.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { type Objective, sequenceSum } from "./runtime/mod.ts";
 *
 * // −mean_i r_i · Σ_t logp[i,t]: REINFORCE without a baseline
 * export const plain: Objective<Record<string, never>> = {
 *   name: "plain",
 *   loss(batch) {
 *     const loss = tf.tidy(() => {
 *       const sequenceLogp = sequenceSum(batch.logp, batch.mask); // [B]
 *       return tf.neg(tf.mean(tf.mul(batch.rewards, sequenceLogp))) as tf.Scalar;
 *     });
 *     return { loss, metrics: {} };
 *   },
 * };
 * ```
 */
export interface Objective<O> {
  /** The objective's name, as in the recipe's `objective.kind` (e.g. `"gift"`). */
  name: string;
  /**
   * The loss of one batch. Pure: it neither disposes nor mutates the batch's tensors, and every
   * intermediate tensor is released; only the returned tensors survive.
   */
  loss(batch: ObjectiveBatch, options: O): ObjectiveResult;
}
