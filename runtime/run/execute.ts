/**
 * Executing a plan: set up the backend, data, policy, warm start and reference; evaluate at step
 * 0; run the steps, evaluating every `eval.every` and checkpointing every `checkpoint.every`;
 * evaluate at the end; write the final checkpoint. Everything lands in the run directory
 * `runs/<name>-<time>/`:
 *
 * - `recipe.json` (resolved) and `plan.json` (with its hash), written once,
 * - `run.json`: provenance (versions, backend, seed, plan hash, the recipe's source) and status,
 * - `metrics.jsonl`: a line per step (`StepMetrics`), plus `evalAccuracy` on evaluated steps,
 * - `samples.jsonl`: a few groups every `log.samplesEvery` steps (`SampleGroup`),
 * - `checkpoints/`: `initial/` (the policy RL starts from), `step-NNNNNN/` (the newest
 *   `checkpoint.keep`) and `final/`, each complete or absent (`run_checkpoint.ts`),
 * - `report.html`: plots and samples, refreshed at each checkpoint and at the end.
 *
 * A run resumed from its directory continues from the newest complete checkpoint and writes what
 * an uninterrupted run would have written, line for line (timings aside): every random stream,
 * the data cursor and AdamW's state are part of the checkpoint, and the logs are cut back to it.
 *
 * @module
 */

import type { Plan } from "../../dsl/plan.ts";
import denoJson from "../../deno.json" with { type: "json" };
import { plural } from "../../dsl/format.ts";
import { planHash } from "../../dsl/plan.ts";
import { tf, useBackend } from "../engine/backend.ts";
import { type EvalResult, evaluate } from "../rl/evaluate.ts";
import { checkpointFiles, loadCheckpoint, weightsToTensors } from "../engine/model/checkpoint.ts";
import {
  initParams,
  type ModelConfig,
  modelConfig,
  type Params,
} from "../engine/model/transformer.ts";
import { rewardModelScorer } from "../rl/rewards/reward_model.ts";
import { objectives } from "../rl/objectives/mod.ts";
import { createScorer, type SourceOptions, type SourceScorer } from "../rl/rewards/mod.ts";
import type { Objective } from "../rl/objectives/types.ts";
import { adamW, disposeAdamW } from "../engine/optim.ts";
import { Rng } from "../engine/random.ts";
import { loadTask } from "../data/task.ts";
import { type Run, type StepMetrics, trainStep } from "../rl/train_step.ts";
import { parseMetrics } from "../../analysis/compare/metrics.ts";
import { warmStart } from "../rl/warm_start.ts";
import { outOfMemory, STEP_STAGES } from "./out_of_memory.ts";
import { duration, lineProgress, pct, type Progress } from "./progress.ts";
import {
  JsonlLog,
  lockRunDir,
  osReason,
  pruneCheckpoints,
  type RunInfo,
  stepCheckpoints,
  writeCheckpointDir,
  writeFileAtomic,
} from "./run_dir.ts";
import {
  loadFrozen,
  readRunCheckpoint,
  restoreRun,
  type RunCheckpoint,
  saveRunCheckpoint,
  trainerState,
} from "./checkpoint.ts";

/** Options of `execute()`. */
export interface ExecuteOptions {
  /** Where run directories are created. @default "runs" */
  runsDir?: string;
  /**
   * Where the recipe came from: relative data paths and reward modules start there.
   * @default the current directory
   */
  baseUrl?: string | URL;
  /**
   * A run directory to continue, from its newest complete checkpoint (or from the start, in the
   * same directory, when it has none). Its plan must be this plan.
   */
  resume?: string;
  /** Receives each console line of the default progress (`lineProgress`). @default console.log */
  log?: (line: string) => void;
  /** Shows the run's progress (the command line draws bars on a terminal). @default lines to `log` */
  progress?: Progress;
  /**
   * Asks the run to stop: it finishes the step in progress, writes a checkpoint and returns with
   * status `"interrupted"` (the command line aborts it on Ctrl-C).
   */
  signal?: AbortSignal;
  /** Where the recipe came from (a path or URL), recorded in `run.json`. */
  source?: string;
  /** Write `report.html` at each checkpoint and at the end. @default true */
  report?: boolean;
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

/** What a run measured. */
export interface RunResult {
  /** The run directory. */
  dir: string;
  hash: string;
  /** `"interrupted"` when `signal` stopped it; it resumes from `step`. */
  status: "finished" | "interrupted";
  /** The last step completed. */
  step: number;
  /** Eval accuracy after the warm start, before any RL update (null without evaluation). */
  accuracyBefore: number | null;
  /** Eval accuracy at the end (the latest, when interrupted). */
  accuracyAfter: number | null;
  /** The total reward's mean at the last step. */
  rewardMean: number | null;
  /** Every step's metrics, the ones before a resume included. */
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
    throw new RunSetupError(`Cannot create a run directory in '${runsDir}': ${osReason(e)}`);
  }
  for (let n = 1;; n++) {
    const dir = `${runsDir}/${name}-${stamp}${n === 1 ? "" : `-${n}`}`;
    try {
      await Deno.mkdir(dir);
      return dir;
    } catch (e) {
      if (e instanceof Deno.errors.AlreadyExists) continue;
      throw new RunSetupError(`Cannot create a run directory in '${runsDir}': ${osReason(e)}`);
    }
  }
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

/** Set once the run has been asked to stop (the `signal` option), checked between steps. */
class Interrupted extends Error {}

/** A resumable run directory, checked before anything loads. */
interface Resumable {
  dir: string;
  info: RunInfo | null;
  /** The newest complete checkpoint; null to start the run over in its directory. */
  checkpoint: RunCheckpoint | null;
  /** `run.lock`, held until the run ends. */
  lock: Deno.FsFile;
}

/**
 * The run directory to resume, and its last complete checkpoint (a checkpoint that cannot be read
 * is passed over for the one before it).
 * @throws {RunSetupError} when it is not a run of this plan, finished, or running now.
 */
async function openResumable(dir: string, hash: string, log: (l: string) => void) {
  let ran: { hash?: string };
  try {
    ran = JSON.parse(await Deno.readTextFile(`${dir}/plan.json`));
  } catch (e) {
    const why = e instanceof Deno.errors.NotFound ? "it has no plan.json" : (e as Error).message;
    throw new RunSetupError(`Cannot resume '${dir}': ${why}`);
  }
  if (ran.hash !== hash) {
    throw new RunSetupError(
      `Cannot resume '${dir}': it ran plan ${ran.hash}, this recipe compiles to ${hash}; ` +
        `resume it with the recipe it ran, ${dir}/recipe.json`,
    );
  }
  let info: RunInfo | null = null;
  try {
    info = JSON.parse(await Deno.readTextFile(`${dir}/run.json`)) as RunInfo;
  } catch {
    // An older run directory, or one killed before run.json was first written.
  }
  if (info?.status === "finished") {
    throw new RunSetupError(`Cannot resume '${dir}': it finished (step ${info.step})`);
  }
  const lock = await lockRunDir(dir).catch((e) => {
    throw new RunSetupError(`Cannot resume '${dir}': ${(e as Error).message}`);
  });
  if (!lock) {
    throw new RunSetupError(
      `Cannot resume '${dir}': another process is running it (process ${info?.pid})`,
    );
  }
  for (const { dir: name } of await stepCheckpoints(`${dir}/checkpoints`)) {
    try {
      const checkpoint = await readRunCheckpoint(`${dir}/checkpoints/${name}`, hash);
      return { dir, info, checkpoint, lock } satisfies Resumable;
    } catch (e) {
      log(`checkpoint ${name} cannot be read (${(e as Error).message}); trying the one before`);
    }
  }
  return { dir, info, checkpoint: null, lock } satisfies Resumable;
}

/** This machine's name, or "unknown" without the permission to read it (never a prompt). */
function hostname(): string {
  const { state } = Deno.permissions.querySync({ name: "sys", kind: "hostname" });
  return state === "granted" ? Deno.hostname() : "unknown";
}

/** The versions a run records. */
function versions(): RunInfo["versions"] {
  return {
    giftwrap: denoJson.version,
    deno: Deno.version.deno,
    v8: Deno.version.v8,
    typescript: Deno.version.typescript,
    tfjs: tf.version.tfjs,
  };
}

/**
 * Runs a plan to the end (or until `signal` asks it to stop) and returns what it measured.
 *
 * @example
 * ```ts
 * const result = await execute(compile(recipe), { runsDir: "runs" });
 * console.log(result.accuracyBefore, result.accuracyAfter, result.dir);
 * ```
 */
export async function execute(plan: Plan, options: ExecuteOptions = {}): Promise<RunResult> {
  const log = options.log ?? ((line: string) => console.log(line));
  const progress = options.progress ?? lineProgress(log);
  const runsDir = options.runsDir ?? "runs";
  const started = performance.now();
  const baseUrl = options.baseUrl ?? new URL(`file://${Deno.cwd()}/`);
  const hash = planHash(plan);
  const resumed = options.resume === undefined
    ? null
    : await openResumable(options.resume, hash, (l) => progress.log(l));
  // Setup: every random stream forks from the seed by name, so adding one changes no other.
  const seed = new Rng(plan.seed);
  const setup = async () => {
    const { objective, options: objectiveOptions } = await objectiveOf(plan, baseUrl);
    const backend = await useBackend(plan.backend.name);
    const task = await loadTask(plan, seed.fork("data"), baseUrl);
    const sources = await rewardSources(plan, String(baseUrl));
    return { objective, objectiveOptions, backend, task, sources };
  };
  const { objective, objectiveOptions, backend, task, sources } = await setup().catch((e) => {
    resumed?.lock.close();
    throw e;
  });
  const config = modelConfig(plan.model);
  // Everything made from here on is released on the way out, whether the run ends or fails.
  const release: (() => unknown)[] = [() => Promise.all(sources.map((s) => s.scorer.close?.()))];
  let info: RunInfo | null = null;
  let dir = "";
  const saveInfo = (changes: Partial<RunInfo>) => {
    info = { ...info!, ...changes, updated: new Date().toISOString() };
    return writeFileAtomic(`${dir}/run.json`, JSON.stringify(info, null, 2) + "\n");
  };
  // report.html, from what the run directory holds now; a failure to draw it fails nothing.
  const report = async () => {
    if (options.report === false) return;
    try {
      const { writeReport } = await import("../../analysis/report/mod.ts");
      await writeReport(dir);
    } catch (e) {
      progress.log(`report.html not written: ${(e as Error).message.split("\n")[0]}`);
    }
  };
  try {
    const fromCheckpoint = plan.reference.kind === "checkpoint"
      ? await loadReference(new URL(plan.reference.checkpoint!, baseUrl), config)
      : null;
    release.push(() => tf.dispose(Object.values(fromCheckpoint ?? {})));

    // The run directory: a new one, or the resumed one cut back to its last checkpoint.
    const checkpoint = resumed?.checkpoint ?? null;
    const resumeStep = checkpoint?.state.step ?? 0;
    dir = resumed?.dir ?? await createRunDir(runsDir, plan.name);
    const lock = resumed?.lock ?? await lockRunDir(dir);
    release.push(() => lock?.close());
    const checkpointsDir = `${dir}/checkpoints`;
    const now = new Date().toISOString();
    info = {
      format: "giftwrap.run/1",
      name: plan.name,
      status: "running",
      started: resumed?.info?.started ?? now,
      updated: now,
      pid: Deno.pid,
      host: hostname(),
      recipe: { source: options.source ?? resumed?.info?.recipe.source ?? null },
      planHash: hash,
      seed: plan.seed,
      backend: { name: backend.name, description: backend.description },
      versions: versions(),
      steps: plan.schedule.steps,
      step: resumeStep,
      checkpoint: checkpoint
        ? { step: resumeStep, dir: `checkpoints/${basename(checkpoint.dir)}` }
        : null,
      resumes: [
        ...resumed?.info?.resumes ?? [],
        ...(resumed ? [{ fromStep: resumeStep, at: now }] : []),
      ],
      result: null,
      error: null,
    };
    if (!resumed) {
      await writeFileAtomic(`${dir}/recipe.json`, JSON.stringify(plan.recipe, null, 2) + "\n");
      await writeFileAtomic(`${dir}/plan.json`, JSON.stringify({ hash, ...plan }, null, 2) + "\n");
    } else if (!checkpoint) {
      // Nothing to continue from: start over in the same directory.
      await Deno.remove(checkpointsDir, { recursive: true }).catch(() => {});
    }
    await saveInfo({});
    if (checkpoint) {
      await writeFileAtomic(`${dir}/metrics.jsonl`, checkpoint.metrics);
    }
    await Deno.mkdir(checkpointsDir, { recursive: true });
    await pruneCheckpoints(checkpointsDir, Number.POSITIVE_INFINITY);
    const metricsLog = await JsonlLog.open(
      `${dir}/metrics.jsonl`,
      checkpoint?.state.logs.metricsBytes ?? 0,
    );
    release.push(() => metricsLog.close());
    const samplesLog = await JsonlLog.open(
      `${dir}/samples.jsonl`,
      checkpoint?.state.logs.samplesBytes ?? 0,
    );
    release.push(() => samplesLog.close());
    progress.log(
      `${resumed ? "resume" : "run"} ${plan.name} · plan ${hash} · ${backend.description} · ` +
        `${plan.model.params.toLocaleString("en-US")} parameters → ${dir}` +
        (resumed ? ` · from ${checkpoint ? `step ${resumeStep}` : "the start"}` : ""),
    );

    // 1) the policy: from the checkpoint, or initialised and warm-started
    const params = checkpoint
      ? weightsToTensors(checkpoint.weights, true)
      : initParams(config, seed.fork("init"));
    release.push(() => tf.dispose(Object.values(params)));
    if (!checkpoint) {
      const spec = plan.model.warmStart;
      if (spec && spec.sftSteps > 0) progress.start("warm start", spec.sftSteps);
      const warm = await warmStart(
        plan,
        params,
        config,
        task.tokenizer,
        task.splits.train,
        seed.fork("warm start"),
        {
          // Beside the run: a resumed run's directory may not be under `runsDir`.
          cacheDir: `${dirname(dir)}/.cache/warm-start`,
          matmul: backend.matmul.blas,
          progress: (done, _total, loss) => {
            progress.update({ done, loss });
            if (options.signal?.aborted) throw new Interrupted();
          },
        },
      ).catch(outOfMemory(plan, "warm start", ["warm start"]));
      if (spec && spec.sftSteps > 0) {
        progress.stop();
        progress.log(
          warm.cached
            ? `warm start: cached (${warm.dir})`
            : `warm start: ${spec.sftSteps} steps in ${duration(warm.seconds)}`,
        );
      }
      // The policy RL starts from: π_ref for "initial", and what a resumed run reloads.
      await writeCheckpointDir(
        `${checkpointsDir}/initial`,
        await checkpointFiles(params, config, task.tokenizer.alphabet),
      );
    }

    // 2) the reference, and the policy RL started from when KL to it is tracked
    const needsInitial = plan.reference.kind === "initial" || options.track?.klInitial === true;
    const startPolicy = !needsInitial
      ? null
      : checkpoint
      ? await loadFrozen(`${checkpointsDir}/initial`).catch((e) => {
        throw new RunSetupError(
          `Cannot resume '${dir}': checkpoints/initial: ${(e as Error).message}`,
        );
      })
      : freeze(params);
    release.push(() => tf.dispose(Object.values(startPolicy ?? {})));
    const reference = plan.reference.kind === "initial" ? startPolicy : fromCheckpoint;
    const initial = options.track?.klInitial ? startPolicy : null;

    // 3) the optimiser and the trainer's state, restored from the checkpoint
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
      faults: { inRow: 0, total: 0 },
    };
    if (checkpoint) restoreRun(run, checkpoint);

    const evalSplit = plan.schedule.evalSplit === "train" ? task.splits.train : task.splits.eval;
    const evalSet = evalSplit.slice(0, plan.schedule.evalProblems);
    const metric = plan.schedule.evalMetric;
    const runEval = async (shown: boolean): Promise<EvalResult | null> => {
      if (!metric || evalSet.length === 0) return null;
      if (shown) progress.start("eval", evalSet.length);
      const result = await evaluate(
        params,
        config,
        task.tokenizer,
        evalSet,
        metric,
        plan.shapes,
        shown
          ? (done, _total, correct) => progress.update({ done, accuracy: correct / done })
          : undefined,
      ).catch(outOfMemory(plan, "eval", ["eval"]));
      if (shown) progress.stop();
      return result;
    };
    const trainSet = task.splits.train.slice(0, evalSet.length);
    const runTrainEval = async (): Promise<number | undefined> =>
      options.track?.trainAccuracy && metric && trainSet.length > 0
        ? (await evaluate(params, config, task.tokenizer, trainSet, metric, plan.shapes)
          .catch(outOfMemory(plan, "eval", ["eval"]))).accuracy
        : undefined;

    const { steps, evalEvery, checkpointEvery, checkpointKeep, samplesEvery } = plan.schedule;
    // The metrics so far: the checkpoint's copy when resuming.
    const earlier = checkpoint ? parseMetrics(checkpoint.metrics) : [];
    const history = earlier.filter((m) => m.step > 0) as unknown as StepMetrics[];
    let accuracyBefore = earlier.find((m) => m.step === 0)?.evalAccuracy ?? null;
    let accuracyAfter = earlier.findLast((m) => m.evalAccuracy !== undefined)?.evalAccuracy ??
      null;
    let metricsText = checkpoint?.metrics ?? "";
    const appendMetrics = async (line: object) => {
      await metricsLog.append(line);
      metricsText += JSON.stringify(line) + "\n";
    };

    // Writes a checkpoint after `step`, keeps the newest `checkpointKeep`, and refreshes the report.
    const saveState = async (step: number) => {
      const state = trainerState(run, step, hash, {
        metricsBytes: metricsLog.bytes,
        samplesBytes: samplesLog.bytes,
      });
      const name = await saveRunCheckpoint(checkpointsDir, run, state, metricsText);
      await pruneCheckpoints(checkpointsDir, checkpointKeep);
      await saveInfo({ step, checkpoint: { step, dir: `checkpoints/${name}` } });
      await report();
    };

    // Step 0: after the warm start, before any RL update.
    if (!checkpoint) {
      const before = await runEval(true);
      if (before) {
        progress.log(
          `eval step 0 · accuracy ${pct(before.accuracy)} (${before.correct}/${before.total})`,
        );
        const trainAccuracy = await runTrainEval();
        await appendMetrics({
          step: 0,
          evalAccuracy: before.accuracy,
          ...(trainAccuracy === undefined ? {} : { trainAccuracy }),
        });
        accuracyBefore = accuracyAfter = before.accuracy;
      }
    }

    let trainSeconds = history.reduce((sum, m) => sum + m.stepSeconds, 0);
    let stopped = false;
    progress.start("train", steps, resumeStep);
    for (let step = resumeStep + 1; step <= steps; step++) {
      if (options.signal?.aborted) {
        // Asked to stop: keep the steps done so far, resumable.
        progress.stop();
        if (info.checkpoint?.step !== step - 1) await saveState(step - 1);
        stopped = true;
        break;
      }
      const logSamples = step === 1 || step % samplesEvery === 0 || step === steps;
      const { metrics, samples } = await trainStep(run, step, { logSamples })
        .catch(outOfMemory(plan, `step ${step}`, STEP_STAGES));
      trainSeconds += metrics.stepSeconds;
      const evaluated = step === steps || (evalEvery !== null && step % evalEvery === 0);
      if (evaluated) {
        const result = await runEval(false);
        if (result) {
          metrics.evalAccuracy = result.accuracy;
          accuracyAfter = result.accuracy;
        }
        const trainAccuracy = await runTrainEval();
        if (trainAccuracy !== undefined) metrics.trainAccuracy = trainAccuracy;
      }
      history.push(metrics);
      await appendMetrics(metrics);
      await samplesLog.append(...samples);
      progress.update({
        done: step,
        reward: metrics.rewardMean,
        rewardStd: metrics.rewardStd,
        ...(metrics.evalAccuracy === undefined ? {} : { accuracy: metrics.evalAccuracy }),
        tokensPerSecond: metrics.tokensPerSecond,
        etaSeconds: (trainSeconds / history.length) * (steps - step),
      });
      if (metrics.skippedUpdates > 0) {
        progress.log(
          `step ${step}: skipped ${plural(metrics.skippedUpdates, "update")} with a non-finite ` +
            `loss or gradient (${run.faults.total} in all)`,
        );
      }
      options.onStep?.(metrics);
      if (checkpointEvery !== null && step % checkpointEvery === 0 && step !== steps) {
        await saveState(step);
      } else {
        await saveInfo({ step });
      }
    }
    const seconds = (performance.now() - started) / 1000;
    const result = {
      accuracyBefore,
      accuracyAfter,
      rewardMean: history.at(-1)?.rewardMean ?? null,
      seconds,
    };
    if (stopped) {
      const at = info.checkpoint!.step;
      await saveInfo({ status: "interrupted", result });
      progress.log(
        `stopped after step ${at} of ${steps}: checkpoint ${info.checkpoint!.dir} · resume with ` +
          `--resume ${dir}`,
      );
      return { dir, hash, status: "interrupted", step: at, ...result, metrics: history };
    }
    progress.stop();

    // The final checkpoint: weights, optimiser moments, RNG and data-order state.
    const finalState = trainerState(run, steps, hash, {
      metricsBytes: metricsLog.bytes,
      samplesBytes: samplesLog.bytes,
    });
    await saveRunCheckpoint(checkpointsDir, run, finalState, metricsText, "final");
    await pruneCheckpoints(checkpointsDir, checkpointKeep);
    await options.onFinish?.(run);
    await saveInfo({
      status: "finished",
      step: steps,
      checkpoint: { step: steps, dir: "checkpoints/final" },
      result,
    });
    await report();
    const stepsText = plural(steps, "step");
    if (accuracyBefore !== null && accuracyAfter !== null) {
      const points = 100 * (accuracyAfter - accuracyBefore);
      progress.log(
        `accuracy ${pct(accuracyBefore)} → ${pct(accuracyAfter)} ` +
          `(${points >= 0 ? "+" : ""}${points.toFixed(1)} points) after ${stepsText} · ` +
          `${duration(seconds)} · ${dir}`,
      );
    } else {
      progress.log(`done: ${stepsText} · ${duration(seconds)} · ${dir}`);
    }
    return { dir, hash, status: "finished", step: steps, ...result, metrics: history };
  } catch (e) {
    progress.stop();
    if (info && dir) {
      const last = (info as RunInfo).checkpoint;
      if (e instanceof Interrupted) {
        await saveInfo({ status: "interrupted" }).catch(() => {});
        progress.log(`stopped during the warm start, before any RL step · ${dir}`);
        return {
          dir,
          hash,
          status: "interrupted",
          step: 0,
          accuracyBefore: null,
          accuracyAfter: null,
          rewardMean: null,
          seconds: (performance.now() - started) / 1000,
          metrics: [],
        };
      }
      // Record the failure; a full disk may refuse even that, and the error says why anyway.
      const error = (e instanceof Error ? e.message : String(e)).split("\n")[0]!;
      await saveInfo({ status: "failed", error }).catch(() => {});
      await report();
      if (last) {
        progress.log(
          `the last checkpoint is step ${last.step} (${dir}/${last.dir}) · resume with --resume ${dir}`,
        );
      }
    }
    throw e;
  } finally {
    for (const free of release.reverse()) await free();
  }
}

function basename(path: string): string {
  return path.slice(path.lastIndexOf("/") + 1);
}

function dirname(path: string): string {
  const at = path.lastIndexOf("/");
  return at < 0 ? "." : path.slice(0, at) || "/";
}
