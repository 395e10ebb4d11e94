/**
 * A run's steps and their schedule: evaluation at step 0 (after the warm start, before any RL
 * update), every `eval.every` steps and at the last; sampled groups logged at step 1, every
 * `log.samplesEvery` steps and at the last; a checkpoint every `checkpoint.every` steps (the
 * last step's is the final one). Each step's line goes to `metrics.jsonl`, its progress to the
 * run's {@linkcode Progress}.
 *
 * @module
 */

import type { BatchScorer } from "../rl/rewards/types.ts";
import type { Verifier } from "../../dsl/schema.ts";
import type { Problem } from "../data/types.ts";
import { type EvalResult, evaluate } from "../rl/evaluate.ts";
import {
  policyWeights,
  type Run,
  type StepMetrics,
  trainStep,
  type TrainStepOptions,
} from "../rl/train_step.ts";
import { unscoredWarnings } from "../rl/rewards/mod.ts";
import { plural } from "../../dsl/format.ts";
import type { RunContext } from "./context.ts";
import type { Plan } from "../../dsl/plan.ts";
import { pct } from "./progress.ts";
import { outOfMemory, STEP_STAGES } from "./out_of_memory.ts";

/** What a schedule measures besides its steps, and who hears of each step. */
export interface ScheduleOptions {
  /** `trainAccuracy` at every evaluation, `klInitial` at every step (read by the step). */
  track?: { trainAccuracy?: boolean; klInitial?: boolean } | undefined;
  /** Called after every step. */
  onStep?: ((metrics: StepMetrics) => void) | undefined;
}

/** What a run measured, as `run.json` records it. */
export interface Outcome {
  /** Eval accuracy after the warm start, before any RL update (null without evaluation). */
  accuracyBefore: number | null;
  /** Eval accuracy at the end (the latest, when interrupted). */
  accuracyAfter: number | null;
  /** The total reward's mean at the last step. */
  rewardMean: number | null;
  seconds: number;
}

/** The steps of a run, and what they measured so far (a resumed run's earlier steps included). */
export class Schedule {
  /** Every step's metrics, the ones before a resume included. */
  readonly history: StepMetrics[];
  accuracyBefore: number | null;
  accuracyAfter: number | null;
  #trainSeconds: number;
  readonly #context: RunContext;
  readonly #run: Run;
  readonly #options: ScheduleOptions;
  readonly #evalSet: readonly Problem[];
  /** As many train problems as the eval uses: the train–eval gap's. */
  readonly #trainSet: readonly Problem[];
  /** A verifier, or the success reward's source when it is not one. */
  readonly #metric: Verifier | BatchScorer | null;
  /** The reward sources already warned about (`unscoredWarnings`): once each is enough. */
  readonly #warned = new Set<string>();

  constructor(context: RunContext, run: Run, options: ScheduleOptions = {}) {
    this.#context = context;
    this.#run = run;
    this.#options = options;
    const { plan, setup: { task } } = context;
    const split = plan.schedule.evalSplit === "train" ? task.splits.train : task.splits.eval;
    this.#evalSet = split.slice(0, plan.schedule.evalProblems);
    this.#trainSet = task.splits.train.slice(0, this.#evalSet.length);
    const metric = plan.schedule.evalMetric;
    this.#metric = metric?.kind === "successReward"
      ? run.sources.find((s) => s.name === metric.name)?.scorer ?? null
      : metric;
    // The metrics so far: the checkpoint's copy when resuming.
    const earlier = context.dir.earlierMetrics();
    this.history = earlier.filter((m) => m.step > 0) as unknown as StepMetrics[];
    this.accuracyBefore = earlier.find((m) => m.step === 0)?.evalAccuracy ?? null;
    this.accuracyAfter = earlier.findLast((m) => m.evalAccuracy !== undefined)?.evalAccuracy ??
      null;
    this.#trainSeconds = this.history.reduce((sum, m) => sum + m.stepSeconds, 0);
  }

  /** Step 0: evaluates the policy RL starts from, and logs it (nothing without evaluation). */
  async evaluateStart(): Promise<void> {
    const before = await this.#evaluate(true);
    if (!before) return;
    this.#context.progress.log(
      `eval step 0 · accuracy ${pct(before.accuracy)} (${before.correct}/${before.total})`,
    );
    const trainAccuracy = await this.#trainAccuracy();
    await this.#context.dir.appendMetrics({
      step: 0,
      evalAccuracy: before.accuracy,
      ...(trainAccuracy === undefined ? {} : { trainAccuracy }),
    });
    this.accuracyBefore = this.accuracyAfter = before.accuracy;
  }

  /**
   * Runs step `step` and what the schedule asks after it: an evaluation, the logs, the progress,
   * and a checkpoint (or `run.json`'s step count).
   */
  async step(step: number): Promise<void> {
    const { plan, dir, progress } = this.#context;
    const { steps, evalEvery, checkpointEvery, samplesEvery } = plan.schedule;
    const logSamples = step === 1 || step % samplesEvery === 0 || step === steps;
    const { metrics, samples, rewardErrors } = await trainStep(this.#run, step, {
      logSamples,
      ...updateOptions(plan.update),
    }).catch(outOfMemory(plan, `step ${step}`, STEP_STAGES));
    const { prompts: P, groupSize: G } = plan.shapes;
    const unwarned = plan.rewards.filter((r) => !this.#warned.has(r.name));
    const scored = (P + metrics.promptsResampled) * G; // DAPO's refill rounds included
    for (const line of unscoredWarnings(unwarned, rewardErrors, scored, step)) {
      progress.log(line);
    }
    for (const name of Object.keys(rewardErrors)) {
      if (rewardErrors[name]!.count >= scored) this.#warned.add(name);
    }
    this.#trainSeconds += metrics.stepSeconds;
    if (step === steps || (evalEvery !== null && step % evalEvery === 0)) {
      const result = await this.#evaluate(false);
      if (result) {
        metrics.evalAccuracy = result.accuracy;
        this.accuracyAfter = result.accuracy;
      }
      const trainAccuracy = await this.#trainAccuracy();
      if (trainAccuracy !== undefined) metrics.trainAccuracy = trainAccuracy;
    }
    this.history.push(metrics);
    await dir.appendMetrics(metrics);
    await dir.appendSamples(samples);
    progress.update({
      done: step,
      reward: metrics.rewardMean,
      rewardStd: metrics.rewardStd,
      ...(metrics.evalAccuracy === undefined ? {} : { accuracy: metrics.evalAccuracy }),
      tokensPerSecond: metrics.tokensPerSecond,
      etaSeconds: (this.#trainSeconds / this.history.length) * (steps - step),
    });
    if (metrics.skippedUpdates > 0) {
      progress.log(
        `step ${step}: skipped ${plural(metrics.skippedUpdates, "update")} with a non-finite ` +
          `loss or gradient (${this.#run.faults.total} in all)`,
      );
    }
    this.#options.onStep?.(metrics);
    if (checkpointEvery !== null && step % checkpointEvery === 0 && step !== steps) {
      await this.checkpoint(step);
    } else {
      await dir.saveInfo({ step });
    }
  }

  /** Writes a checkpoint after `step`, keeps the newest `checkpoint.keep`, and redraws the report. */
  async checkpoint(step: number): Promise<void> {
    const { plan, dir } = this.#context;
    const name = await dir.saveCheckpoint(this.#run, step, plan.schedule.checkpointKeep);
    await dir.saveInfo({ step, checkpoint: { step, dir: `checkpoints/${name}` } });
    await dir.report();
  }

  /** What the run measured so far, `started` (a `performance.now()`) to now. */
  outcome(started: number): Outcome {
    return {
      accuracyBefore: this.accuracyBefore,
      accuracyAfter: this.accuracyAfter,
      rewardMean: this.history.at(-1)?.rewardMean ?? null,
      seconds: (performance.now() - started) / 1000,
    };
  }

  /** Greedy accuracy on the eval set (a progress phase when `shown`); null without evaluation. */
  async #evaluate(shown: boolean): Promise<EvalResult | null> {
    const metric = this.#metric;
    if (!metric || this.#evalSet.length === 0) return null;
    const { params, adapters, config, task, plan } = this.#run;
    const progress = this.#context.progress;
    if (shown) progress.start("eval", this.#evalSet.length);
    const policy = policyWeights(params, adapters); // with LoRA, merged for the evaluation
    const result = await evaluate(
      this.#run.kernels,
      policy.weights,
      config,
      task.tokenizer,
      this.#evalSet,
      metric,
      plan.shapes,
      shown
        ? (done, _total, correct) => progress.update({ done, accuracy: correct / done })
        : undefined,
    ).catch(outOfMemory(plan, "eval", ["eval"])).finally(() => policy.release());
    if (shown) progress.stop();
    return result;
  }

  /** Greedy accuracy on as many train problems, when tracked. */
  async #trainAccuracy(): Promise<number | undefined> {
    const metric = this.#metric;
    if (!this.#options.track?.trainAccuracy || !metric || this.#trainSet.length === 0) {
      return undefined;
    }
    const { params, adapters, config, task, plan } = this.#run;
    const policy = policyWeights(params, adapters);
    return (await evaluate(
      this.#run.kernels,
      policy.weights,
      config,
      task.tokenizer,
      this.#trainSet,
      metric,
      plan.shapes,
    ).catch(outOfMemory(plan, "eval", ["eval"])).finally(() => policy.release())).accuracy;
  }
}

/**
 * What the plan's `update` asks of each step's update: micro-batches of whole groups and
 * activation checkpointing (none when the plan has no `update`, as before these options).
 */
export function updateOptions(
  update: Plan["update"],
): Pick<TrainStepOptions, "microBatchRows" | "gradientCheckpointing"> {
  if (update === undefined) return {};
  return {
    ...(update.microBatches > 1 ? { microBatchRows: update.microBatchRows } : {}),
    ...(update.gradientCheckpointing ? { gradientCheckpointing: true } : {}),
  };
}
