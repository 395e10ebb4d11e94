/**
 * Reading a run's `metrics.jsonl` into curves: eval accuracy against step and against cumulative
 * sampled tokens, KL against step (`kl`, and `klInitial` when tracked), and the train–eval gap at
 * each evaluation (when `trainAccuracy` is tracked).
 *
 * Sampled tokens of a step are `completionLength · rows`, with rows = P·G plus G per prompt that
 * DAPO's dynamic sampling drew again (`promptsResampled`); `completionLength` is the mean over the
 * batch the step trained on, so for resampled rows it is an estimate.
 *
 * @module
 */

import { parseMetrics as parseMetricsRecords } from "../../runtime/run/run_dir.ts";

/** The fields of a `metrics.jsonl` line that a comparison reads (all but `step` optional). */
export interface MetricsLine {
  step: number;
  evalAccuracy?: number;
  trainAccuracy?: number;
  kl?: number | null;
  klInitial?: number;
  completionLength?: number;
  promptsResampled?: number;
}

/** A point of an eval curve. */
export interface EvalPoint {
  step: number;
  /** Completion tokens sampled up to and including this step. */
  tokens: number;
  accuracy: number;
}

/** A point of a per-step curve (KL). */
export interface StepPoint {
  step: number;
  value: number;
}

/** A point of the train–eval gap: train accuracy minus eval accuracy. */
export interface GapPoint {
  step: number;
  train: number;
  eval: number;
  gap: number;
}

/** The curves of one run. */
export interface RunCurves {
  eval: EvalPoint[];
  kl: StepPoint[];
  klInitial: StepPoint[];
  gap: GapPoint[];
}

/**
 * Parses the text of a `metrics.jsonl`; a line that is not a JSON object with a numeric `step`
 * (such as a last line cut short by a crash) is skipped. The run directory's own reader
 * (`parseMetrics` in `runtime/run/run_dir.ts`), typed for the fields a comparison reads.
 *
 * @example
 * ```ts
 * parseMetrics('{"step":0,"evalAccuracy":0.5}\n'); // [{ step: 0, evalAccuracy: 0.5 }]
 * ```
 */
export function parseMetrics(text: string): MetricsLine[] {
  return parseMetricsRecords(text) as MetricsLine[];
}

/**
 * Reads and parses a run's `metrics.jsonl`.
 *
 * @example
 * ```ts
 * const lines = await readMetrics("runs/tiny-20261126-171057/metrics.jsonl");
 * ```
 */
export async function readMetrics(path: string): Promise<MetricsLine[]> {
  return parseMetrics(await Deno.readTextFile(path));
}

function finite(x: unknown): x is number {
  return typeof x === "number" && Number.isFinite(x);
}

/**
 * The curves of a run from its metrics lines; `rows` is P·G and `groupSize` G.
 *
 * @example
 * ```ts
 * const curves = runCurves(lines, { rows: 16, groupSize: 4 });
 * curves.eval; // [{ step: 0, tokens: 0, accuracy: 0.25 }, { step: 2, tokens: 88, accuracy: 0.5 }]
 * ```
 */
export function runCurves(
  lines: readonly MetricsLine[],
  shape: { rows: number; groupSize: number },
): RunCurves {
  const curves: RunCurves = { eval: [], kl: [], klInitial: [], gap: [] };
  let tokens = 0;
  for (const line of [...lines].sort((a, b) => a.step - b.step)) {
    if (finite(line.completionLength)) {
      const resampled = finite(line.promptsResampled) ? line.promptsResampled : 0;
      tokens += line.completionLength * (shape.rows + resampled * shape.groupSize);
    }
    if (finite(line.evalAccuracy)) {
      curves.eval.push({ step: line.step, tokens, accuracy: line.evalAccuracy });
      if (finite(line.trainAccuracy)) {
        const gap = line.trainAccuracy - line.evalAccuracy;
        curves.gap.push({
          step: line.step,
          train: line.trainAccuracy,
          eval: line.evalAccuracy,
          gap,
        });
      }
    }
    if (finite(line.kl)) curves.kl.push({ step: line.step, value: line.kl });
    if (finite(line.klInitial)) curves.klInitial.push({ step: line.step, value: line.klInitial });
  }
  return curves;
}
