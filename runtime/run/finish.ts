/**
 * How a run ends, and what it returns: finished (the final checkpoint, `run.json`'s result, the
 * report, a summary line), stopped on request (a checkpoint of the last step done, resumable),
 * or failed (`run.json` says why, and the last checkpoint is named).
 *
 * @module
 */

import { saveHfModel } from "../engine/model/hf_save.ts";
import type { HfTokenizer } from "../engine/model/hf_tokenizer.ts";
import { plural } from "../../dsl/format.ts";
import { policyWeights, type Run, type StepMetrics } from "../rl/train_step.ts";
import { saveLoraAdapter } from "../engine/model/lora.ts";
import { baseModelOf } from "./checkpoint.ts";
import type { RunContext } from "./context.ts";
import type { RunDirectory } from "./open.ts";
import { duration, pct, type Progress } from "./progress.ts";
import type { Outcome, Schedule } from "./schedule.ts";

/**
 * What a run measured.
 *
 * @example
 * ```ts
 * const result: RunResult = await execute(plan, { runsDir: "runs" });
 * console.log(result.dir, result.accuracyBefore, "→", result.accuracyAfter);
 * ```
 */
export interface RunResult extends Outcome {
  /** The run directory. */
  dir: string;
  hash: string;
  /** `"interrupted"` when `signal` stopped it; it resumes from `step`. */
  status: "finished" | "interrupted";
  /** The last step completed. */
  step: number;
  /** Every step's metrics, the ones before a resume included. */
  metrics: StepMetrics[];
}

/**
 * Ends a run whose steps are all done: the final checkpoint (weights, optimiser moments, random
 * streams and data order), what to serve (`model/`; with LoRA `adapter/`, and `model/` merged
 * when asked), `onFinish`, `run.json` as finished with its result, the report, and the accuracy
 * before and after.
 */
export async function finish(
  { plan, dir, progress }: RunContext,
  run: Run,
  schedule: Schedule,
  started: number,
  onFinish?: (run: Run) => void | Promise<void>,
): Promise<RunResult> {
  const { steps, checkpointKeep } = plan.schedule;
  const outcome = schedule.outcome(started);
  progress.stop();
  // A run resumed from its complete final checkpoint (killed before run.json said it finished)
  // has it already: a checkpoint is never written over.
  if (!dir.finishedSteps) await dir.saveCheckpoint(run, steps, checkpointKeep, "final");
  if (plan.model.kind === "hfModel" && run.task.tokenizer.kind === "hf") {
    const source = (run.task.tokenizer as HfTokenizer).dir;
    // LoRA: the adapter in PEFT's format, on the model directory it was trained on.
    if (run.adapters) {
      await saveLoraAdapter(`${dir.dir}/adapter`, run.adapters, {
        baseModel: baseModelOf(run.task.tokenizer),
      });
    }
    // What to serve: a Hugging Face directory of the source architecture in the recipe's dtype
    // (the source's unless `policy.saveDtype` says), beside the float32 final checkpoint; with
    // LoRA only when asked, the adapters merged in.
    if (!run.adapters || plan.model.lora?.saveMerged) {
      const policy = policyWeights(run.params, run.adapters);
      try {
        await saveHfModel(`${dir.dir}/model`, policy.weights, source, {
          dtype: plan.model.saveDtype,
          layout: run.kernels.layout,
          overwrite: true,
        });
      } finally {
        policy.release();
      }
    }
  }
  await onFinish?.(run);
  await dir.saveInfo({
    status: "finished",
    step: steps,
    checkpoint: { step: steps, dir: "checkpoints/final" },
    result: outcome,
  });
  await dir.report();
  const { accuracyBefore: before, accuracyAfter: after, seconds } = outcome;
  const stepsText = plural(steps, "step");
  if (before !== null && after !== null) {
    const points = 100 * (after - before);
    progress.log(
      `accuracy ${pct(before)} → ${pct(after)} ` +
        `(${points >= 0 ? "+" : ""}${points.toFixed(1)} points) after ${stepsText} · ` +
        `${duration(seconds)} · ${dir.dir}`,
    );
  } else {
    progress.log(`done: ${stepsText} · ${duration(seconds)} · ${dir.dir}`);
  }
  return result(dir, "finished", steps, outcome, schedule.history);
}

/**
 * Ends a run asked to stop after `step`: a checkpoint of it (unless the schedule just wrote one),
 * and `run.json` as interrupted, resumable from there.
 */
export async function stopAfter(
  { plan, dir, progress }: RunContext,
  schedule: Schedule,
  step: number,
  started: number,
): Promise<RunResult> {
  progress.stop();
  // Before step 1 there is nothing to keep (a resume refuses a checkpoint of step 0): the run
  // starts over when resumed, as one stopped during its warm start does.
  if (step === 0) {
    return await stoppedBeforeSteps(dir, progress, started, "before its first RL step");
  }
  if (dir.info.checkpoint?.step !== step) await schedule.checkpoint(step);
  const outcome = schedule.outcome(started);
  const at = dir.info.checkpoint!;
  await dir.saveInfo({ status: "interrupted", result: outcome });
  progress.log(
    `stopped after step ${at.step} of ${plan.schedule.steps}: checkpoint ${at.dir} · resume ` +
      `with --resume ${dir.dir}`,
  );
  return result(dir, "interrupted", at.step, outcome, schedule.history);
}

/**
 * Ends a run asked to stop during its warm start (`when`, by default), or before its first step:
 * nothing to keep; a resume starts over.
 */
export async function stoppedBeforeSteps(
  dir: RunDirectory,
  progress: Progress,
  started: number,
  when = "during the warm start, before any RL step",
): Promise<RunResult> {
  await dir.saveInfo({ status: "interrupted" }).catch(() => {});
  progress.log(`stopped ${when} · ${dir.dir}`);
  const outcome = {
    accuracyBefore: null,
    accuracyAfter: null,
    rewardMean: null,
    seconds: (performance.now() - started) / 1000,
  };
  return result(dir, "interrupted", 0, outcome, []);
}

/**
 * Records a run's failure in `run.json` (a full disk may refuse even that, and the error says
 * why anyway) and the report, and names the last checkpoint to resume from.
 */
export async function recordFailure(
  dir: RunDirectory,
  error: unknown,
  progress: Progress,
): Promise<void> {
  const last = dir.info.checkpoint;
  const line = (error instanceof Error ? error.message : String(error)).split("\n")[0]!;
  await dir.saveInfo({ status: "failed", error: line }).catch(() => {});
  await dir.report();
  if (last) {
    progress.log(
      `the last checkpoint is step ${last.step} (${dir.dir}/${last.dir}) · resume with ` +
        `--resume ${dir.dir}`,
    );
  }
}

function result(
  dir: RunDirectory,
  status: RunResult["status"],
  step: number,
  outcome: Outcome,
  metrics: StepMetrics[],
): RunResult {
  return { dir: dir.dir, hash: dir.hash, status, step, ...outcome, metrics };
}
