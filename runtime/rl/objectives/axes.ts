/**
 * The shared axes of the baseline objectives (docs/objectives.md, "Shared axes for the baselines"), one
 * small pure tensor function per axis: advantages from rewards, the token and sequence importance
 * ratios, the clipped surrogate and its clip fractions, the k3 KL to the reference, and the
 * aggregation of a per-token loss. A preset (grpo.ts, dapo.ts, …) is a point of these axes, read
 * from `objectiveAxes()` of dsl/objectives.ts; `_surrogate.ts` composes them into a loss, and an
 * objective of your own may compose them too (`runtime/mod.ts` exports them).
 *
 * Differentiated code here uses no boolean op (TensorFlow.js cannot differentiate through one):
 * the clip is `tf.clipByValue` and the pessimistic bound `tf.minimum`. The clip fractions use
 * comparisons, but only on detached values and never on the path to the loss.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { deviceConstant } from "../../engine/kernels/constants.ts";
import type { ObjectiveAxes } from "../../../dsl/objectives.ts";
import { groupMean, groupStd, groupView, sequenceSum, stopGradient } from "./group.ts";

/**
 * How rewards become advantages (the `advantage` axis of a preset).
 *
 * @example
 * ```ts
 * const drGrpo: AdvantageAxis = { baseline: "group-mean", scale: "none", epsilon: 0 };
 * ```
 */
export type AdvantageAxis = NonNullable<ObjectiveAxes["advantage"]>;

/**
 * The importance ratio and its clip range [1 − clipLow, 1 + clipHigh] (the `ratio` axis).
 *
 * @example
 * ```ts
 * const dapo: RatioAxis = { level: "token", clipLow: 0.2, clipHigh: 0.28 };
 * ```
 */
export type RatioAxis = NonNullable<ObjectiveAxes["ratio"]>;

/**
 * How a per-token loss is averaged over the batch (see `aggregate()`).
 *
 * @example
 * ```ts
 * const drGrpo: Aggregation = "constant"; // Σ mask·ℓ / (B·T)
 * ```
 */
export type Aggregation = "sequence-mean" | "token-mean" | "constant";

/**
 * Advantages from rewards, [B], constants (computed from `stopGradient(rewards)`: no gradient
 * reaches the rewards, which may themselves depend on log-probs, as RLOO's KL-shaped reward does).
 *
 * - baseline `group-mean`: `r_i − mean_g r`;
 *   `leave-one-out`: `r_i − (Σ_j r_j − r_i)/(G−1)`, computed as the equal
 *   `G/(G−1)·(r_i − mean_g r)` so that a group of equal rewards gives exactly 0. A group of size 1 has no leave-one-out
 *   baseline: its advantage is 0.
 * - scale `group-std`: divided by `std_g r + ε` (sample std; a group of size 1 has std 0);
 *   `none`: left as is.
 *
 * Group means are taken about each group's first element (see group.ts), so an equal-reward group
 * gives advantages of exactly 0 whatever the float32 rounding of its rewards.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * const r = tf.tensor1d([1, 0, 0, 1, 0.5, 0.5]); // [B], G = 3
 * const loo = { baseline: "leave-one-out", scale: "none", epsilon: 0 } as const;
 * advantages(r, 3, loo); // [1, −0.5, −0.5, 0.5, −0.25, −0.25]
 * ```
 */
export function advantages(
  rewards: tf.Tensor1D,
  groupSize: number,
  axis: AdvantageAxis,
): tf.Tensor1D {
  return tf.tidy(() => {
    const r = stopGradient(rewards); // [B]
    const rows = groupView(r, groupSize); // [P, G]
    const centred = tf.sub(rows, tf.expandDims(groupMean(r, groupSize), 1)); // [P, G]
    const loo = groupSize > 1 ? groupSize / (groupSize - 1) : 0;
    const baselined = axis.baseline === "group-mean"
      ? centred
      : tf.mul(centred, deviceConstant(loo)); // [P, G]
    const scaled = axis.scale === "group-std"
      ? tf.div(
        baselined,
        tf.add(tf.expandDims(groupStd(r, groupSize), 1), deviceConstant(axis.epsilon)),
      )
      : baselined; // [P, G]
    return tf.reshape(scaled, [-1]) as tf.Tensor1D; // [B]
  });
}

/**
 * The per-token importance ratio `w[i,t] = exp(logp − oldLogp)`, [B, T]; differentiable in `logp`.
 * Exactly 1 wherever the policy has not moved.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * tokenRatio(tf.tensor2d([[-1, -2]]), tf.tensor2d([[-1, -1.5]])); // [[1, 0.607]]
 * ```
 */
export function tokenRatio(logp: tf.Tensor2D, oldLogp: tf.Tensor2D): tf.Tensor2D {
  return tf.exp(tf.sub(logp, oldLogp)); // [B, T]
}

/**
 * The length-normalised sequence ratio (GSPO) `s_i = exp(Σ_t mask·(logp − oldLogp) / |y_i|)`, [B],
 * with `|y_i| = max(Σ_t mask[i,t], 1)`; differentiable in `logp`. Exactly 1 on-policy.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * const mask = tf.tensor2d([[1, 1], [1, 0]]); // [B, T]
 * const logp = tf.tensor2d([[-1, -1], [-2, -9]]); // [B, T]
 * sequenceRatio(logp, tf.tensor2d([[-1.2, -1], [-2, -1]]), mask); // [e^0.1, 1]
 * ```
 */
export function sequenceRatio(
  logp: tf.Tensor2D,
  oldLogp: tf.Tensor2D,
  mask: tf.Tensor2D,
): tf.Tensor1D {
  return tf.tidy(() => {
    const logRatio = sequenceSum(tf.sub(logp, oldLogp), mask); // [B]
    return tf.exp(tf.div(logRatio, sequenceLengths(mask))) as tf.Tensor1D; // [B]
  });
}

/**
 * `max(Σ_t mask[i,t], 1)`, [B]: each completion's length, at least 1 (a constant).
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * sequenceLengths(tf.tensor2d([[1, 1, 0], [0, 0, 0]])); // [2, 1]
 * ```
 */
export function sequenceLengths(mask: tf.Tensor2D): tf.Tensor1D {
  return tf.maximum(tf.sum(mask, 1), deviceConstant(1)); // [B]
}

/**
 * The PPO clipped surrogate `ℓ = −min(w·A, clip(w, 1 − clipLow, 1 + clipHigh)·A)`, elementwise;
 * `ratio` is [B, T] with `advantage` [B, 1], or both [B]. Differentiable in the ratio; the gradient
 * is exactly 0 where the clip is active (w > 1 + clipHigh with A > 0, w < 1 − clipLow with A < 0),
 * since there the minimum picks the clipped branch, which is flat in w.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * const w = tf.tensor1d([0.5, 1.5, 0.5, 1.5]); // [B]
 * const a = tf.tensor1d([1, 1, -1, -1]); // [B]
 * clippedSurrogate(w, a, 0.2, 0.2); // [−0.5, −1.2, 0.8, 1.5]
 * ```
 */
export function clippedSurrogate<T extends tf.Tensor>(
  ratio: T,
  advantage: tf.Tensor,
  clipLow: number,
  clipHigh: number,
): T {
  return tf.tidy(() => {
    const unclipped = tf.mul(ratio, advantage); // like ratio
    const bounded = tf.clipByValue(ratio, 1 - clipLow, 1 + clipHigh); // like ratio
    const clipped = tf.mul(bounded, advantage); // like ratio
    return tf.neg(tf.minimum(unclipped, clipped)) as T;
  });
}

/**
 * Where the clip of `clippedSurrogate` is active, as two fractions of the entries weighted by
 * `weights` (the mask for token ratios, 1 per non-empty sequence for sequence ratios): `clipLow`
 * (w < 1 − clipLow with A < 0) and `clipHigh` (w > 1 + clipHigh with A > 0). Metrics: computed on
 * detached values, never differentiated. `ratio`, `advantage` and `weights` broadcast together.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * const w = tf.tensor1d([0.5, 1.5, 0.5, 1.5]); // [B]
 * const a = tf.tensor1d([1, 1, -1, -1]); // [B]
 * clipFractions(w, a, tf.ones([4]), 0.2, 0.2); // { clipLow: 0.25, clipHigh: 0.25 }
 * ```
 */
export function clipFractions(
  ratio: tf.Tensor,
  advantage: tf.Tensor,
  weights: tf.Tensor,
  clipLow: number,
  clipHigh: number,
): { clipLow: tf.Scalar; clipHigh: tf.Scalar } {
  return tf.tidy(() => {
    const w = stopGradient(ratio);
    const a = stopGradient(advantage);
    const total = tf.maximum(tf.sum(tf.mul(tf.onesLike(w), weights)), deviceConstant(1)); // []
    function fraction(clip: tf.Tensor, side: tf.Tensor): tf.Scalar {
      const active = tf.cast(tf.logicalAnd(clip, side), "float32"); // like w
      return tf.div(tf.sum(tf.mul(active, weights)), total) as tf.Scalar;
    }
    return {
      clipLow: fraction(tf.less(w, deviceConstant(1 - clipLow)), tf.less(a, deviceConstant(0))),
      clipHigh: fraction(
        tf.greater(w, deviceConstant(1 + clipHigh)),
        tf.greater(a, deviceConstant(0)),
      ),
    };
  });
}

/**
 * The k3 estimator of KL(π‖π_ref) per token, `exp(refLogp − logp) − (refLogp − logp) − 1`, [B, T]:
 * non-negative, 0 exactly where `logp = refLogp`; its gradient in `logp` is
 * `1 − exp(refLogp − logp)`, positive where the policy is above the reference, so that descent
 * pulls it back. The one place k3 is written: the losses' KL terms and the train step's KL
 * metrics call it.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * klK3(tf.tensor2d([[-1, -2]]), tf.tensor2d([[-1.5, -1.5]])); // [[0.1065, 0.1487]]
 * ```
 */
export function klK3(logp: tf.Tensor2D, refLogp: tf.Tensor2D): tf.Tensor2D {
  return tf.tidy(() => {
    const d = tf.sub(refLogp, logp); // [B, T]
    return tf.sub(tf.sub(tf.exp(d), d), deviceConstant(1)) as tf.Tensor2D; // [B, T]
  });
}

/**
 * A per-token loss `values` ([B, T], or [B, 1] for one value per sequence, broadcast over its
 * tokens) averaged over the batch, a scalar:
 *
 * - `sequence-mean`: mean over the B sequences of `Σ_t mask·ℓ / max(|y_i|, 1)`;
 * - `token-mean`: `Σ_{i,t} mask·ℓ / Σ_{i,t} mask` (0 when the mask is empty);
 * - `constant`: `Σ_{i,t} mask·ℓ / (B·T)`, T the padded completion length, which the trainer pads to
 *   `maxNewTokens` (Dr. GRPO's constant normaliser).
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * const mask = tf.tensor2d([[1, 1, 0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 0, 0, 0, 0]]); // [B, T]
 * aggregate(tf.onesLike(mask), mask, "constant"); // 0.375 (sequence-mean and token-mean: 1)
 * ```
 */
export function aggregate(values: tf.Tensor2D, mask: tf.Tensor2D, mode: Aggregation): tf.Scalar {
  return tf.tidy(() => {
    const masked = tf.mul(values, mask); // [B, T]
    const [rows, length] = mask.shape;
    switch (mode) {
      case "sequence-mean":
        return tf.mean(tf.div(tf.sum(masked, 1), sequenceLengths(mask))) as tf.Scalar;
      case "token-mean":
        return tf.div(tf.sum(masked), tf.maximum(tf.sum(mask), deviceConstant(1))) as tf.Scalar;
      case "constant":
        return tf.div(tf.sum(masked), deviceConstant(rows * length)) as tf.Scalar;
    }
  });
}
