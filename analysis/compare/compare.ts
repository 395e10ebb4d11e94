/**
 * A comparison of objectives: the same recipe trained once per objective and seed with the same
 * budget, each run a `giftwrap run` child process, then `summary.json` and `report.html`.
 *
 * 1. `planComparison()` (pure) builds and compiles every run's recipe before anything runs: a
 *    recipe that does not compile stops the comparison with one line per issue.
 * 2. `runComparison()`: with learning rates to tune, first each objective × lr on a tuning seed
 *    (the recipe's seed + 1000), keeping per objective the lr with the highest mean eval accuracy
 *    over the last 3 evaluations (ties: the smaller lr); then each objective with its lr on the
 *    seeds. Every run of a seed shares the prompts per step, the first sampled batch and the warm
 *    start (cached under `runs/.cache/warm-start`, so all runs share one runs directory, and a
 *    seed's first run goes alone until its warm start is done).
 *
 * A run that fails is reported as `<run name>: <its one-line error>` and the others go on.
 *
 * @module
 */

import type { CompileOptions } from "../../dsl/compile.ts";
import { relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { Backend, Recipe } from "../../dsl/schema.ts";
import type { ObjectiveLabel } from "./options.ts";
import { errorLine, progressLine, runChild, runPool } from "./jobs.ts";
import { readMetrics, type RunCurves, runCurves } from "./metrics.ts";
import { MAX_SEEDS, type Track, trackText } from "./options.ts";
import {
  comparisonSeeds,
  comparisonVariant,
  type RunVariant,
  tuningSeed,
  type VariantChange,
} from "./recipes.ts";
import { reportHtml } from "./report.ts";
import { lastEvaluationsMean, selectLr } from "./stats.ts";
import {
  formatTable,
  percent,
  type RunRecord,
  summarize,
  type Summary,
  type TuningTrial,
} from "./summary.ts";

/** What a comparison runs. */
export interface ComparisonRequest {
  objectives: readonly ObjectiveLabel[];
  /** How many seeds: the recipe's seed and those after it. */
  seeds: number;
  /** Learning rates to tune among; absent keeps the recipe's lr. */
  lrs?: readonly number[];
  /** Overrides the recipe's backend in every run. */
  backend?: Backend;
  /** What `resolveModels()` read of the recipe's Hugging Face model, as `compile()` takes it. */
  models?: CompileOptions["models"];
}

/** Every run of a comparison, compiled. */
export interface ComparisonPlan {
  name: string;
  objectives: ObjectiveLabel[];
  seeds: number[];
  /** The tuning phase's seed and learning rates; null without `lrs`. */
  tuning: { seed: number; lrs: number[]; runs: RunVariant[] } | null;
  /** The comparison phase's candidates: per objective, per lr (one without tuning), per seed. */
  candidates: RunVariant[];
  steps: number;
  backend: Backend | null;
  /** Compiler warnings, each once: `objectives dapo, gspo: warning: …`. */
  warnings: string[];
  /** The objectives for which the recipe's reference was dropped. */
  referenceDropped: ObjectiveLabel[];
}

/**
 * Builds and compiles every run of a comparison of `base` (already validated, its paths absolute);
 * what does not compile comes back as one line per issue, naming the objectives it concerns:
 * `objectives gift, dapo: eval.metric: …`.
 *
 * @example
 * ```ts
 * const result = planComparison(base, { objectives: ["gift", "grpo"], seeds: 3 });
 * if (!result.ok) for (const line of result.issues) console.error(line);
 * ```
 */
export function planComparison(
  base: Recipe,
  request: ComparisonRequest,
): { ok: true; plan: ComparisonPlan } | { ok: false; issues: string[] } {
  const options: CompileOptions = {
    ...(request.backend === undefined ? {} : { backend: request.backend }),
    ...(request.models === undefined ? {} : { models: request.models }),
  };
  // Each problem once, with the objectives it concerns.
  const issues = new Map<string, Set<ObjectiveLabel>>();
  const warnings = new Map<string, Set<ObjectiveLabel>>();
  const note = (lines: Map<string, Set<ObjectiveLabel>>, line: string, o: ObjectiveLabel) =>
    lines.set(line, (lines.get(line) ?? new Set()).add(o));
  const grouped = (lines: Map<string, Set<ObjectiveLabel>>, prefix = "") =>
    [...lines].map(([line, objectives]) =>
      `objective${objectives.size === 1 ? "" : "s"} ${[...objectives].join(", ")}: ${prefix}${line}`
    );
  const dropped = new Set<ObjectiveLabel>();
  const build = (change: VariantChange): RunVariant[] => {
    const result = comparisonVariant(base, change, options);
    if (!result.ok) {
      for (const issue of result.issues) note(issues, issue, change.objective);
      return [];
    }
    for (const w of result.variant.warnings) note(warnings, w, change.objective);
    if (result.variant.referenceDropped) dropped.add(change.objective);
    return [result.variant];
  };
  if (!Number.isSafeInteger(request.seeds) || request.seeds < 1 || request.seeds > MAX_SEEDS) {
    return {
      ok: false,
      issues: [`seeds: expected a whole number >= 1 and <= ${MAX_SEEDS}, got ${request.seeds}`],
    };
  }
  const seeds = comparisonSeeds(base, request.seeds);
  const lrs = request.lrs === undefined ? null : [...request.lrs];
  const tuning = lrs === null ? null : {
    seed: tuningSeed(base),
    lrs,
    runs: request.objectives.flatMap((objective) =>
      lrs.flatMap((lr) => build({ objective, seed: tuningSeed(base), lr }))
    ),
  };
  const candidates = request.objectives.flatMap((objective) =>
    (lrs ?? [undefined]).flatMap((lr) =>
      seeds.flatMap((seed) => build({ objective, seed, ...(lr === undefined ? {} : { lr }) }))
    )
  );
  if (issues.size > 0) return { ok: false, issues: grouped(issues) };
  return {
    ok: true,
    plan: {
      name: base.name,
      objectives: [...request.objectives],
      seeds,
      tuning,
      candidates,
      steps: base.steps,
      backend: request.backend ?? null,
      warnings: grouped(warnings, "warning: "),
      referenceDropped: [...dropped],
    },
  };
}

/** Options of `runComparison()`. */
export interface RunComparisonOptions {
  /** The recipe as given on the command line, for the summary. */
  recipe: string;
  /** Runs at once. @default navigator.hardwareConcurrency */
  jobs?: number;
  /** The output directory. @default `compare/<name>-<YYYYMMDD-HHMMSS>` */
  out?: string;
  /** The target accuracy. @default 0.9 × the best objective's mean final accuracy */
  target?: number;
  /** Extra measurements each run takes (`run --track`). @default both */
  track?: Track;
  /** Receives progress lines and the table. @default console.log */
  log?: (line: string) => void;
  /** Receives each failed run's line. @default console.error */
  error?: (line: string) => void;
  /** Seconds between overall progress lines (one also follows each finished run). @default 30 */
  progressEvery?: number;
  /** The command line that runs a recipe. @default this repository's cli.ts */
  cli?: string | URL;
  /**
   * Stops the comparison (Ctrl-C): no run starts after it aborts, each running one is sent SIGINT
   * (it stops after its step, with a checkpoint), and the summary covers the runs that finished.
   */
  signal?: AbortSignal;
}

/** What a comparison produced. */
export interface ComparisonResult {
  /** The output directory. */
  dir: string;
  summary: Summary;
  /** Runs that failed (tuning runs included) plus runs not started for lack of an lr. */
  failed: number;
  /** Whether `signal` stopped it: the summary then covers only the runs that finished. */
  interrupted: boolean;
}

/** The output directory cannot be made; the message is one line. */
export class CompareSetupError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "CompareSetupError";
  }
}

/** The permission flags of `deno task run`, which every run gets. */
export const RUN_PERMISSIONS = [
  "--allow-read",
  "--allow-write",
  "--allow-env",
  "--allow-net",
  "--allow-import",
  "--allow-sys=hostname,systemMemoryInfo",
  "--allow-ffi",
  "--allow-run=sh", // the sandbox of fn rewards is a subprocess, started through sh
] as const;

/** The outcome of a run the interruption stopped (`dir`) or kept from starting (null). */
function interrupted(variant: RunVariant, dir: string | null): Outcome {
  const curves = { eval: [], kl: [], klInitial: [], gap: [] };
  return { variant, dir, error: "interrupted", curves, interrupted: true };
}

/** How one run went. */
interface Outcome {
  variant: RunVariant;
  /** The run directory (absolute); null when the run made none. */
  dir: string | null;
  error: string | null;
  curves: RunCurves;
  /** Stopped, or never started, because the comparison was interrupted. */
  interrupted: boolean;
}

function stamp(): string {
  return new Date().toISOString().replace(/[-:]/g, "").replace("T", "-").slice(0, 15);
}

async function makeOutDir(out: string | undefined, name: string): Promise<string> {
  try {
    if (out !== undefined) {
      await Deno.mkdir(out, { recursive: true });
      if (!(await Deno.stat(out)).isDirectory) throw new Error("it is not a directory");
      return resolve(out);
    }
    await Deno.mkdir("compare", { recursive: true });
    const when = stamp();
    for (let n = 1;; n++) {
      const dir = `compare/${name}-${when}${n === 1 ? "" : `-${n}`}`;
      try {
        await Deno.mkdir(dir);
        return resolve(dir);
      } catch (e) {
        if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
      }
    }
  } catch (e) {
    const why = e instanceof Error ? e.message.split("\n")[0] : String(e);
    throw new CompareSetupError(
      `Cannot create the output directory '${out ?? "compare/"}': ${why}`,
    );
  }
}

function cliPath(cli: string | URL): string {
  if (typeof cli === "string") return resolve(cli);
  return cli.protocol === "file:" ? fileURLToPath(cli) : cli.href;
}

/**
 * Runs a planned comparison and writes its summary and report.
 *
 * @example
 * ```ts
 * const planned = planComparison(base, { objectives: ["gift", "grpo"], seeds: 3 });
 * if (planned.ok) {
 *   const { dir, failed } = await runComparison(planned.plan, { recipe: "recipes/addition_gift.ts" });
 * }
 * ```
 */
export async function runComparison(
  plan: ComparisonPlan,
  options: RunComparisonOptions,
): Promise<ComparisonResult> {
  const log = options.log ?? ((line: string) => console.log(line));
  const error = options.error ?? ((line: string) => console.error(line));
  const jobs = options.jobs ?? navigator.hardwareConcurrency;
  // Runs in parallel share the cores: each run's OpenBLAS gets its share, not all of them.
  const userSet = Deno.permissions.querySync({ name: "env", variable: "OPENBLAS_NUM_THREADS" })
        .state === "granted" && Deno.env.get("OPENBLAS_NUM_THREADS") !== undefined;
  const share = Math.max(1, Math.floor(navigator.hardwareConcurrency / jobs));
  const blasThreads: Record<string, string> = userSet
    ? {}
    : { OPENBLAS_NUM_THREADS: String(share) };
  const track = trackText(options.track ?? { trainAccuracy: true, klInitial: true });
  const cli = cliPath(options.cli ?? new URL("../../cli.ts", import.meta.url));
  const createdAt = new Date().toISOString();
  const started = performance.now();

  const dir = await makeOutDir(options.out, plan.name);
  const runsDir = `${dir}/runs`;
  await Deno.mkdir(`${dir}/recipes`, { recursive: true });
  await Deno.mkdir(runsDir, { recursive: true });

  // Progress: every run of both phases, and their steps.
  const phaseRuns = plan.objectives.length * plan.seeds.length;
  const state = {
    runsDone: 0,
    runs: (plan.tuning?.runs.length ?? 0) + phaseRuns,
    stepsDone: 0,
    steps: ((plan.tuning?.runs.length ?? 0) + phaseRuns) * plan.steps,
  };
  const stepsOf = new Map<string, number>();
  const progress = () =>
    log(progressLine({ ...state, seconds: (performance.now() - started) / 1000 }));

  const tuningText = plan.tuning === null
    ? ""
    : ` after tuning lr over ${plan.tuning.lrs.join(", ")} on seed ${plan.tuning.seed}`;
  log(
    `compare ${plan.name} · ${plan.objectives.join(", ")} × seeds ${plan.seeds.join(", ")}` +
      `${tuningText} · ${state.runs} runs, ${jobs} at a time → ${dir}`,
  );
  for (const objective of plan.referenceDropped) {
    log(`${objective}: the recipe's reference does not compile with it; using its default`);
  }

  /** Runs one variant as a child process and reads its metrics. */
  const runOne = async (variant: RunVariant, warm: () => void): Promise<Outcome> => {
    if (options.signal?.aborted) return interrupted(variant, null);
    const recipePath = `${dir}/recipes/${variant.name}.json`;
    await Deno.writeTextFile(recipePath, JSON.stringify(variant.recipe, null, 2) + "\n");
    log(`start ${variant.name}`);
    const runStarted = performance.now();
    let runDir: string | null = null;
    const args = [
      "run",
      ...RUN_PERMISSIONS,
      cli,
      "run",
      recipePath,
      "--runs-dir",
      runsDir,
      ...(plan.backend === null ? [] : ["--backend", plan.backend]),
      ...(track === undefined ? [] : ["--track", track]),
    ];
    const child = await runChild(
      Deno.execPath(),
      args,
      (line) => {
        const created = /^run \S+ · .* → (.+)$/.exec(line);
        if (created) runDir = created[1]!;
        if (/^(warm start: |eval step |step \d+\/)/.test(line)) warm();
        const step = /^step (\d+)\/\d+ /.exec(line);
        if (step) {
          const done = Number(step[1]);
          state.stepsDone += done - (stepsOf.get(variant.name) ?? 0);
          stepsOf.set(variant.name, done);
        }
      },
      blasThreads,
      options.signal,
    );
    const finalDir = runDir as string | null;
    // Stopped by the interruption: neither finished nor failed.
    if (child.code !== 0 && options.signal?.aborted) return interrupted(variant, finalDir);
    let failure = child.code === 0 ? null : errorLine(child.stderr, child.code);
    let curves: RunCurves = { eval: [], kl: [], klInitial: [], gap: [] };
    if (finalDir !== null) {
      try {
        curves = runCurves(await readMetrics(`${finalDir}/metrics.jsonl`), variant);
      } catch (e) {
        if (failure === null) {
          failure = `cannot read ${finalDir}/metrics.jsonl: ${(e as Error).message}`;
        }
      }
    } else if (failure === null) {
      failure = "the run printed no run directory";
    }
    state.runsDone++;
    if (failure === null) {
      warm();
      const first = curves.eval[0]?.accuracy;
      const last = curves.eval.at(-1)?.accuracy;
      const accuracy = first === undefined || last === undefined
        ? ""
        : ` · eval ${percent(first)} → ${percent(last)}`;
      const seconds = (performance.now() - runStarted) / 1000;
      log(`done ${variant.name}${accuracy} · ${Math.round(seconds)}s`);
    } else {
      state.steps -= variant.steps - (stepsOf.get(variant.name) ?? 0);
      error(`${variant.name}: ${failure}`);
    }
    progress();
    return { variant, dir: finalDir, error: failure, curves, interrupted: false };
  };

  const runPhase = (variants: readonly RunVariant[]): Promise<Outcome[]> =>
    runPool(variants.map((v) => ({ ...v, group: String(v.seed) })), {
      concurrency: jobs,
      start: (job, warm) => runOne(job, warm),
    });

  const timer = setInterval(progress, (options.progressEvery ?? 30) * 1000);
  let tuningOutcomes: Outcome[] = [];
  let outcomes: Outcome[] = [];
  const chosen = new Map<ObjectiveLabel, number | null>();
  try {
    // 1) Tuning: each objective × lr on the tuning seed.
    if (plan.tuning !== null) {
      tuningOutcomes = await runPhase(plan.tuning.runs);
      // Interrupted: no lr is chosen from trials cut short, and no comparison run starts.
      for (const objective of options.signal?.aborted ? [] : plan.objectives) {
        const trials = tuningOutcomes.filter((o) => o.variant.objective === objective).map((o) => ({
          lr: o.variant.lr,
          score: o.error === null ? lastEvaluationsMean(o.curves.eval) : null,
        }));
        const lr = selectLr(trials);
        chosen.set(objective, lr);
        const scores = trials.map((t) =>
          `${t.lr} ${t.score === null ? "failed" : percent(t.score)}`
        );
        if (lr === null) {
          error(`${objective}: no learning rate to compare: every tuning run failed`);
          state.runs -= plan.seeds.length;
          state.steps -= plan.seeds.length * plan.steps;
        } else {
          log(`tuned ${objective}: lr ${lr} (mean of the last 3 evals: ${scores.join(", ")})`);
        }
      }
    }
    // 2) Comparison: each objective with its lr on every seed, seed by seed within an objective,
    //    so that each seed's first run comes before its others.
    const runs = plan.candidates.filter((v) =>
      plan.tuning === null || (chosen.get(v.objective) ?? null) === v.lr
    );
    outcomes = await runPhase(runs);
  } finally {
    clearInterval(timer);
  }
  // An interrupted comparison summarises the runs that finished, as if the others were not asked.
  tuningOutcomes = tuningOutcomes.filter((o) => !o.interrupted);
  outcomes = outcomes.filter((o) => !o.interrupted);
  const stopped = options.signal?.aborted ?? false;

  const record = (o: Outcome): RunRecord => ({
    run: o.variant.name,
    objective: o.variant.objective,
    seed: o.variant.seed,
    lr: o.variant.lr,
    dir: o.dir === null ? null : relative(dir, o.dir),
    error: o.error,
    curves: o.curves,
  });
  const summary = summarize({
    name: plan.name,
    recipe: options.recipe,
    createdAt,
    steps: plan.steps,
    seeds: plan.seeds,
    tuningSeed: plan.tuning?.seed ?? null,
    objectives: plan.objectives.map((objective) => ({
      objective,
      lr: plan.tuning === null
        ? plan.candidates.find((v) => v.objective === objective)?.lr ?? null
        : chosen.get(objective) ?? null,
      lrSource: plan.tuning === null ? "recipe" : "tuned",
      referenceDropped: plan.referenceDropped.includes(objective),
      tuning: plan.tuning === null ? null : tuningOutcomes
        .filter((o) => o.variant.objective === objective)
        .map((o): TuningTrial => ({
          lr: o.variant.lr,
          run: o.variant.name,
          score: o.error === null ? lastEvaluationsMean(o.curves.eval) : null,
          finalAccuracy: o.error === null ? o.curves.eval.at(-1)?.accuracy ?? null : null,
          error: o.error,
        })),
    })),
    runs: outcomes.map(record),
    ...(options.target === undefined ? {} : { target: options.target }),
  });
  await Deno.writeTextFile(`${dir}/summary.json`, JSON.stringify(summary, null, 2) + "\n");
  await Deno.writeTextFile(`${dir}/report.html`, await reportHtml(summary));

  for (const line of formatTable(summary)) log(line);
  const skipped = [...chosen.values()].filter((lr) => lr === null).length * plan.seeds.length;
  const failed = summary.failures.length + skipped;
  const files = `${dir}/summary.json · ${dir}/report.html`;
  if (stopped) {
    const finished = tuningOutcomes.length + outcomes.length;
    const failures = failed === 0 ? "" : ` (${failed} failed)`;
    log(`interrupted: ${finished} of ${state.runs + skipped} runs finished${failures} · ${files}`);
  } else {
    log(`${failed === 0 ? "done" : `${failed} of ${state.runs + skipped} runs failed`} · ${files}`);
  }
  return { dir, summary, failed, interrupted: stopped };
}
