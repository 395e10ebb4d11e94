/**
 * Training objectives: each a pure loss over one batch of sampled groups, behind one `Objective`
 * interface (see docs/objectives.md for the exact math). GIFT, and the baselines as presets over shared
 * axes. The axes are exported as building blocks, so that an objective of your own composes them
 * rather than copying them: advantages from rewards, the token and sequence ratios and the clipped
 * surrogate (`axes.ts`), the k3 KL, the aggregation of a per-token loss, and the group statistics
 * beneath them (`group.ts`).
 *
 * ```ts
 * import { objectives } from "./mod.ts";
 * // const { loss, metrics } = objectives.gift.loss(batch, { betaC: 1 });
 * // const { loss, metrics } = objectives.grpo.loss(batch, { beta: 0.04 });
 * ```
 *
 * @module
 */

import { dapo } from "./dapo.ts";
import { drGrpo } from "./dr_grpo.ts";
import { gift } from "./gift.ts";
import { grpo } from "./grpo.ts";
import { gspo } from "./gspo.ts";
import { onlineDpo } from "./online_dpo.ts";
import { rloo } from "./rloo.ts";
import { una } from "./una.ts";

export type { Objective, ObjectiveBatch, ObjectiveResult } from "./types.ts";
export type { GiftOptions } from "./gift.ts";
export type { GrpoOptions } from "./grpo.ts";
export type { DrGrpoOptions } from "./dr_grpo.ts";
export type { DapoOptions } from "./dapo.ts";
export type { GspoOptions } from "./gspo.ts";
export type { RlooOptions } from "./rloo.ts";
export type { OnlineDpoOptions } from "./online_dpo.ts";
export type { UnaOptions } from "./una.ts";
export {
  type AdvantageAxis,
  advantages,
  aggregate,
  type Aggregation,
  clipFractions,
  clippedSurrogate,
  klK3,
  type RatioAxis,
  sequenceLengths,
  sequenceRatio,
  tokenRatio,
} from "./axes.ts";
export {
  checkBatch,
  groupMean,
  groupStd,
  sequenceSum,
  standardize,
  type StandardizeOptions,
  stopGradient,
} from "./group.ts";

/**
 * Every objective by its recipe kind: `objectives.gift.loss(batch, options)`. Options left out
 * take the recipe schema's defaults.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * const batch = {
 *   logp: tf.tensor2d([[-1, -2], [-0.5, -1]]), // [B, T]
 *   oldLogp: tf.tensor2d([[-1.1, -2], [-0.6, -1]]), // [B, T]
 *   mask: tf.tensor2d([[1, 1], [1, 0]]), // [B, T]
 *   rewards: tf.tensor1d([1, 0]), // [B]
 *   groupSize: 2,
 * };
 * const { loss } = objectives.dapo.loss(batch, { epsilonHigh: 0.3 });
 * ```
 */
export const objectives = { gift, grpo, drGrpo, dapo, gspo, rloo, onlineDpo, una } as const;
