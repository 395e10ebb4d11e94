/**
 * Small pure tensor functions shared by the objectives: stop-gradient, per-group views and
 * statistics, standardisation within groups, and the masked sum over tokens. Rows of one group are
 * consecutive (row i belongs to group ⌊i/G⌋); B = P·G.
 *
 * Group means are taken about each group's first element (`x₀ + mean(x − x₀)`): algebraically the
 * plain mean, but a group whose values are all equal then has deviations of exactly 0, whereas a
 * float32 `mean` of equal values need not give them back exactly (three 0.1s do not).
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { deviceConstant } from "../../engine/kernels/constants.ts";
import { groupMeanOnDevice, groupStatisticsOnDevice, groupStdOnDevice } from "./group_webgpu.ts";
import type { ObjectiveBatch } from "./types.ts";

/** The typed signature of `tf.customGrad`'s argument, which rejects a plain `(x) => …` function. */
type CustomGradientFunc = Parameters<typeof tf.customGrad>[0];

const detach = tf.customGrad(
  function detachForward(x: tf.Tensor) {
    return { value: tf.clone(x), gradFunc: (dy: tf.Tensor) => tf.zerosLike(dy) };
  } as CustomGradientFunc,
);

/**
 * The value of `x` with a zero gradient (TensorFlow.js has no stop-gradient op). Statistics that
 * must be constants are computed from `stopGradient(x)`; never detach a statistic computed from `x`
 * itself: at a zero-variance group the backward pass of `sqrt` then gives 0·∞ = NaN.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * const x = tf.tensor1d([1, 2, 3]);
 * const g = tf.grad((v: tf.Tensor) => tf.sum(tf.mul(stopGradient(v), v)))(x); // [1, 2, 3]
 * ```
 */
export function stopGradient<T extends tf.Tensor>(x: T): T {
  return detach(x) as T;
}

/** Throws unless `rows` is a whole number of groups of `groupSize` (a positive integer). */
export function assertWholeGroups(rows: number, groupSize: number, what: string): void {
  if (!Number.isInteger(groupSize) || groupSize < 1) {
    throw new Error(
      `Cannot compute ${what} as 'groupSize' must be an integer >= 1: current value is ${groupSize}`,
    );
  }
  if (rows % groupSize !== 0) {
    throw new Error(
      `Cannot compute ${what} as the batch has ${rows} rows, not a multiple of groupSize ` +
        `${groupSize}: a batch must hold whole groups`,
    );
  }
}

/**
 * Throws unless `batch` holds whole groups and its tensors agree with `logp`'s [B, T] shape;
 * `what` names the loss in the message ("the gift loss"). Creates no tensor.
 *
 * @example
 * ```ts
 * checkBatch({ ...batch, groupSize: 4 }, "the reinforce loss");
 * // throws: Cannot compute the reinforce loss as the batch has 6 rows, not a multiple of
 * // groupSize 4: a batch must hold whole groups
 * ```
 */
export function checkBatch(batch: ObjectiveBatch, what: string): void {
  const [rows, length] = batch.logp.shape;
  assertWholeGroups(rows, batch.groupSize, what);
  const named: Array<[string, tf.Tensor | undefined]> = [
    ["oldLogp", batch.oldLogp],
    ["refLogp", batch.refLogp],
    ["mask", batch.mask],
  ];
  for (const [name, t] of named) {
    if (t !== undefined && (t.shape[0] !== rows || t.shape[1] !== length)) {
      throw new Error(
        `Cannot compute ${what} as '${name}' has shape [${t.shape}]: ` +
          `expected [${rows}, ${length}] like 'logp'`,
      );
    }
  }
  if (batch.rewards.shape[0] !== rows) {
    throw new Error(
      `Cannot compute ${what} as 'rewards' has shape [${batch.rewards.shape}]: expected [${rows}]`,
    );
  }
}

/** `x` [B] seen as [P, G], one group per row. Throws when B is not a multiple of `groupSize`. */
export function groupView(x: tf.Tensor1D, groupSize: number): tf.Tensor2D {
  assertWholeGroups(x.shape[0], groupSize, "a group view");
  return tf.reshape(x, [x.shape[0] / groupSize, groupSize]); // [P, G]
}

/**
 * Mean of each group, [P]; taken about the group's first element (exact for equal groups).
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * groupMean(tf.tensor1d([1, 0, 0.1, 0.1]), 2); // [0.5, 0.1], the second exactly 0.1 in float32
 * ```
 */
export function groupMean(x: tf.Tensor1D, groupSize: number): tf.Tensor1D {
  return tf.tidy(() => {
    const v = groupView(x, groupSize); // [P, G]
    const anchor = tf.slice(v, [0, 0], [-1, 1]); // [P, 1]
    return tf.reshape(tf.add(anchor, tf.mean(tf.sub(v, anchor), 1, true)), [-1]); // [P]
  });
}

/**
 * Sample standard deviation of each group (divides by G − 1), [P]; zeros when G = 1.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * groupStd(tf.tensor1d([1, 0, 2, 2]), 2); // [0.7071, 0]
 * ```
 */
export function groupStd(x: tf.Tensor1D, groupSize: number): tf.Tensor1D {
  return tf.tidy(() => {
    const v = groupView(x, groupSize); // [P, G]
    if (groupSize === 1) return tf.fill([v.shape[0]], 0) as tf.Tensor1D; // [P], made on the device
    const deviation = tf.sub(v, tf.expandDims(groupMean(x, groupSize), 1)); // [P, G]
    return tf.sqrt(tf.div(tf.sum(tf.square(deviation), 1), deviceConstant(groupSize - 1))); // [P]
  });
}

/**
 * `groupStd(stopGradient(x), groupSize)`: the sample std of each group as a constant (no gradient
 * flows back to `x`), [P]; on webgpu one dispatch (`group_webgpu.ts`) with the same values.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * constantGroupStd(tf.tensor1d([1, 0, 2, 2]), 2); // [0.7071, 0]
 * ```
 */
export function constantGroupStd(x: tf.Tensor1D, groupSize: number): tf.Tensor1D {
  if (groupStatisticsOnDevice(groupSize)) return groupStdOnDevice(x, groupSize);
  return tf.tidy(() => groupStd(stopGradient(x), groupSize));
}

/**
 * Options of `standardize()`.
 *
 * @example
 * ```ts
 * const implicitSide: StandardizeOptions = {
 *   epsilon: 1e-6,
 *   singleton: "zero",
 *   constantStatistics: true,
 * };
 * ```
 */
export interface StandardizeOptions {
  /** ε added to the group standard deviation. */
  epsilon: number;
  /**
   * What a group of size 1 becomes: `"identity"` keeps `x` (GIFT's explicit side, Â = r), `"zero"`
   * gives 0 with a zero gradient (GIFT's implicit side, ũ = 0).
   */
  singleton: "identity" | "zero";
  /**
   * Treat the group mean and std as constants: they are computed from `stopGradient(x)`, so the
   * gradient flows only through the `x` in the numerator. Required when `x` is differentiated and
   * a group may have zero variance. On webgpu the statistics then take one dispatch each instead
   * of 13 (`group_webgpu.ts`), with the same values.
   * @default {false}
   */
  constantStatistics?: boolean;
}

/**
 * `(x − mean_g x) / (std_g x + ε)` per group (sample std), [B]. A group whose values are all equal
 * gives exactly 0.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * const r = tf.tensor1d([1, 0, 0, 0, 2, 2]);
 * standardize(r, 3, { epsilon: 1e-6, singleton: "identity" }); // ≈ [1.155, -0.577, -0.577, 0, 0, 0]
 * ```
 */
export function standardize(
  x: tf.Tensor1D,
  groupSize: number,
  options: StandardizeOptions,
): tf.Tensor1D {
  return tf.tidy(() => {
    const v = groupView(x, groupSize); // [P, G]
    if (groupSize === 1) {
      // `x · 0` rather than `zeros`: keeps x on the tape, so tf.grad sees a (zero) path to it.
      return options.singleton === "identity" ? tf.clone(x) : tf.mul(x, deviceConstant(0)); // [B]
    }
    const constant = options.constantStatistics === true;
    let mean: tf.Tensor2D, std: tf.Tensor2D; // [P, 1]
    if (constant && groupStatisticsOnDevice(groupSize)) { // one dispatch each (group_webgpu.ts)
      mean = tf.expandDims(groupMeanOnDevice(x, groupSize), 1);
      std = tf.expandDims(groupStdOnDevice(x, groupSize), 1);
    } else {
      const source = constant ? stopGradient(x) : x; // [B]
      mean = tf.expandDims(groupMean(source, groupSize), 1);
      std = tf.expandDims(groupStd(source, groupSize), 1);
    }
    return tf.reshape(tf.div(tf.sub(v, mean), tf.add(std, deviceConstant(options.epsilon))), [-1]); // [B]
  });
}

/**
 * Σ_t mask[i,t] · values[i,t], [B]: a per-sequence sum over completion tokens.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * sequenceSum(tf.tensor2d([[-1, -2], [-3, -9]]), tf.tensor2d([[1, 1], [1, 0]])); // [-3, -3]
 * ```
 */
export function sequenceSum(values: tf.Tensor2D, mask: tf.Tensor2D): tf.Tensor1D {
  return tf.sum(tf.mul(values, mask), 1); // [B]
}
