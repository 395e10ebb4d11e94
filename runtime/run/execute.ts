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
 *   `checkpoint.keep`) and `final/`, each complete or absent (`checkpoint.ts`); with LoRA each
 *   holds the adapters (a PEFT adapter directory), not the frozen base,
 * - for a Hugging Face policy, what to serve: `model/` (a Hugging Face directory of the final
 *   weights), or with LoRA `adapter/` (PEFT's format) and, with `saveMerged`, `model/` merged,
 * - `report.html`, when the caller supplies a report writer: refreshed at each checkpoint and at
 *   the end,
 * - `run.lock`, while a process runs it.
 *
 * A run resumed from its directory continues from the newest complete checkpoint and writes what
 * an uninterrupted run would have written, line for line (timings aside): every random stream,
 * the data cursor and AdamW's state are part of the checkpoint, and the logs are cut back to it.
 *
 * Each phase is a function of its own file: `setup.ts`, `open.ts` (the run directory),
 * `reference.ts`, `policy.ts`, `trainer.ts`, `schedule.ts` (the steps) and `finish.ts`; a request
 * to stop is checked between steps (`interrupt.ts`).
 *
 * @module
 */

import { formatIssue } from "../../dsl/issues.ts";
import { plural } from "../../dsl/format.ts";
import { memoryIssues } from "../../dsl/memory.ts";
import type { Plan } from "../../dsl/plan.ts";
import { planHash } from "../../dsl/plan.ts";
import { machineMemory } from "../engine/native.ts";
import { modelConfig } from "../engine/model/transformer.ts";
import { Rng } from "../engine/random.ts";
import type { Run, StepMetrics } from "../rl/train_step.ts";
import { finish, recordFailure, type RunResult, stopAfter, stoppedBeforeSteps } from "./finish.ts";
import { Interrupted, stopRequested } from "./interrupt.ts";
import { openResumable, openRunDir } from "./open.ts";
import { startPolicy } from "./policy.ts";
import { lineProgress, type Progress } from "./progress.ts";
import { checkpointReference, references } from "./reference.ts";
import { Schedule } from "./schedule.ts";
import { planWithInputs, RunSetupError, setUp } from "./setup.ts";
import { startTrainer } from "./trainer.ts";

export type { RunResult } from "./finish.ts";
export { RunSetupError } from "./setup.ts";

/**
 * Options of `execute()`.
 *
 * @example
 * ```ts
 * const stop = new AbortController(); // stop.abort(): finish the step, checkpoint, return
 * const options: ExecuteOptions = { runsDir: "runs", signal: stop.signal, progress: lineProgress() };
 * await execute(plan, options);
 * ```
 */
export interface ExecuteOptions {
  /** Where run directories are created. @default "runs" */
  runsDir?: string;
  /**
   * Where the recipe came from: relative data paths and reward modules start there.
   * @default the current directory
   */
  baseUrl?: string | URL;
  /**
   * A run directory to continue, from its newest checkpoint that passes its checks (a newer one
   * that fails is moved aside, never deleted), or from the start, in the same directory, when it
   * has none at all. When it has checkpoints but none passes, the run stops with a
   * `RunSetupError` and changes nothing. Its plan must be this plan.
   */
  resume?: string;
  /**
   * With `resume`: start that run over from step 0 in its directory instead, its earlier files
   * (`run.json`, the logs, the report, `checkpoints/`) moved to `previous-<time>/` there.
   */
  restart?: boolean;
  /** Receives each console line of the default progress (`lineProgress`). @default console.log */
  log?: (line: string) => void;
  /** Shows the run's progress (the command line draws bars on a terminal). @default lines to `log` */
  progress?: Progress;
  /**
   * Asks the run to stop: it finishes the step in progress, writes a checkpoint and returns with
   * status `"interrupted"` (the command line aborts it on Ctrl-C). During the warm start, it stops
   * after the warm-start step in progress, with nothing to checkpoint.
   */
  signal?: AbortSignal;
  /** Where the recipe came from (a path or URL), recorded in `run.json`. */
  source?: string;
  /**
   * Writes the run directory's `report.html`, at each checkpoint and at the end; its failure is
   * logged and fails nothing. The runtime's entry (`runtime/mod.ts`) supplies the report of
   * `analysis/report/`. @default false (no report)
   */
  report?: ((dir: string) => Promise<unknown>) | false;
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
  const started = performance.now();
  const progress = options.progress ?? lineProgress(options.log ?? ((l) => console.log(l)));
  const baseUrl = options.baseUrl ?? new URL(`file://${Deno.cwd()}/`);
  // The content of the files it names is part of the plan, and of its hash.
  plan = await planWithInputs(plan, baseUrl);
  const hash = planHash(plan);
  // Everything made from here on is released on the way out, whether the run ends or fails.
  await using held = new AsyncDisposableStack();

  // 0) memory: compile() held the plan against the memory its caller gave (the CLI gives this
  //    machine's); a plan compiled without it, or on another machine, is held here, before
  //    anything loads or trains (dsl/memory.ts)
  const memory = memoryIssues(plan, machineMemory()).errors[0];
  if (memory !== undefined) throw new RunSetupError(`Cannot run plan: ${formatIssue(memory)}`);

  // 1) setup: the run to resume (checked before anything loads), the objective, backend, data,
  //    rewards and a checkpoint reference; then the run directory, new or cut back
  const resumed = options.resume === undefined
    ? null
    : held.use(await openResumable(options.resume, plan, hash, progress, options.restart));
  const seed = new Rng(plan.seed);
  const setup = held.use(await setUp(plan, seed, baseUrl));
  const config = modelConfig(plan.model);
  const fromCheckpoint = await checkpointReference(
    held,
    plan,
    config,
    baseUrl,
    setup.backend.kernels.layout,
  );
  const dir = held.use(
    await openRunDir(plan, hash, setup.backend, resumed, {
      runsDir: options.runsDir ?? "runs",
      ...(options.source === undefined ? {} : { source: options.source }),
      report: options.report ?? false,
      progress,
    }),
  );
  const context = { plan, config, seed, setup, dir, progress, held };
  try {
    await dir.start(plan, setup.backend);
    const skipped = setup.task.skipped ?? 0;
    if (skipped > 0) {
      progress.log(
        `data: ${plural(skipped, "row")} left out, its prompt over data.maxPromptTokens ` +
          `(${plan.shapes.promptTokens} tokens) as data.tooLong is 'skip'`,
      );
    }
    // 2) the policy: the checkpoint's, or initialised and warm-started (saved as initial/); with
    //    LoRA the frozen base and its adapters
    const policy = await startPolicy(context, options.signal);
    // 3) the reference, and the policy RL started from when KL to it is tracked
    const frozen = await references(context, policy, fromCheckpoint, options.track);
    // 4) the optimiser and the trainer's state, restored from the checkpoint
    const run = startTrainer(context, policy, frozen);
    // 5) step 0: evaluated after the warm start, before any RL update
    const schedule = new Schedule(context, run, options);
    if (!dir.checkpoint) await schedule.evaluateStart();
    // 6) the steps, each finished before a stop is honoured with a checkpoint of it
    progress.start("train", plan.schedule.steps, dir.resumeStep);
    for (let step = dir.resumeStep + 1; step <= plan.schedule.steps; step++) {
      if (await stopRequested(options.signal)) {
        return await stopAfter(context, schedule, step - 1, started);
      }
      await schedule.step(step);
    }
    // 7) the final checkpoint and the result
    return await finish(context, run, schedule, started, options.onFinish);
  } catch (e) {
    progress.stop();
    if (e instanceof Interrupted) return await stoppedBeforeSteps(dir, progress, started);
    await recordFailure(dir, e, progress);
    throw e;
  }
}
