/**
 * Executing a plan: set up the backend, data, policy, warm start and reference; evaluate at step
 * 0; run the steps, evaluating every `eval.every`; evaluate at the end; write the final
 * checkpoint. Everything lands in the run directory `runs/<name>-<time>/`:
 *
 * - `recipe.json` (resolved) and `plan.json` (with its hash),
 * - `metrics.jsonl`: a line per step (`StepMetrics`), plus `evalAccuracy` on evaluated steps,
 * - `samples.jsonl`: a few completions per step,
 * - `checkpoints/final/`: weights and `config.json`, the optimiser's moments and the RNG state.
 *
 * @module
 */

import type { Plan } from "../dsl/plan.ts";
import { plural } from "../dsl/format.ts";
import { planHash } from "../dsl/plan.ts";
import { tf, useBackend } from "./backend.ts";
import { type EvalResult, evaluate } from "./evaluate.ts";
import {
  loadCheckpoint,
  saveCheckpoint,
  toTensorData,
  weightsToTensors,
} from "./model/checkpoint.ts";
import { encodeSafetensors } from "./model/safetensors.ts";
import { initParams, type ModelConfig, modelConfig, type Params } from "./model/transformer.ts";
import { rewardModelScorer } from "./model/reward_model.ts";
import { objectives } from "./objectives/mod.ts";
import { createScorer, type SourceOptions, type SourceScorer } from "./rewards/mod.ts";
import type { Objective } from "./objectives/types.ts";
import { adamW, disposeAdamW } from "./optim.ts";
import { Rng } from "./random.ts";
import { loadTask } from "./task.ts";
import { type Run, type StepMetrics, trainStep } from "./train.ts";
import { warmStart } from "./warm_start.ts";

/** Options of `execute()`. */
export interface ExecuteOptions {
  /** Where run directories are created. @default "runs" */
  runsDir?: string;
  /**
   * Where the recipe came from: relative data paths and reward modules start there.
   * @default the current directory
   */
  baseUrl?: string | URL;
  /** Continue a run from its last checkpoint (not in this runtime yet). */
  resume?: string;
  /** Receives each console line. @default console.log */
  log?: (line: string) => void;
  /** Called after every step (tests read the tensor count here). */
  onStep?: (metrics: StepMetrics) => void;
  /**
   * Extra measurements: `trainAccuracy` (greedy accuracy on as many train problems as the eval
   * uses, at every evaluation: the train–eval gap) and `klInitial` (KL to the policy RL started
   * from, every step; one more forward pass unless the reference is that policy).
   */
  track?: { trainAccuracy?: boolean; klInitial?: boolean };
  /** Called with the trained run before its tensors are freed (to evaluate or export it). */
  onFinish?: (run: Run) => void | Promise<void>;
}

/** What a finished run measured. */
export interface RunResult {
  /** The run directory. */
  dir: string;
  hash: string;
  /** Eval accuracy after the warm start, before any RL update (null without evaluation). */
  accuracyBefore: number | null;
  /** Eval accuracy at the end. */
  accuracyAfter: number | null;
  metrics: StepMetrics[];
  seconds: number;
}

/** A run of a plan that cannot start; the message is one line for the user. */
export class RunSetupError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "RunSetupError";
  }
}

/**
 * The implemented objective a plan names: checked before any tensor exists, so an unsupported
 * plan costs nothing.
 */
async function objectiveOf(
  plan: Plan,
  baseUrl: string | URL,
): Promise<{ objective: Objective<unknown>; options: unknown }> {
  const declared = plan.objective.options as unknown as {
    kind: string;
    module?: string;
    export?: string;
    options?: unknown;
  };
  if (declared.kind === "custom") {
    const where = `${declared.module}#${declared.export}`;
    let module: Record<string, unknown>;
    try {
      module = await import(new URL(declared.module!, baseUrl).href);
    } catch (e) {
      const why = (e as Error).message.split("\n")[0];
      throw new RunSetupError(`Cannot load objective ${where}: ${why}`);
    }
    const found = module[declared.export!] as Partial<Objective<unknown>> | undefined;
    if (!found || typeof found.loss !== "function" || typeof found.name !== "string") {
      throw new RunSetupError(
        `Cannot use objective ${where}: expected an Objective ({ name, needs, loss(batch, ` +
          `options) }), got ${found === undefined ? "nothing" : typeof found}`,
      );
    }
    return { objective: found as Objective<unknown>, options: declared.options ?? {} };
  }
  const found = (objectives as Record<string, Objective<unknown>>)[plan.objective.kind];
  if (!found) {
    throw new RunSetupError(
      `Cannot run objective '${plan.objective.kind}': this runtime implements ` +
        `${Object.keys(objectives).join(", ")}; the plan compiles, and 'deno task plan' prints it`,
    );
  }
  return { objective: found, options: plan.objective.options };
}

/**
 * The plan's reward sources, ready to score; `fn` modules and checkpoints resolve from `baseUrl`.
 * @throws {RunSetupError} naming the source that cannot load (closing those that did).
 */
async function rewardSources(plan: Plan, baseUrl: string): Promise<SourceScorer[]> {
  const context = {
    baseUrl,
    maxNewTokens: plan.shapes.newTokens,
    rewardModel: (checkpoint: string, batchSize: number) =>
      rewardModelScorer(decodeURIComponent(new URL(checkpoint, baseUrl).pathname), batchSize),
  };
  const sources: SourceScorer[] = [];
  try {
    for (const [i, spec] of plan.rewards.entries()) {
      const scorer = await createScorer(spec.source as SourceOptions, context).catch((e) => {
        throw new RunSetupError(`rewards[${i}] ('${spec.name}'): ${(e as Error).message}`);
      });
      const { name, weight, success, onError } = spec;
      sources.push({ name, weight, success, onError, scorer });
    }
  } catch (e) {
    await Promise.all(sources.map((s) => s.scorer.close?.()));
    throw e;
  }
  return sources;
}

/** `name-YYYYMMDD-HHMMSS` in UTC, suffixed `-2`, `-3`… when taken. */
async function createRunDir(runsDir: string, name: string): Promise<string> {
  const stamp = new Date().toISOString().replace(/[-:]/g, "").replace("T", "-").slice(0, 15);
  try {
    await Deno.mkdir(runsDir, { recursive: true });
    if (!(await Deno.stat(runsDir)).isDirectory) throw new Error("it is not a directory");
  } catch (e) {
    const why = e instanceof Error ? e.message : String(e);
    throw new RunSetupError(`Cannot create a run directory in '${runsDir}': ${why}`);
  }
  for (let n = 1;; n++) {
    const dir = `${runsDir}/${name}-${stamp}${n === 1 ? "" : `-${n}`}`;
    try {
      await Deno.mkdir(dir);
      return dir;
    } catch (e) {
      if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
    }
  }
}

function pct(x: number): string {
  return `${(100 * x).toFixed(1)}%`;
}

function duration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  return s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s` : `${s}s`;
}

/**
 * A frozen reference from a checkpoint directory, which must have the policy's dimensions.
 * @throws {RunSetupError} naming the directory and the mismatch.
 */
async function loadReference(dir: URL, config: ModelConfig): Promise<Params> {
  const path = decodeURIComponent(dir.pathname);
  let loaded;
  try {
    loaded = await loadCheckpoint(path);
  } catch (e) {
    const why = e instanceof Deno.errors.NotFound ? "not found" : (e as Error).message;
    throw new RunSetupError(`Cannot load reference checkpoint '${path}': ${why}`);
  }
  for (const key of Object.keys(config) as (keyof ModelConfig)[]) {
    if (key !== "contextLength" && loaded.config[key] !== config[key]) {
      throw new RunSetupError(
        `Cannot use reference checkpoint '${path}': its ${key} is ${loaded.config[key]}, ` +
          `the policy's is ${config[key]}`,
      );
    }
  }
  return weightsToTensors(loaded.weights, false);
}

/** Frozen copies of `params` (kept tensors, not variables: tfjs variable names are global). */
function freeze(params: Record<string, tf.Variable>): Params {
  return Object.fromEntries(Object.entries(params).map(([n, p]) => [n, tf.keep(p.clone())]));
}

/**
 * Runs a plan to the end and returns what it measured.
 *
 * @example
 * ```ts
 * const result = await execute(compile(recipe), { runsDir: "runs" });
 * console.log(result.accuracyBefore, result.accuracyAfter, result.dir);
 * ```
 */
export async function execute(plan: Plan, options: ExecuteOptions = {}): Promise<RunResult> {
  const log = options.log ?? ((line: string) => console.log(line));
  const runsDir = options.runsDir ?? "runs";
  if (options.resume !== undefined) {
    throw new RunSetupError(
      "Cannot resume: this runtime writes checkpoints but does not read them back into a run yet",
    );
  }
  const started = performance.now();
  const baseUrl = options.baseUrl ?? new URL(`file://${Deno.cwd()}/`);
  const { objective, options: objectiveOptions } = await objectiveOf(plan, baseUrl);
  const backend = await useBackend(plan.backend.name);
  const hash = planHash(plan);

  // Setup: every random stream forks from the seed by name, so adding one changes no other.
  const seed = new Rng(plan.seed);
  const task = await loadTask(plan, seed.fork("data"), baseUrl);
  const config = modelConfig(plan.model);
  const sources = await rewardSources(plan, String(baseUrl));
  // Everything made from here on is released on the way out, whether the run ends or fails.
  const release: (() => unknown)[] = [() => Promise.all(sources.map((s) => s.scorer.close?.()))];
  try {
    const fromCheckpoint = plan.reference.kind === "checkpoint"
      ? await loadReference(new URL(plan.reference.checkpoint!, baseUrl), config)
      : null;
    release.push(() => tf.dispose(Object.values(fromCheckpoint ?? {})));
    const params = initParams(config, seed.fork("init"));
    release.push(() => tf.dispose(Object.values(params)));
    const dir = await createRunDir(runsDir, plan.name);
    await Deno.writeTextFile(`${dir}/recipe.json`, JSON.stringify(plan.recipe, null, 2) + "\n");
    await Deno.writeTextFile(
      `${dir}/plan.json`,
      JSON.stringify({ hash, ...plan }, null, 2) + "\n",
    );
    log(
      `run ${plan.name} · plan ${hash} · ${backend.description} · ` +
        `${plan.model.params.toLocaleString("en-US")} parameters → ${dir}`,
    );

    const warm = await warmStart(
      plan,
      params,
      config,
      task.tokenizer,
      task.splits.train,
      seed.fork("warm start"),
      {
        cacheDir: `${runsDir}/.cache/warm-start`,
        progress: (step, total, loss) =>
          log(`warm start ${step}/${total} · loss ${loss.toFixed(4)}`),
      },
    );
    if (plan.model.warmStart && plan.model.warmStart.sftSteps > 0) {
      log(
        warm.cached
          ? `warm start: cached (${warm.dir})`
          : `warm start: ${plan.model.warmStart.sftSteps} steps in ${duration(warm.seconds)}`,
      );
    }
    const reference = plan.reference.kind === "initial" ? freeze(params) : fromCheckpoint;
    if (reference !== fromCheckpoint) {
      release.push(() => tf.dispose(Object.values(reference ?? {})));
    }
    const initial = !options.track?.klInitial
      ? null
      : plan.reference.kind === "initial"
      ? reference
      : freeze(params);
    if (initial && initial !== reference) release.push(() => tf.dispose(Object.values(initial)));
    const optimizer = adamW(
      params,
      plan.optimizer,
      plan.schedule.steps * plan.schedule.optimizerStepsPerBatch,
    );
    release.push(() => disposeAdamW(optimizer));
    const run: Run = {
      plan,
      config,
      task,
      params,
      reference,
      initial,
      sources,
      optimizer,
      objective,
      objectiveOptions,
      sampleRng: seed.fork("sample"),
      promptRng: seed.fork("prompts"),
      cursor: { order: [], next: 0 },
    };

    const evalSplit = plan.schedule.evalSplit === "train" ? task.splits.train : task.splits.eval;
    const evalSet = evalSplit.slice(0, plan.schedule.evalProblems);
    const metric = plan.schedule.evalMetric;
    const runEval = async (): Promise<EvalResult | null> =>
      metric && evalSet.length > 0
        ? await evaluate(params, config, task.tokenizer, evalSet, metric, plan.shapes)
        : null;
    const trainSet = task.splits.train.slice(0, evalSet.length);
    const runTrainEval = async (): Promise<number | undefined> =>
      options.track?.trainAccuracy && metric && trainSet.length > 0
        ? (await evaluate(params, config, task.tokenizer, trainSet, metric, plan.shapes)).accuracy
        : undefined;

    const metricsFile = await Deno.open(`${dir}/metrics.jsonl`, { create: true, append: true });
    const samplesFile = await Deno.open(`${dir}/samples.jsonl`, { create: true, append: true });
    const encoder = new TextEncoder();
    const history: StepMetrics[] = [];
    try {
      // Step 0: after the warm start, before any RL update.
      const before = await runEval();
      if (before) {
        log(`eval step 0 · accuracy ${pct(before.accuracy)} (${before.correct}/${before.total})`);
        const trainAccuracy = await runTrainEval();
        const line = {
          step: 0,
          evalAccuracy: before.accuracy,
          ...(trainAccuracy === undefined ? {} : { trainAccuracy }),
        };
        await metricsFile.write(encoder.encode(JSON.stringify(line) + "\n"));
      }
      let after = before;
      const { steps, evalEvery } = plan.schedule;
      let trainSeconds = 0;
      for (let step = 1; step <= steps; step++) {
        const { metrics, samples } = await trainStep(run, step);
        trainSeconds += metrics.stepSeconds;
        const evaluated = step === steps || (evalEvery !== null && step % evalEvery === 0);
        if (evaluated) {
          const result = await runEval();
          if (result) {
            metrics.evalAccuracy = result.accuracy;
            after = result;
          }
          const trainAccuracy = await runTrainEval();
          if (trainAccuracy !== undefined) metrics.trainAccuracy = trainAccuracy;
        }
        history.push(metrics);
        await metricsFile.write(encoder.encode(JSON.stringify(metrics) + "\n"));
        await samplesFile.write(
          encoder.encode(samples.map((s) => JSON.stringify(s) + "\n").join("")),
        );
        const eta = (trainSeconds / step) * (steps - step);
        log(
          `step ${step}/${steps} · reward ${metrics.rewardMean.toFixed(3)} ± ` +
            `${metrics.rewardStd.toFixed(3)}` +
            (metrics.evalAccuracy === undefined ? "" : ` · eval ${pct(metrics.evalAccuracy)}`) +
            ` · ${Math.round(metrics.tokensPerSecond).toLocaleString("en-US")} tok/s · ` +
            `ETA ${duration(eta)}`,
        );
        options.onStep?.(metrics);
      }

      // The final checkpoint: weights, optimiser moments, RNG and data-order state.
      const state = {
        step: steps,
        planHash: hash,
        optimizer: { t: run.optimizer.t },
        rng: { sample: run.sampleRng.state(), prompts: run.promptRng.state() },
        cursor: run.cursor,
      };
      await saveCheckpoint(`${dir}/checkpoints/final`, params, config, task.tokenizer.alphabet, {
        "optimizer.safetensors": encodeSafetensors({
          ...prefixed("m.", await toTensorData(run.optimizer.m, false)),
          ...prefixed("v.", await toTensorData(run.optimizer.v, false)),
        }),
        "trainer_state.json": JSON.stringify(state) + "\n",
      });

      await options.onFinish?.(run);
      const seconds = (performance.now() - started) / 1000;
      const stepsText = plural(steps, "step");
      if (before && after) {
        const points = 100 * (after.accuracy - before.accuracy);
        log(
          `accuracy ${pct(before.accuracy)} → ${pct(after.accuracy)} ` +
            `(${points >= 0 ? "+" : ""}${points.toFixed(1)} points) after ${stepsText} · ` +
            `${duration(seconds)} · ${dir}`,
        );
      } else {
        log(`done: ${stepsText} · ${duration(seconds)} · ${dir}`);
      }
      return {
        dir,
        hash,
        accuracyBefore: before?.accuracy ?? null,
        accuracyAfter: after?.accuracy ?? null,
        metrics: history,
        seconds,
      };
    } finally {
      metricsFile.close();
      samplesFile.close();
    }
  } finally {
    for (const free of release.reverse()) await free();
  }
}

function prefixed<T>(prefix: string, record: Record<string, T>): Record<string, T> {
  return Object.fromEntries(Object.entries(record).map(([k, v]) => [prefix + k, v]));
}
