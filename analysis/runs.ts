/**
 * The runs in a runs directory, for `deno task runs`: one {@linkcode RunSummary} per run directory
 * from its `run.json` (provenance and status, which the trainer rewrites as the run goes), and a
 * table of them. Reads files only, so it imports no TensorFlow.js and answers at once.
 *
 * A run whose `run.json` still says `running` but whose process is gone (on this host) was
 * killed: it shows as `stopped`, and can be resumed. Run directories from before `run.json`
 * existed (a `plan.json` and a `metrics.jsonl`) show as `unknown`, summed up from those two.
 *
 * @module
 */

import { isRunLocked, parseMetrics } from "../runtime/run/run_dir.ts";

/**
 * Where a run stands: what its `run.json` says (`running`, `finished`, `failed`, `interrupted`),
 * or `stopped` (it says running, but its process is gone: killed, resumable), `unknown` (a run
 * directory from before `run.json`), `corrupt` (a `run.json` that is not a `giftwrap.run/1` record).
 */
export type RunStatus =
  | "running"
  | "finished"
  | "failed"
  | "interrupted"
  | "stopped"
  | "unknown"
  | "corrupt";

/**
 * One run, as `deno task runs` lists it; plain JSON data (what `--json` prints). Numbers the run
 * did not record are null.
 */
export interface RunSummary {
  /** The run directory: `runsDir` joined with its name. */
  dir: string;
  /** The recipe's name. */
  name: string;
  status: RunStatus;
  /** Train steps completed (the last one logged), of `steps`. */
  step: number;
  steps: number;
  /** ISO time the run started. */
  started: string | null;
  /** Eval accuracy before training, and at the end (for a run without a result: the last one). */
  accuracyBefore: number | null;
  accuracyAfter: number | null;
  /** Mean total reward: the result's, or the last step's. */
  rewardMean: number | null;
  planHash: string | null;
  /** The step of the checkpoint a resume would start from. */
  checkpointStep: number | null;
  /** Why the run failed, or why its `run.json` could not be read. */
  error: string | null;
}

/** The `run.json` format this module reads. */
const RUN_FORMAT = "giftwrap.run/1";
const RUN_STATUSES: readonly string[] = ["running", "finished", "failed", "interrupted"];

/**
 * The run directories under `runsDir` (those with a `run.json` or a `plan.json`), newest first;
 * none when `runsDir` does not exist. Hidden entries (`.cache`) and anything else are skipped.
 * A run says `running` in its `run.json` until it ends; one whose process no longer holds its
 * `run.lock` was killed, and shows as `stopped`.
 *
 * @example
 * ```ts
 * const runs = await listRuns("runs");
 * console.log(formatRuns(runs));
 * console.log(JSON.stringify(runs, null, 2)); // --json
 * ```
 */
export async function listRuns(runsDir: string): Promise<RunSummary[]> {
  const names: string[] = [];
  try {
    for await (const entry of Deno.readDir(runsDir)) {
      if (!entry.name.startsWith(".")) names.push(entry.name);
    }
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [];
    throw e;
  }
  const runs: RunSummary[] = [];
  for (const name of names) {
    const summary = await readRun(`${runsDir}/${name}`, name);
    if (summary !== null) runs.push(summary);
  }
  return runs.sort(newestFirst);
}

/** The statuses of a run that may be resumed (or, running, would be after a crash). */
const RESUMABLE: readonly RunStatus[] = ["running", "stopped", "failed", "interrupted"];

/**
 * Steps done of the total and, for a run that could be resumed, the checkpoint a resume starts
 * from when it is not the last step done: `56/150 (checkpoint 50)`, or `(no checkpoint)` when a
 * resume would start over.
 */
function stepsText(run: RunSummary): string {
  const steps = `${run.step}/${run.steps}`;
  if (!RESUMABLE.includes(run.status) || (run.checkpointStep ?? 0) === run.step) return steps;
  const from = run.checkpointStep === null ? "no checkpoint" : `checkpoint ${run.checkpointStep}`;
  return `${steps} (${from})`;
}

/**
 * The runs as a table, one line per run and a header, columns padded to their widest cell:
 * directory, recipe, status, steps done of total (and the checkpoint a resume would start from,
 * when that is earlier), eval accuracy before → after, last mean reward, and the local time the
 * run started. Unknown values show as `-`.
 *
 * @example
 * ```ts
 * console.log(formatRuns(await listRuns("runs")));
 * // dir                            recipe         status                      steps  accuracy       reward  started
 * // expK-20261126-162947           expK           stopped   56/150 (checkpoint 50)  60.0% → 66.8%   0.445  2026-11-26 16:29
 * // addition-gift-20261126-162023  addition-gift  finished                 150/150  50.2% → 28.6%   0.109  2026-11-26 16:20
 * ```
 */
export function formatRuns(runs: readonly RunSummary[]): string {
  const header = ["dir", "recipe", "status", "steps", "accuracy", "reward", "started"];
  // Right-aligned: the numeric columns, so their digits line up.
  const right = [false, false, false, true, false, true, false];
  const rows = runs.map((run) => [
    run.dir.slice(run.dir.lastIndexOf("/") + 1),
    run.name,
    run.status,
    stepsText(run),
    run.accuracyBefore === null && run.accuracyAfter === null
      ? "-"
      : `${percent(run.accuracyBefore)} → ${percent(run.accuracyAfter)}`,
    run.rewardMean === null ? "-" : run.rewardMean.toFixed(3),
    run.started === null ? "-" : localTime(run.started),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  return [header, ...rows]
    .map((cells) =>
      cells
        .map((cell, i) => right[i] ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!))
        .join("  ")
        .trimEnd()
    )
    .join("\n");
}

/** The summary of the run in `dir`, or null when `dir` is not a run directory. */
async function readRun(dir: string, base: string): Promise<RunSummary | null> {
  const runText = await readOptional(`${dir}/run.json`);
  if (runText === null) return await readLegacy(dir, base);
  let info: RunFields;
  try {
    info = parseRunInfo(runText);
  } catch (e) {
    const error = e instanceof Error ? e.message : String(e);
    return {
      ...(await readLegacy(dir, base) ?? emptySummary(dir, base)),
      status: "corrupt",
      error,
    };
  }
  // A run holds run.lock while its process lives: "running" without it was killed.
  const status = info.status === "running" && !(await isRunLocked(dir)) ? "stopped" : info.status;
  // A run without a result yet (running, stopped, failed) shows how far it got from its metrics.
  const soFar = info.result === null ? await readProgress(dir) : null;
  return {
    dir,
    name: info.name,
    status,
    step: info.step,
    steps: info.steps,
    started: info.started,
    accuracyBefore: info.result?.accuracyBefore ?? soFar?.accuracyBefore ?? null,
    accuracyAfter: info.result?.accuracyAfter ?? soFar?.accuracyAfter ?? null,
    rewardMean: info.result?.rewardMean ?? soFar?.rewardMean ?? null,
    planHash: info.planHash,
    checkpointStep: info.checkpoint?.step ?? null,
    error: info.error,
  };
}

/**
 * The summary from `plan.json` and `metrics.jsonl` alone (a run directory from before `run.json`),
 * or null without a `plan.json`.
 */
async function readLegacy(dir: string, base: string): Promise<RunSummary | null> {
  const planText = await readOptional(`${dir}/plan.json`);
  if (planText === null) return null;
  const summary: RunSummary = { ...emptySummary(dir, base), ...await readProgress(dir) };
  try {
    const plan = JSON.parse(planText);
    if (typeof plan?.name === "string") summary.name = plan.name;
    if (typeof plan?.hash === "string") summary.planHash = plan.hash;
    if (isCount(plan?.schedule?.steps)) summary.steps = plan.schedule.steps;
  } catch {
    // An unreadable plan.json leaves the directory's name and no total.
  }
  return summary;
}

/** The part of a summary that `metrics.jsonl` gives. */
type RunProgress = Pick<RunSummary, "step" | "accuracyBefore" | "accuracyAfter" | "rewardMean">;

/**
 * How far a run got, from its `metrics.jsonl`: the last step, the step-0 eval accuracy, the last
 * later one, and the last mean reward (nothing, without the file).
 */
async function readProgress(dir: string): Promise<RunProgress> {
  const progress: RunProgress = {
    step: 0,
    accuracyBefore: null,
    accuracyAfter: null,
    rewardMean: null,
  };
  const text = await readOptional(`${dir}/metrics.jsonl`);
  for (const line of parseMetrics(text ?? "")) {
    progress.step = Math.max(progress.step, line.step);
    const accuracy = finite(line.evalAccuracy);
    if (accuracy !== null) {
      if (line.step === 0) progress.accuracyBefore = accuracy;
      else progress.accuracyAfter = accuracy;
    }
    progress.rewardMean = finite(line.rewardMean) ?? progress.rewardMean;
  }
  return progress;
}

/** The fields of `run.json` (`RunInfo` in `run_dir.ts`) this module reads. */
interface RunFields {
  name: string;
  status: "running" | "finished" | "failed" | "interrupted";
  started: string;
  pid: number;
  host: string;
  planHash: string | null;
  steps: number;
  step: number;
  checkpoint: { step: number } | null;
  result: {
    accuracyBefore: number | null;
    accuracyAfter: number | null;
    rewardMean: number | null;
  } | null;
  error: string | null;
}

/** Parses `run.json`, throwing a message that names the first field it cannot read. */
function parseRunInfo(text: string): RunFields {
  let value: Record<string, unknown>;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new Error(`Cannot read run.json as it is not JSON: ${(e as Error).message}`);
  }
  function field<T>(key: string, ok: (x: unknown) => boolean, expected: string): T {
    const x = value[key];
    if (!ok(x)) {
      throw new Error(
        `Cannot read run.json as '${key}' must be ${expected}: current value is ${
          JSON.stringify(x) ?? "undefined"
        }`,
      );
    }
    return x as T;
  }
  if (!isObject(value)) {
    throw new Error("Cannot read run.json as it is not a JSON object");
  }
  field("format", (x) => x === RUN_FORMAT, `'${RUN_FORMAT}'`);
  const result = field<Record<string, unknown> | null>(
    "result",
    (x) => x === null || isObject(x),
    "an object or null",
  );
  const checkpoint = field<Record<string, unknown> | null>(
    "checkpoint",
    (x) => x === null || (isObject(x) && isCount(x.step)),
    "null or an object with a 'step'",
  );
  const optionalString = (x: unknown) => x === null || x === undefined || typeof x === "string";
  return {
    name: field("name", (x) => typeof x === "string", "a string"),
    status: field("status", (x) => RUN_STATUSES.includes(x as string), RUN_STATUSES.join(" | ")),
    started: field("started", (x) => typeof x === "string", "an ISO time"),
    pid: field("pid", isCount, "a process id"),
    host: field("host", (x) => typeof x === "string", "a host name"),
    planHash: field("planHash", optionalString, "a string") ?? null,
    steps: field("steps", isCount, "an integer >= 0"),
    step: field("step", isCount, "an integer >= 0"),
    checkpoint: checkpoint === null ? null : { step: checkpoint.step as number },
    result: result === null ? null : {
      accuracyBefore: finite(result.accuracyBefore),
      accuracyAfter: finite(result.accuracyAfter),
      rewardMean: finite(result.rewardMean),
    },
    error: field("error", optionalString, "a string or null") ?? null,
  };
}

/** What a run directory says by its name alone: started at the UTC stamp in it, if any. */
function emptySummary(dir: string, base: string): RunSummary {
  return {
    dir,
    name: base,
    status: "unknown",
    step: 0,
    steps: 0,
    started: stampTime(base),
    accuracyBefore: null,
    accuracyAfter: null,
    rewardMean: null,
    planHash: null,
    checkpointStep: null,
    error: null,
  };
}

/** The UTC time in a run directory's name (`addition-20261126-162023`, maybe `-2` after it). */
function stampTime(base: string): string | null {
  const m = /-(\d{4})(\d\d)(\d\d)-(\d\d)(\d\d)(\d\d)(?:-\d+)?$/.exec(base);
  if (m === null) return null;
  const time = new Date(`${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}Z`);
  return Number.isNaN(time.getTime()) ? null : time.toISOString();
}

/** Newest first; runs with no start time last; ties by directory, last first. */
function newestFirst(a: RunSummary, b: RunSummary): number {
  const ta = a.started === null ? NaN : Date.parse(a.started);
  const tb = b.started === null ? NaN : Date.parse(b.started);
  if (Number.isNaN(ta) !== Number.isNaN(tb)) return Number.isNaN(ta) ? 1 : -1;
  if (!Number.isNaN(ta) && ta !== tb) return tb - ta;
  return a.dir < b.dir ? 1 : a.dir > b.dir ? -1 : 0;
}

/** `2026-11-26 16:20`, in local time; an unreadable time as it is. */
function localTime(iso: string): string {
  const t = new Date(iso);
  if (Number.isNaN(t.getTime())) return iso;
  const two = (n: number) => String(n).padStart(2, "0");
  return `${t.getFullYear()}-${two(t.getMonth() + 1)}-${two(t.getDate())} ` +
    `${two(t.getHours())}:${two(t.getMinutes())}`;
}

function percent(x: number | null): string {
  return x === null ? "-" : `${(100 * x).toFixed(1)}%`;
}

function finite(x: unknown): number | null {
  return typeof x === "number" && Number.isFinite(x) ? x : null;
}

function isCount(x: unknown): x is number {
  return typeof x === "number" && Number.isInteger(x) && x >= 0;
}

function isObject(x: unknown): x is Record<string, unknown> {
  return x !== null && typeof x === "object" && !Array.isArray(x);
}

async function readOptional(path: string): Promise<string | null> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    // A directory entry that is a file, or a run directory missing this file.
    if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory) return null;
    throw e;
  }
}
