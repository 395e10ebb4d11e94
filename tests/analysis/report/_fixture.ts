/** A synthetic run directory's files, for the report tests (no training needed). */

import type { MetricsLine, RunFiles, RunInfo, SampleGroup } from "../../../analysis/report/mod.ts";

/** What the synthetic run looks like. */
export interface SyntheticOptions {
  /** Steps trained. @default 20 */
  steps?: number;
  /** `kl` on every step (else null, as without a reference). @default false */
  kl?: boolean;
  /** Skipped updates at step 7. @default 1 */
  skipped?: number;
  /** Steps that log samples. @default [1, 10, steps] */
  sampleSteps?: number[];
  /** The run's status. @default "finished" */
  status?: RunInfo["status"];
  /** The run's name. @default "addition-grpo" */
  name?: string;
}

/** The text of one completion that tries to inject markup. */
export const HOSTILE = `<script>alert("x")</script> & </td></tr></table><b>bold</b>`;

/** A run of `steps` steps with two reward sources, evaluating every 5 steps. */
export function syntheticRun(options: SyntheticOptions = {}): RunFiles {
  const steps = options.steps ?? 20;
  const status = options.status ?? "finished";
  const sources = ["correct", "format"];
  const metrics: MetricsLine[] = [{ step: 0, evalAccuracy: 0.6, trainAccuracy: 0.58 }];
  for (let step = 1; step <= steps; step++) {
    const t = step / steps;
    const correct = 0.3 + 0.4 * t + 0.05 * Math.sin(step);
    const format = 0.8 + 0.15 * t;
    const gradNorm = step === 1 ? 5000 : 0.8 + 0.5 * Math.sin(step);
    const line: MetricsLine = {
      step,
      rewardMean: 0.7 * correct + 0.3 * format,
      rewardStd: 0.3,
      rewards: { correct: { mean: correct, std: 0.4 }, format: { mean: format, std: 0.2 } },
      rewardErrors: {},
      skippedGroups: 0,
      successRate: correct,
      zeroStdGroups: 0.5 - 0.3 * t,
      kl: options.kl ? 0.002 * step : null,
      entropy: 1.2 - 0.4 * t,
      groupsDropped: 0,
      promptsResampled: 0,
      completionLength: 12 - 4 * t,
      truncated: 0.05,
      loss: 0.1 * Math.cos(step),
      gradNorm,
      // clipGradNorm 1, as the plan says: scale = min(1, 1 / (‖g‖ + 1e-6))
      gradNormClipped: gradNorm * Math.min(1, 1 / (gradNorm + 1e-6)),
      lr: 3e-4,
      objective: { advantageAbs: 0.5 },
      sampleSeconds: 0.2,
      stepSeconds: 0.5,
      tokensPerSecond: 800,
      skippedUpdates: step === 7 ? options.skipped ?? 1 : 0,
    };
    if (step % 5 === 0 || step === steps) line.evalAccuracy = 0.6 + 0.2 * t;
    if (step === steps) line.trainAccuracy = 0.8;
    metrics.push(line);
  }
  const samples: SampleGroup[] = [];
  for (const step of options.sampleSteps ?? [1, 10, steps]) {
    for (let group = 0; group < 2; group++) {
      const a = 10 + step;
      const b = 20 + group;
      samples.push({
        step,
        group,
        prompt: `${a}+${b}=`,
        answer: String(a + b),
        completions: [0, 1, 2, 3].map((i) => ({
          text: i === 3 && group === 1 ? HOSTILE : String(a + b + i - 1),
          reward: i === 1 ? 1 : 0.3,
          rewards: { correct: i === 1 ? 1 : 0, format: 1 },
          advantage: i === 1 ? 1.5 : -0.5,
          length: 3,
          truncated: i === 3,
        })),
      });
    }
  }
  const info: RunInfo = {
    format: "giftwrap.run/1",
    name: options.name ?? "addition-grpo",
    status,
    started: "2026-11-26T16:20:23.000Z",
    updated: "2026-11-26T16:23:43.000Z",
    pid: 4242,
    host: "testhost",
    recipe: { source: "recipes/addition_grpo.ts" },
    planHash: "3dfc49152e7c2685",
    seed: 1,
    backend: { name: "cpu", description: "TensorFlow.js CPU backend" },
    versions: {
      giftwrap: "0.1.0",
      deno: "2.9.6",
      v8: "14.0",
      typescript: "5.9",
      tfjs: "4.22.0",
    },
    steps,
    step: steps,
    checkpoint: { step: steps, dir: "checkpoints/final" },
    resumes: [],
    result: status === "finished"
      ? { accuracyBefore: 0.6, accuracyAfter: 0.8, rewardMean: 0.75, seconds: 200 }
      : null,
    error: status === "failed" ? "Cannot step as the loss is NaN: <nan> at step 7" : null,
  };
  const plan = {
    hash: "3dfc49152e7c2685",
    format: "giftwrap.plan/1",
    name: info.name,
    seed: 1,
    rewards: sources.map((name) => ({ name })),
    objective: { kind: "grpo" },
    optimizer: { clipGradNorm: 1 },
    schedule: { steps },
  };
  return { info, plan, metrics, samples };
}

/** Writes `run`'s files into `dir` as the trainer would; returns `dir`. */
export async function writeRun(dir: string, run: RunFiles): Promise<string> {
  if (run.info !== null) await Deno.writeTextFile(`${dir}/run.json`, JSON.stringify(run.info));
  if (run.plan !== null) await Deno.writeTextFile(`${dir}/plan.json`, JSON.stringify(run.plan));
  const jsonl = (lines: readonly unknown[]) => lines.map((l) => JSON.stringify(l) + "\n").join("");
  await Deno.writeTextFile(`${dir}/metrics.jsonl`, jsonl(run.metrics));
  await Deno.writeTextFile(`${dir}/samples.jsonl`, jsonl(run.samples));
  return dir;
}
