/**
 * Opening a run's directory: a new one under the runs directory, one to resume, cut back to its
 * newest checkpoint that passes its checks, or one to start over in (`restart`). A resume never
 * deletes what it cannot read: a checkpoint that fails is moved aside for the one before it, and
 * when none is left it stops and changes nothing. The {@linkcode RunDirectory} it returns is how
 * the run writes there:
 * `run.json`, the logs, checkpoints and the report. The directory's `run.lock` is held from the
 * moment it is opened and removed when the run ends, however it ends short of being killed.
 *
 * @module
 */

import { describeChange, inputChange } from "../../dsl/inputs.ts";
import type { Plan, PlanInput } from "../../dsl/plan.ts";
import denoJson from "../../deno.json" with { type: "json" };
import { type BackendInfo, tf } from "../engine/backend.ts";
import { readJsonFile } from "../engine/model/checkpoint.ts";
import type { Run } from "../rl/train_step.ts";
import {
  checkRunLogs,
  readRunCheckpoint,
  type RunCheckpoint,
  saveRunCheckpoint,
  trainerState,
} from "./checkpoint.ts";
import type { Progress } from "./progress.ts";
import {
  JsonlLog,
  lockRunDir,
  type MetricsRecord,
  osReason,
  parseMetrics,
  pruneCheckpoints,
  type RunInfo,
  RunWriteError,
  type SampleGroup,
  stepCheckpoints,
  unlockRunDir,
  writeFileAtomic,
} from "./run_dir.ts";
import { RunSetupError } from "./setup.ts";

/** `run.lock` while this process holds it; letting go removes it (and does nothing twice). */
class RunLock implements AsyncDisposable {
  #file: Deno.FsFile | null;

  constructor(readonly dir: string, file: Deno.FsFile | null) {
    this.#file = file;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    const file = this.#file;
    this.#file = null;
    if (file) await unlockRunDir(this.dir, file);
  }
}

/** A resumable run directory, checked before anything loads; disposing it lets go of the lock. */
export interface Resumable extends AsyncDisposable {
  dir: string;
  /** `run.json` as the run left it; null when it has none, or when the run starts over. */
  info: RunInfo | null;
  /** The newest checkpoint that passed every check; null to start the run over in its directory. */
  checkpoint: RunCheckpoint | null;
  /**
   * Newer checkpoints that failed a check, each with where it is moved when the run starts
   * (`checkpoints/step-000010.unreadable`): kept, never deleted, and out of the new ones' way.
   */
  passedOver: { name: string; aside: string }[];
  /** Whether the run starts over at the user's request (`restart`): its files are moved aside. */
  restart: boolean;
  /** `run.lock`, held until the run ends (disposing the directory or this lets go of it). */
  lock: AsyncDisposable;
}

/**
 * The run directory to resume (or, with `restart`, to start over in), and its last complete
 * checkpoint: `final/` or the newest `step-*`, read and checked against the plan and the run's
 * logs. A checkpoint that fails is passed over for the one before it (a line says why; the run
 * moves it aside, see {@linkcode Resumable.passedOver}); when every one fails, nothing is changed
 * and the resume stops. A directory without any checkpoint (killed before its first) starts over.
 * @throws {RunSetupError} when it is not a run of this plan, finished, running now, or none of its
 *   checkpoints can be used.
 */
export async function openResumable(
  dir: string,
  plan: Plan,
  hash: string,
  progress: Progress,
  restart = false,
): Promise<Resumable> {
  const verb = restart ? "restart" : "resume";
  const inputs = plan.inputs;
  let ran: { hash?: string; inputs?: PlanInput[]; model?: { sha256?: unknown } };
  try {
    ran = (await readJsonFile(`${dir}/plan.json`) ?? {}) as typeof ran;
  } catch (e) {
    const why = e instanceof Deno.errors.NotFound ? "it has no plan.json" : (e as Error).message;
    throw new RunSetupError(`Cannot ${verb} '${dir}': ${why}`);
  }
  // A file it names changed: name it, as the recipe alone would not tell what differs.
  const change = ran.hash === hash ? null : inputChange(ran.inputs, inputs);
  if (change !== null && Array.isArray(ran.inputs)) {
    throw new RunSetupError(
      `Cannot ${verb} '${dir}': ${describeChange(change, "the run started")}; ${verb} with the ` +
        "same file, or start a new run",
    );
  }
  // Its Hugging Face model directory changed: the recipe is the same, so name the directory.
  const sha = typeof ran.model?.sha256 === "string" ? ran.model.sha256 : null;
  if (
    ran.hash !== hash && plan.model.kind === "hfModel" && sha !== null && sha !== plan.model.sha256
  ) {
    throw new RunSetupError(
      `Cannot ${verb} '${dir}': policy.path: the model directory '${plan.model.path}' changed ` +
        `since the run started (sha256 ${plan.model.sha256.slice(0, 16)}…, the run's ` +
        `${sha.slice(0, 16)}…); ${verb} with the directory as it was, or start a new run`,
    );
  }
  if (ran.hash !== hash) {
    throw new RunSetupError(
      `Cannot ${verb} '${dir}': it ran plan ${ran.hash}, this recipe compiles to ${hash}; ` +
        `${verb} it with the recipe it ran, ${dir}/recipe.json`,
    );
  }
  const finished = (info: RunInfo | null) =>
    new RunSetupError(`Cannot resume '${dir}': it finished (step ${info?.step})`);
  let info = await readRunInfo(dir);
  if (!restart && info?.status === "finished") throw finished(info);
  const file = await lockRunDir(dir).catch((e) => {
    throw new RunSetupError(`Cannot ${verb} '${dir}': ${(e as Error).message}`);
  });
  if (!file) {
    throw new RunSetupError(
      `Cannot ${verb} '${dir}': another process is running it (process ${info?.pid})`,
    );
  }
  const lock = new RunLock(dir, file);
  const resumable = (
    checkpoint: RunCheckpoint | null,
    passedOver: Resumable["passedOver"],
  ): Resumable => ({
    dir,
    info: restart ? null : info,
    checkpoint,
    passedOver,
    restart,
    lock,
    [Symbol.asyncDispose]: () => lock[Symbol.asyncDispose](),
  });
  try {
    // Again under the lock: a run that was ending as we first looked has said so by now.
    info = await readRunInfo(dir);
    if (restart) return resumable(null, []);
    if (info?.status === "finished") throw finished(info);
    const failed: { name: string; why: string }[] = [];
    for (const name of await checkpointCandidates(`${dir}/checkpoints`)) {
      try {
        const checkpoint = await readRunCheckpoint(`${dir}/checkpoints/${name}`, hash, plan);
        await checkRunLogs(dir, checkpoint.state);
        const passedOver = [];
        for (const bad of failed) {
          progress.log(`checkpoint ${bad.name} cannot be used (${bad.why}); trying the one before`);
          passedOver.push({ name: bad.name, aside: await asideName(dir, bad.name) });
        }
        return resumable(checkpoint, passedOver);
      } catch (e) {
        failed.push({ name, why: inCheckpoint(name, e) });
      }
    }
    if (failed.length > 0) {
      throw new RunSetupError(
        `Cannot resume '${dir}': no checkpoint can be used (${failed[0]!.why}); nothing was ` +
          `changed; to start the run over in this directory, run it with --restart ${dir} ` +
          `instead of --resume (its files are then moved to ${dir}/previous-<time>/)`,
      );
    }
    return resumable(null, []);
  } catch (e) {
    await lock[Symbol.asyncDispose]();
    throw e;
  }
}

/** The checkpoints a resume may start from, the newest first: `final/`, then `step-*` by step. */
async function checkpointCandidates(checkpointsDir: string): Promise<string[]> {
  const steps = (await stepCheckpoints(checkpointsDir)).map((c) => c.dir);
  try {
    if ((await Deno.stat(`${checkpointsDir}/final`)).isDirectory) return ["final", ...steps];
  } catch {
    // No final checkpoint.
  }
  return steps;
}

/** Why a checkpoint failed, in one line naming its file: `checkpoints/step-000010/…: …`. */
function inCheckpoint(name: string, e: unknown): string {
  const why = (e instanceof Error ? e.message : String(e)).split("\n")[0]!;
  return /^[\w.]+\.(json|jsonl|safetensors)[: ]/.test(why)
    ? `checkpoints/${name}/${why}`
    : `checkpoints/${name}: ${why}`;
}

/** Where a checkpoint that failed its checks is moved: `checkpoints/<name>.unreadable[-N]`. */
async function asideName(dir: string, name: string): Promise<string> {
  for (let n = 1;; n++) {
    const aside = `${name}.unreadable${n === 1 ? "" : `-${n}`}`;
    if (!(await exists(`${dir}/checkpoints/${aside}`))) return aside;
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

/** `run.json`, or null: an older run directory, or one killed before it was first written. */
async function readRunInfo(dir: string): Promise<RunInfo | null> {
  try {
    return await readJsonFile(`${dir}/run.json`) as RunInfo;
  } catch {
    return null;
  }
}

/** Where a run's directory goes, and what `run.json` records of where it came from. */
export interface OpenOptions {
  /** Where a new run directory is created. */
  runsDir: string;
  /** Where the recipe came from (a path or URL), recorded in `run.json`. */
  source?: string;
  /** Writes `report.html` into the directory; false for none. */
  report: ((dir: string) => Promise<unknown>) | false;
  progress: Progress;
}

/**
 * Opens the run's directory, `resumed`'s or a new `runs/<name>-<time>/`, and holds its lock;
 * nothing is written there until {@linkcode RunDirectory.start}.
 */
export async function openRunDir(
  plan: Plan,
  hash: string,
  backend: BackendInfo,
  resumed: Resumable | null,
  options: OpenOptions,
): Promise<RunDirectory> {
  const checkpoint = resumed?.checkpoint ?? null;
  // A restarted run is a new run in its old directory: its own run.json from the start.
  const resumeStep = checkpoint?.state.step ?? 0;
  const dir = resumed?.dir ?? await createRunDir(options.runsDir, plan.name);
  const lock = resumed?.lock ?? new RunLock(dir, await lockRunDir(dir));
  const now = new Date().toISOString();
  const info: RunInfo = {
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
      ...(resumed && !resumed.restart ? [{ fromStep: resumeStep, at: now }] : []),
    ],
    result: null,
    error: null,
  };
  return new RunDirectory(dir, hash, info, resumed, checkpoint, lock, options);
}

/**
 * A run's directory as the run writes it: `run.json`, the two logs, checkpoints and the report.
 * Disposing it closes the logs and removes `run.lock`.
 */
export class RunDirectory implements AsyncDisposable {
  readonly checkpointsDir: string;
  #metrics: JsonlLog | null = null;
  #samples: JsonlLog | null = null;
  /** `metrics.jsonl` as written so far, which each checkpoint keeps a copy of. */
  #metricsText: string;

  constructor(
    /** The run directory. */
    readonly dir: string,
    readonly hash: string,
    /** `run.json` as last written. */
    public info: RunInfo,
    /** The resumed (or restarted) run's directory as opened; null for a new run. */
    readonly opened: Resumable | null,
    /** The checkpoint the run continues from; null for a run from the start. */
    readonly checkpoint: RunCheckpoint | null,
    readonly lock: AsyncDisposable,
    readonly options: Pick<OpenOptions, "report" | "progress">,
  ) {
    this.checkpointsDir = `${dir}/checkpoints`;
    this.#metricsText = checkpoint?.metrics ?? "";
  }

  /** Whether the directory is a resumed (or restarted) run's. */
  get resumed(): boolean {
    return this.opened !== null;
  }

  /** The last step done before this process started: the checkpoint's, or 0. */
  get resumeStep(): number {
    return this.checkpoint?.state.step ?? 0;
  }

  /**
   * Writes the directory as the run starts and announces it: a new run's recipe and plan; a
   * resumed run's checkpoints that failed their checks moved aside and its logs cut back to its
   * checkpoint (or, without one, `initial/` written again from the seed and the logs begun
   * again); a restarted run's files moved to `previous-<time>/`; `run.json` as `running`.
   */
  async start(plan: Plan, backend: BackendInfo): Promise<void> {
    const { dir, hash, checkpoint, resumeStep, opened } = this;
    let previous: string | null = null;
    if (!opened) {
      await writeFileAtomic(`${dir}/recipe.json`, JSON.stringify(plan.recipe, null, 2) + "\n");
      await writeFileAtomic(`${dir}/plan.json`, JSON.stringify({ hash, ...plan }, null, 2) + "\n");
    } else if (opened.restart) {
      previous = await moveRunAside(dir);
    } else if (!checkpoint) {
      // Killed before its first checkpoint: start over. initial/ is the policy the seed and the
      // warm start give, written again the same.
      await Deno.remove(`${this.checkpointsDir}/initial`, { recursive: true }).catch(() => {});
    }
    for (const { name, aside } of opened?.passedOver ?? []) {
      await renameInRun(`${this.checkpointsDir}/${name}`, `${this.checkpointsDir}/${aside}`);
    }
    await this.saveInfo({});
    if (checkpoint) await writeFileAtomic(`${dir}/metrics.jsonl`, checkpoint.metrics);
    await Deno.mkdir(this.checkpointsDir, { recursive: true });
    await pruneCheckpoints(this.checkpointsDir, Number.POSITIVE_INFINITY);
    const logs = checkpoint?.state.logs;
    this.#metrics = await JsonlLog.open(`${dir}/metrics.jsonl`, logs?.metricsBytes ?? 0);
    this.#samples = await JsonlLog.open(`${dir}/samples.jsonl`, logs?.samplesBytes ?? 0);
    const verb = opened?.restart ? "restart" : opened ? "resume" : "run";
    const lora = plan.model.kind === "hfModel" ? plan.model.lora : undefined;
    this.options.progress.log(
      `${verb} ${plan.name} · plan ${hash} · ${backend.description} · ` +
        `${plan.model.params.toLocaleString("en-US")} parameters` +
        (lora ? ` (${lora.params.toLocaleString("en-US")} trained: LoRA rank ${lora.rank})` : "") +
        ` → ${dir}` +
        (opened ? ` · from ${checkpoint ? `step ${resumeStep}` : "the start"}` : ""),
    );
    for (const { name, aside } of opened?.passedOver ?? []) {
      this.options.progress.log(`checkpoint ${name} is kept as checkpoints/${aside}`);
    }
    if (previous) this.options.progress.log(`the run's earlier files are in ${previous}/`);
    if (this.finishedSteps) {
      this.options.progress.log(
        `checkpoints/final is complete: every step is done; finishing the run without training`,
      );
    }
  }

  /** Whether the run continues from its final checkpoint: every step done, nothing to train. */
  get finishedSteps(): boolean {
    return this.checkpoint !== null && basename(this.checkpoint.dir) === "final";
  }

  /** The metrics lines up to the checkpoint (none for a run from the start). */
  earlierMetrics(): MetricsRecord[] {
    return this.checkpoint ? parseMetrics(this.checkpoint.metrics) : [];
  }

  /** Rewrites `run.json` with `changes`. */
  saveInfo(changes: Partial<RunInfo>): Promise<void> {
    this.info = { ...this.info, ...changes, updated: new Date().toISOString() };
    return writeFileAtomic(`${this.dir}/run.json`, JSON.stringify(this.info, null, 2) + "\n");
  }

  /** Appends a line to `metrics.jsonl`. */
  async appendMetrics(line: object): Promise<void> {
    await this.#metrics!.append(line);
    this.#metricsText += JSON.stringify(line) + "\n";
  }

  /** Appends groups to `samples.jsonl`. */
  appendSamples(groups: readonly SampleGroup[]): Promise<void> {
    return this.#samples!.append(...groups);
  }

  /**
   * Writes `run`'s checkpoint after `step` (as `name`, or `step-NNNNNN`) and keeps the newest
   * `keep` step checkpoints. Returns its directory's name.
   */
  async saveCheckpoint(run: Run, step: number, keep: number, name?: string): Promise<string> {
    const state = trainerState(run, step, this.hash, {
      metricsBytes: this.#metrics!.bytes,
      samplesBytes: this.#samples!.bytes,
    });
    const saved = await saveRunCheckpoint(this.checkpointsDir, run, state, this.#metricsText, name);
    await pruneCheckpoints(this.checkpointsDir, keep);
    return saved;
  }

  /** Writes `report.html` from what the directory holds now; a failure to draw it fails nothing. */
  async report(): Promise<void> {
    if (this.options.report === false) return;
    try {
      await this.options.report(this.dir);
    } catch (e) {
      this.options.progress.log(`report.html not written: ${(e as Error).message.split("\n")[0]}`);
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.#metrics?.close();
    this.#samples?.close();
    await this.lock[Symbol.asyncDispose]();
  }
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
 * Moves a run's files (`run.json`, the logs, the report, `checkpoints/`) into a new
 * `previous-<time>/` of its directory, for the run to start over beside them. Returns its path.
 */
async function moveRunAside(dir: string): Promise<string> {
  const stamp = new Date().toISOString().replace(/[-:]/g, "").replace("T", "-").slice(0, 15);
  let previous = "";
  for (let n = 1;; n++) {
    previous = `${dir}/previous-${stamp}${n === 1 ? "" : `-${n}`}`;
    try {
      await Deno.mkdir(previous);
      break;
    } catch (e) {
      if (e instanceof Deno.errors.AlreadyExists) continue;
      throw new RunWriteError(previous, e);
    }
  }
  for (const name of ["run.json", "metrics.jsonl", "samples.jsonl", "report.html", "checkpoints"]) {
    try {
      await Deno.lstat(`${dir}/${name}`);
    } catch {
      continue;
    }
    await renameInRun(`${dir}/${name}`, `${previous}/${name}`);
  }
  return previous;
}

/** Renames `from` to `to` within the run directory, a failure a {@linkcode RunWriteError}. */
async function renameInRun(from: string, to: string): Promise<void> {
  try {
    await Deno.rename(from, to);
  } catch (e) {
    throw new RunWriteError(to, e);
  }
}

function basename(path: string): string {
  return path.slice(path.lastIndexOf("/") + 1);
}
