/**
 * The files of a run directory as the report reads them: its own module, so the report's entry
 * point and its sections share the types without importing each other.
 *
 * @module
 */

import type { RunInfo, SampleGroup } from "../../runtime/run/run_dir.ts";

export type { RunInfo, SampleCompletion, SampleGroup } from "../../runtime/run/run_dir.ts";

/**
 * A line of `metrics.jsonl`: step 0's evaluation, then the `StepMetrics` of each step
 * (runtime/rl/train_step.ts). Every field but `step` may be missing, and JSON writes NaN as null.
 */
export interface MetricsLine {
  step: number;
  rewardMean?: number | null;
  rewardStd?: number | null;
  rewards?: Record<string, { mean: number | null; std: number | null }>;
  successRate?: number | null;
  zeroStdGroups?: number | null;
  kl?: number | null;
  klInitial?: number | null;
  entropy?: number | null;
  completionLength?: number | null;
  truncated?: number | null;
  loss?: number | null;
  /** The gradient's global norm before clipping, and after (absent in runs from before it). */
  gradNorm?: number | null;
  gradNormClipped?: number | null;
  lr?: number | null;
  skippedUpdates?: number | null;
  stepSeconds?: number | null;
  tokensPerSecond?: number | null;
  evalAccuracy?: number | null;
  trainAccuracy?: number | null;
  [field: string]: unknown;
}

/** The files of a run directory, as `readRunFiles()` (mod.ts) reads them. */
export interface RunFiles {
  /** `run.json`; null when missing (a run from before it existed). */
  info: RunInfo | null;
  /** `plan.json` (dsl/plan.ts `Plan`); null when missing. */
  plan: unknown | null;
  /** `metrics.jsonl`, in file order. */
  metrics: MetricsLine[];
  /** `samples.jsonl`, in file order (lines without `completions`, an older format, left out). */
  samples: SampleGroup[];
}
