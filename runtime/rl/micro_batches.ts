/**
 * Micro-batches for the update (gradient accumulation): one optimiser update's loss and gradients
 * computed over consecutive whole-group slices of its mini-batch, one slice's activations alive at
 * a time, and summed into exactly the full mini-batch's loss and gradients.
 *
 * Whole groups, because every group statistic (GIFT's standardised rewards and implicit rewards,
 * GRPO's advantages) is computed within a group: a micro-batch of whole groups computes the same
 * per-row values as the full batch. What differs is the final average over the batch, so each
 * micro-batch's loss is weighted by its share of that average:
 *
 * - a mean over rows (GIFT, UNA, `sequence-mean`, and `constant`, Σ mask·ℓ / (B·T)): a micro-batch
 *   of b rows weighs b / B;
 * - a mean over tokens (`token-mean`, Σ mask·ℓ / Σ mask): a micro-batch with n completion tokens
 *   weighs n / N, N the mini-batch's.
 *
 * Then Σ_k share_k · L_k = L and Σ_k share_k · ∇L_k = ∇L. Left out: DPO pairs (`pair-mean`, whose
 * normaliser counts the groups that have a pair) and custom objectives (whose aggregation is their
 * own) are refused rather than guessed.
 *
 * @module
 */

import { tf } from "../engine/backend.ts";
import type { KernelSet } from "../engine/kernels/types.ts";
import { type ModelConfig, type Params, tokenLogProbs } from "../engine/model/transformer.ts";
import type { LoraAdapters } from "../engine/model/lora.ts";
import type { ObjectiveAxes } from "../../dsl/objectives.ts";
import type { Objective } from "./objectives/types.ts";
import { stopGradient } from "./objectives/group.ts";
import { aggregate, klK3 } from "./objectives/axes.ts";
import { klOnDevice, tokenMeanKl } from "./kl_webgpu.ts";

/**
 * What a micro-batch's share of the update's loss is proportional to: its rows, or its completion
 * tokens (see the module doc).
 *
 * @example
 * ```ts
 * const weighting: MicroBatchWeighting = "tokens"; // DAPO's token-mean
 * ```
 */
export type MicroBatchWeighting = "rows" | "tokens";

/**
 * The weighting that makes micro-batches exact for an objective's axes. Throws for DPO pairs and
 * custom objectives, whose batch average micro-batches cannot reproduce from rows or tokens.
 *
 * @example
 * ```ts
 * microBatchWeighting(plan.objective.axes); // "rows" for GIFT and GRPO, "tokens" for DAPO
 * ```
 */
export function microBatchWeighting(axes: ObjectiveAxes): MicroBatchWeighting {
  if (axes.loss === "custom" || axes.aggregation === "pair-mean") {
    throw new Error(
      `Cannot split an update into micro-batches as the objective's aggregation must be a mean ` +
        `over rows or tokens: current value is ${
          axes.loss === "custom" ? "a custom objective's own" : `'${axes.aggregation}'`
        }`,
    );
  }
  return axes.aggregation === "token-mean" ? "tokens" : "rows";
}

/** Rows [start, start + rows) of a batch. */
export interface RowRange {
  start: number;
  rows: number;
}

/**
 * Consecutive micro-batches of at most `microBatchRows` rows over `rows` rows, each whole groups of
 * `groupSize` (the last may be smaller).
 *
 * @example
 * ```ts
 * microBatchRanges(6, 2, 4); // [{ start: 0, rows: 4 }, { start: 4, rows: 2 }]
 * ```
 */
export function microBatchRanges(
  rows: number,
  groupSize: number,
  microBatchRows: number,
): RowRange[] {
  if (
    !Number.isInteger(microBatchRows) || microBatchRows < groupSize ||
    microBatchRows % groupSize !== 0
  ) {
    throw new Error(
      `Cannot split an update into micro-batches as 'microBatchRows' must be a positive multiple ` +
        `of the group size ${groupSize}: current value is ${microBatchRows}`,
    );
  }
  if (rows % groupSize !== 0) {
    throw new Error(
      `Cannot split an update into micro-batches as its rows must be whole groups of ` +
        `${groupSize}: current value is ${rows}`,
    );
  }
  const ranges: RowRange[] = [];
  for (let start = 0; start < rows; start += microBatchRows) {
    ranges.push({ start, rows: Math.min(microBatchRows, rows - start) });
  }
  return ranges;
}

/**
 * Each micro-batch's share of the update's loss: rows / B, or its completion tokens (`mask` [B, C]
 * row-major, C = `mask.length / B`) over the batch's. The shares sum to 1 (with no completion token
 * at all every token-mean loss is 0, and the shares are the rows').
 *
 * @example
 * ```ts
 * const mask = Float32Array.from([1, 1, 1, 0, 1, 0, 0, 0]); // [4, 2]
 * microBatchShares([{ start: 0, rows: 2 }, { start: 2, rows: 2 }], mask, "tokens"); // [0.75, 0.25]
 * ```
 */
export function microBatchShares(
  ranges: readonly RowRange[],
  mask: ArrayLike<number>,
  weighting: MicroBatchWeighting,
): number[] {
  const rows = ranges.reduce((sum, r) => sum + r.rows, 0);
  const C = mask.length / rows;
  const tokens = ranges.map(({ start, rows }) => {
    let n = 0;
    for (let j = start * C; j < (start + rows) * C; j++) n += mask[j]!;
    return n;
  });
  const total = tokens.reduce((a, b) => a + b, 0);
  if (weighting === "rows" || total === 0) return ranges.map((r) => r.rows / rows);
  return tokens.map((n) => n / total);
}

/** The tensors of one update's mini-batch (train_step.ts's), whole groups. */
export interface UpdateBatch {
  /** [B, P + C] int32: prompts (left-padded) then completions. */
  ids: tf.Tensor2D;
  /** [B, C] 1 on completion tokens that count. */
  mask: tf.Tensor2D;
  /** [B] */
  rewards: tf.Tensor1D;
  /** Left padding of each row's prompt. */
  padding: readonly number[];
  /** [B, C] log π_old, constants; null when the update is the batch's only one (π_old = π). */
  old: tf.Tensor2D | null;
  /** [B, C] log π_ref, constants; null without a reference pass. */
  ref: tf.Tensor2D | null;
}

/** The policy an update differentiates, and how its log-probabilities are taken. */
export interface UpdatePolicy {
  kernels: KernelSet;
  /** The policy's weights: the variables differentiated, or the frozen base under `adapters`. */
  params: Params;
  /** LoRA adapters on `params`: then only their variables are differentiated. */
  adapters?: LoraAdapters;
  config: ModelConfig;
  promptLength: number;
  /** The sampling temperature the log-probabilities are taken under. */
  temperature: number;
  /** `tokenLogProbs`'s activation checkpointing. @default false */
  gradientCheckpointing?: boolean;
}

/** Options of `updateGradients()`. */
export interface UpdateGradientsOptions {
  /** The objective's own options (`objective.loss`'s second argument). */
  objectiveOptions: unknown;
  /** G: rows of one group. */
  groupSize: number;
  /** The reference is the rollout policy: the loss reads π_old as π_ref. */
  rolloutReference: boolean;
  /** Rows per micro-batch, a multiple of `groupSize`. @default the whole mini-batch */
  microBatchRows?: number;
  /** How micro-batches' losses are weighted (`microBatchWeighting()`). @default "rows" */
  weighting?: MicroBatchWeighting;
  /**
   * The batch's `mask` as the host holds it ([B, C] row-major), for the micro-batches' shares:
   * given, the mask is not read back from the device (a read costs milliseconds on webgpu).
   * @default read from `batch.mask`
   */
  maskValues?: ArrayLike<number>;
}

/** What `updateGradients()` returns; the caller disposes every tensor. */
export interface UpdateGradients {
  /** The update's loss, a scalar. */
  value: tf.Scalar;
  /** Gradient of the loss by variable name (`tf.Variable.name`), as `tf.variableGrads` gives. */
  grads: tf.NamedTensorMap;
  /**
   * The objective's diagnostics, combined with the loss's shares: exact for a diagnostic averaged
   * as the loss is (over rows for GIFT's), a weighted mean of the micro-batches' values otherwise.
   */
  metrics: Record<string, tf.Scalar>;
  /** k3 KL to the reference per completion token (token shares), or null without a reference. */
  kl: tf.Scalar | null;
}

/** Rows `range` of a batch: slices of constants, so the values are the batch's exactly. */
function sliceBatch(batch: UpdateBatch, { start, rows }: RowRange): UpdateBatch {
  const cut = <T extends tf.Tensor>(t: T) =>
    tf.slice(t, [start, ...t.shape.slice(1).map(() => 0)], [rows, ...t.shape.slice(1)]) as T;
  return {
    ids: cut(batch.ids),
    mask: cut(batch.mask),
    rewards: cut(batch.rewards),
    padding: batch.padding.slice(start, start + rows),
    old: batch.old && cut(batch.old),
    ref: batch.ref && cut(batch.ref),
  };
}

/**
 * The loss of one (micro-)batch under `policy`, as train_step.ts's update computes it, and the
 * diagnostics it keeps (`tf.keep`, into `kept`).
 */
function batchLoss(
  policy: UpdatePolicy,
  objective: Objective<unknown>,
  batch: UpdateBatch,
  options: UpdateGradientsOptions,
  kept: { metrics: Record<string, tf.Scalar>; kl?: tf.Scalar },
): tf.Scalar {
  const { kernels, params, config, promptLength, temperature } = policy;
  const logp = tokenLogProbs(
    kernels,
    params,
    config,
    batch.ids,
    promptLength,
    temperature,
    batch.padding,
    {
      ...(policy.gradientCheckpointing ? { gradientCheckpointing: true } : {}),
      ...(policy.adapters ? { adapters: policy.adapters } : {}),
    },
  ); // [b, C]
  const oldLogp = batch.old ?? stopGradient(logp); // one update per batch: π_old = π
  const refLogp = options.rolloutReference ? oldLogp : batch.ref;
  const { loss, metrics } = objective.loss({
    logp,
    oldLogp,
    ...(refLogp ? { refLogp } : {}),
    mask: batch.mask,
    rewards: batch.rewards,
    groupSize: options.groupSize,
  }, options.objectiveOptions);
  for (const [k, m] of Object.entries(metrics)) kept.metrics[k] = tf.keep(m);
  if (refLogp) {
    // per completion token; on webgpu one dispatch (kl_webgpu.ts), the same value
    kept.kl = tf.keep(
      klOnDevice(logp.size)
        ? tokenMeanKl(logp, refLogp, batch.mask)
        : aggregate(klK3(stopGradient(logp), refLogp), batch.mask, "token-mean"),
    );
  }
  return loss;
}

/**
 * One update's loss, its gradient with respect to every variable trained (`policy.params`, or
 * `policy.adapters`' with LoRA), the
 * objective's diagnostics and the KL to the reference, over micro-batches of
 * `options.microBatchRows` rows (whole groups) accumulated with their shares of the loss (see the
 * module doc): the same values as one pass over the whole batch, with one micro-batch's activations
 * alive at a time. Without `microBatchRows` (or with at least the batch's rows) it is that one pass.
 *
 * @example
 * ```ts
 * const { value, grads, metrics, kl } = await updateGradients(policy, objectives.gift, batch, {
 *   objectiveOptions: plan.objective,
 *   groupSize: 4,
 *   rolloutReference: false,
 *   microBatchRows: 4, // one group at a time
 *   weighting: microBatchWeighting(plan.objective.axes),
 * });
 * ```
 */
export async function updateGradients(
  policy: UpdatePolicy,
  objective: Objective<unknown>,
  batch: UpdateBatch,
  options: UpdateGradientsOptions,
): Promise<UpdateGradients> {
  const vars = Object.values(
    policy.adapters?.params ?? (policy.params as Record<string, tf.Variable>),
  );
  const rows = batch.ids.shape[0];
  const ranges = microBatchRanges(rows, options.groupSize, options.microBatchRows ?? rows);
  if (ranges.length === 1) {
    const kept: { metrics: Record<string, tf.Scalar>; kl?: tf.Scalar } = { metrics: {} };
    const { value, grads } = tf.variableGrads(
      () => tf.tidy(() => batchLoss(policy, objective, batch, options, kept)),
      vars,
    );
    return { value, grads, metrics: kept.metrics, kl: kept.kl ?? null };
  }
  const mask = options.maskValues ?? await batch.mask.data(); // [B, C]
  const shares = microBatchShares(ranges, mask, options.weighting ?? "rows");
  const tokenShares = microBatchShares(ranges, mask, "tokens");
  let value: tf.Scalar | null = null;
  let grads: tf.NamedTensorMap = {};
  const metrics: Record<string, tf.Scalar> = {};
  let kl: tf.Scalar | null = null;
  /** `sum + share·part`, disposing the old sum and the part. */
  const accumulate = <T extends tf.Tensor>(sum: T | null | undefined, part: T, share: number) => {
    const next = tf.tidy(() => {
      const scaled = tf.mul(part, share);
      return (sum ? tf.add(sum, scaled) : scaled) as T;
    });
    tf.dispose([part, ...(sum ? [sum] : [])]);
    return next;
  };
  for (const [i, range] of ranges.entries()) {
    const share = shares[i]!;
    const part = sliceBatch(batch, range);
    try {
      const kept: { metrics: Record<string, tf.Scalar>; kl?: tf.Scalar } = { metrics: {} };
      const result = tf.variableGrads(
        () => tf.tidy(() => batchLoss(policy, objective, part, options, kept)),
        vars,
      );
      value = accumulate(value, result.value, share);
      const summed: tf.NamedTensorMap = {};
      for (const [name, grad] of Object.entries(result.grads)) {
        summed[name] = accumulate(grads[name], grad, share);
      }
      grads = summed;
      for (const [k, m] of Object.entries(kept.metrics)) {
        metrics[k] = accumulate(metrics[k], m, share);
      }
      if (kept.kl) kl = accumulate(kl, kept.kl, tokenShares[i]!);
    } finally {
      tf.dispose([part.ids, part.mask, part.rewards, part.old, part.ref].filter((t) => t !== null));
    }
  }
  return { value: value!, grads, metrics, kl };
}
