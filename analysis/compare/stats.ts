/**
 * The statistics of a comparison: spread over seeds, accuracy at a budget, steps to a target
 * accuracy, and the learning-rate choice of the tuning phase. Pure functions of numbers.
 *
 * @module
 */

import type { EvalPoint } from "./metrics.ts";

/** Mean and spread of some values (the seeds of one objective). */
export interface Spread {
  /** Null for no values. */
  mean: number | null;
  min: number | null;
  max: number | null;
  /** Sample standard deviation (n − 1); null for fewer than two values. */
  std: number | null;
  n: number;
}

/**
 * Mean, min, max and sample standard deviation of `values`.
 *
 * @example
 * ```ts
 * spread([0.5, 0.7, 0.6]); // { mean: 0.6, min: 0.5, max: 0.7, std: 0.1, n: 3 }
 * ```
 */
export function spread(values: readonly number[]): Spread {
  const n = values.length;
  if (n === 0) return { mean: null, min: null, max: null, std: null, n };
  const [min, max] = [Math.min(...values), Math.max(...values)];
  // Equal values are exactly themselves, with no spread (not 0.2000…04 ± 3e-17).
  const mean = min === max ? min : values.reduce((s, v) => s + v, 0) / n;
  const std = n < 2
    ? null
    : min === max
    ? 0
    : Math.sqrt(values.reduce((s, v) => s + (v - mean) ** 2, 0) / (n - 1));
  return { mean, min, max, std, n };
}

/**
 * The eval accuracy with a budget of `step` steps: the last evaluation at or before it.
 *
 * @example
 * ```ts
 * accuracyAt([{ step: 0, tokens: 0, accuracy: 0.2 }, { step: 10, tokens: 900, accuracy: 0.6 }], 7);
 * // { step: 0, tokens: 0, accuracy: 0.2 }
 * ```
 */
export function accuracyAt(curve: readonly EvalPoint[], step: number): EvalPoint | null {
  let found: EvalPoint | null = null;
  for (const point of curve) {
    if (point.step <= step && (!found || point.step >= found.step)) found = point;
  }
  return found;
}

/**
 * The first evaluated step whose accuracy reaches `target`, or null when none does.
 *
 * @example
 * ```ts
 * stepsToTarget([{ step: 0, tokens: 0, accuracy: 0.2 }, { step: 10, tokens: 900, accuracy: 0.6 }], 0.5);
 * // 10
 * ```
 */
export function stepsToTarget(curve: readonly EvalPoint[], target: number): number | null {
  const sorted = [...curve].sort((a, b) => a.step - b.step);
  return sorted.find((point) => point.accuracy >= target)?.step ?? null;
}

/**
 * The mean eval accuracy over the last `count` evaluations (fewer when the run has fewer), or
 * null without any: the score of a learning rate in the tuning phase.
 *
 * @example
 * ```ts
 * lastEvaluationsMean([0.1, 0.5, 0.6, 0.7].map((accuracy, step) => ({ step, tokens: 0, accuracy })));
 * // 0.6
 * ```
 */
export function lastEvaluationsMean(curve: readonly EvalPoint[], count = 3): number | null {
  const last = [...curve].sort((a, b) => a.step - b.step).slice(-count);
  return last.length === 0 ? null : last.reduce((s, p) => s + p.accuracy, 0) / last.length;
}

/** One learning rate tried in the tuning phase, and its score (null when its run failed). */
export interface LrTrial {
  lr: number;
  score: number | null;
}

/**
 * The best learning rate: the highest score, ties going to the smaller lr; null when every trial
 * failed.
 *
 * @example
 * ```ts
 * selectLr([{ lr: 5e-4, score: 0.8 }, { lr: 1e-4, score: 0.8 }, { lr: 2e-4, score: 0.7 }]); // 1e-4
 * ```
 */
export function selectLr(trials: readonly LrTrial[]): number | null {
  let best: LrTrial | null = null;
  for (const trial of trials) {
    if (trial.score === null) continue;
    if (
      best === null || best.score === null || trial.score > best.score ||
      (trial.score === best.score && trial.lr < best.lr)
    ) {
      best = trial;
    }
  }
  return best?.lr ?? null;
}
