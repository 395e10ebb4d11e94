/**
 * The contract between the trainer and an objective (DESIGN.md, "Runtime contracts"). An objective
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

/** What `Objective.loss` returns; the caller owns (and disposes) every tensor in it. */
export interface ObjectiveResult {
  /** The scalar to minimise. */
  loss: tf.Scalar;
  /** Diagnostic scalars by name (logged, never differentiated). */
  metrics: Record<string, tf.Scalar>;
}

/** One training objective: a loss over a batch of groups, with its own options type `O`. */
export interface Objective<O> {
  /** The objective's name, as in the recipe's `objective.kind` (e.g. `"gift"`). */
  name: string;
  /** What the batch must carry: `reference: true` when the loss reads `refLogp`. */
  needs: { reference: boolean };
  /**
   * The loss of one batch. Pure: it neither disposes nor mutates the batch's tensors, and every
   * intermediate tensor is released; only the returned tensors survive.
   */
  loss(batch: ObjectiveBatch, options: O): ObjectiveResult;
}
