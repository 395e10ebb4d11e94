/**
 * The run directory on disk, and nothing else: its provenance record (`run.json`), the append-only
 * logs (`metrics.jsonl`, `samples.jsonl`, read back by {@linkcode parseMetrics}), the checkpoints
 * under `checkpoints/`, and `run.lock`, which exists while a process runs the run. It loads no
 * TensorFlow.js: what reads finished runs (`analysis/`) builds on it.
 *
 * Every file that is rewritten (`run.json`, `report.html`, a checkpoint directory) is written
 * under a temporary name, synced and renamed into place, so a crash leaves the old version or the
 * new one, never half of one. The logs only grow, a whole line per write; a checkpoint records
 * how much of them it covers, so a resumed run cuts them back to exactly that.
 *
 * Every write that fails throws a {@linkcode RunWriteError} naming the file and the reason (a
 * full disk is `No space left on device`).
 *
 * @module
 */

/** `run.json`: what ran, where, with which versions, and how it stands. */
export interface RunInfo {
  format: "giftwrap.run/1";
  /** The recipe's name. */
  name: string;
  status: "running" | "finished" | "failed" | "interrupted";
  /** ISO times: the first start, and the last time this file was written. */
  started: string;
  updated: string;
  /** The process that runs it now (or last ran it), and its host. */
  pid: number;
  host: string;
  recipe: { source: string | null };
  planHash: string;
  seed: number;
  backend: { name: string; description: string };
  versions: { giftwrap: string; deno: string; v8: string; typescript: string; tfjs: string };
  /** The plan's steps, and the last one completed. */
  steps: number;
  step: number;
  /** The last complete checkpoint, its directory relative to the run directory. */
  checkpoint: { step: number; dir: string } | null;
  resumes: { fromStep: number; at: string }[];
  result: {
    accuracyBefore: number | null;
    accuracyAfter: number | null;
    rewardMean: number | null;
    seconds: number;
  } | null;
  /** One line, when the run failed. */
  error: string | null;
}

/** One completion of a logged group. */
export interface SampleCompletion {
  text: string;
  /** The total reward (the weighted sum of the sources). */
  reward: number;
  /**
   * Each source's score, by name: NaN in memory and null on disk where a `"zero"` or
   * `"skip-group"` source could not score it.
   */
  rewards: Record<string, number | null>;
  /** The objective's advantage (its plan axis); null for an objective without one. */
  advantage: number | null;
  /** In tokens. */
  length: number;
  truncated: boolean;
}

/** A line of `samples.jsonl`: one group of a step. */
export interface SampleGroup {
  step: number;
  /** The group's index in the step's batch. */
  group: number;
  prompt: string;
  answer: string;
  completions: SampleCompletion[];
}

/**
 * The reason a file operation failed, without the operation and path Deno appends
 * (`No space left on device (os error 28)`).
 */
export function osReason(e: unknown): string {
  const message = e instanceof Error ? e.message.split("\n")[0]! : String(e);
  return message.replace(/[:,] [a-z]+ '[^']*'( -> '[^']*')?$/, "");
}

/**
 * A write to the run directory failed; the message names the file and the reason.
 *
 * @example
 * ```ts
 * try {
 *   await execute(plan, { runsDir: "/read-only" });
 * } catch (e) {
 *   if (e instanceof RunWriteError) console.error(e.message); // "Cannot write '…': …"
 * }
 * ```
 */
export class RunWriteError extends Error {
  constructor(path: string, cause: unknown) {
    super(`Cannot write '${path}': ${osReason(cause)}`);
    this.name = "RunWriteError";
  }
}

/** Runs `write`, turning any failure into a {@linkcode RunWriteError} about `path`. */
async function writing<T>(path: string, write: () => Promise<T>): Promise<T> {
  try {
    return await write();
  } catch (e) {
    if (e instanceof RunWriteError) throw e;
    throw new RunWriteError(path, e);
  }
}

/** Writes all of `bytes` (a single `write` may write less) to an open file. */
export async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let done = 0;
  while (done < bytes.length) done += await file.write(bytes.subarray(done));
}

/** Writes `content` to `path` through a synced temporary file and a rename. */
export function writeFileAtomic(path: string, content: string | Uint8Array): Promise<void> {
  return writing(path, async () => {
    const tmp = `${path}.tmp-${crypto.randomUUID().slice(0, 8)}`;
    try {
      const file = await Deno.open(tmp, { write: true, create: true, truncate: true });
      try {
        await writeAll(file, typeof content === "string" ? encoder.encode(content) : content);
        await file.syncData();
      } finally {
        file.close();
      }
      await Deno.rename(tmp, path);
    } catch (e) {
      await Deno.remove(tmp).catch(() => {});
      throw e;
    }
  });
}

const encoder = new TextEncoder();

/** An append-only JSON Lines log, one whole line per `append`. */
export class JsonlLog {
  #file: Deno.FsFile;
  readonly path: string;
  /** Bytes in the file: where the next line starts. */
  bytes: number;

  private constructor(path: string, file: Deno.FsFile, bytes: number) {
    this.path = path;
    this.#file = file;
    this.bytes = bytes;
  }

  /** Opens `path` for appending, first cutting it to `keepBytes` when given (a resumed run). */
  static open(path: string, keepBytes?: number): Promise<JsonlLog> {
    return writing(path, async () => {
      const file = await Deno.open(path, { write: true, create: true });
      if (keepBytes !== undefined) await file.truncate(keepBytes);
      const bytes = await file.seek(0, Deno.SeekMode.End);
      return new JsonlLog(path, file, bytes);
    });
  }

  /** Appends one JSON line per value. */
  append(...values: unknown[]): Promise<void> {
    if (values.length === 0) return Promise.resolve();
    const bytes = encoder.encode(values.map((v) => JSON.stringify(v) + "\n").join(""));
    return writing(this.path, async () => {
      await writeAll(this.#file, bytes);
      this.bytes += bytes.length;
    });
  }

  close(): void {
    this.#file.close();
  }
}

/** The name of step `step`'s checkpoint directory: `step-000010`. */
export function checkpointName(step: number): string {
  return `step-${String(step).padStart(6, "0")}`;
}

/**
 * Writes `files` as the directory `dir`: into a temporary sibling, each file synced, then renamed
 * into place. `dir` must not exist yet: checkpoints are never overwritten (each step has its own
 * name; a resume moves a checkpoint that fails its checks aside before the run writes that step
 * again, and one resumed from a complete `final/` does not write it again). A failure removes the
 * temporary directory and leaves every other checkpoint as it was.
 */
export function writeCheckpointDir(
  dir: string,
  files: Record<string, Uint8Array | string>,
): Promise<void> {
  return writing(dir, async () => {
    const tmp = `${dir}.tmp-${crypto.randomUUID().slice(0, 8)}`;
    try {
      await Deno.mkdir(tmp, { recursive: true });
      for (const [name, content] of Object.entries(files)) {
        const bytes = typeof content === "string" ? encoder.encode(content) : content;
        const file = await Deno.open(`${tmp}/${name}`, { write: true, create: true });
        try {
          await writeAll(file, bytes);
          await file.syncData();
        } finally {
          file.close();
        }
      }
      await Deno.rename(tmp, dir);
    } catch (e) {
      await Deno.remove(tmp, { recursive: true }).catch(() => {});
      throw e;
    }
  });
}

/** The step checkpoints under `checkpointsDir`, newest first (temporary directories skipped). */
export async function stepCheckpoints(
  checkpointsDir: string,
): Promise<{ step: number; dir: string }[]> {
  const found: { step: number; dir: string }[] = [];
  try {
    for await (const entry of Deno.readDir(checkpointsDir)) {
      const m = /^step-(\d+)$/.exec(entry.name);
      if (entry.isDirectory && m) found.push({ step: Number(m[1]), dir: entry.name });
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return found.sort((a, b) => b.step - a.step);
}

/**
 * Removes what a crash may have left under `checkpointsDir` (temporary directories) and the step
 * checkpoints beyond the newest `keep`.
 */
export async function pruneCheckpoints(checkpointsDir: string, keep: number): Promise<void> {
  for await (const entry of Deno.readDir(checkpointsDir)) {
    if (/\.tmp-[0-9a-f]{8}$/.test(entry.name)) {
      await Deno.remove(`${checkpointsDir}/${entry.name}`, { recursive: true });
    }
  }
  for (const old of (await stepCheckpoints(checkpointsDir)).slice(keep)) {
    await Deno.remove(`${checkpointsDir}/${old.dir}`, { recursive: true });
  }
}

/**
 * Takes `<dir>/run.lock` for as long as the returned file stays open (the operating system frees
 * it when the process ends, however it ends); null when another process holds it. A run holds it
 * while it writes its directory, so no two processes write one run, and removes it when it ends
 * ({@linkcode unlockRunDir}); a run killed outright leaves it behind, unheld.
 */
export async function lockRunDir(dir: string): Promise<Deno.FsFile | null> {
  const path = `${dir}/run.lock`;
  for (;;) {
    const file = await writing(
      path,
      () => Deno.open(path, { read: true, write: true, create: true }),
    );
    if (!(await file.tryLock(true))) {
      file.close();
      return null;
    }
    // The holder before us may have removed the file between our open and our lock: a lock on
    // that file excludes no one, so take the one at the path now.
    if (await isFileAt(file, path)) return file;
    file.close();
  }
}

/** Whether `path` names the open `file` now (not a file removed or replaced since it was opened). */
async function isFileAt(file: Deno.FsFile, path: string): Promise<boolean> {
  try {
    const [held, named] = [await file.stat(), await Deno.stat(path)];
    return held.ino === named.ino && held.dev === named.dev;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

/**
 * Removes `<dir>/run.lock` and lets go of it: the run has ended (finished, interrupted or failed),
 * and its directory says so in `run.json`. Removed while still held, so a process that opened the
 * file meanwhile finds it gone once it gets the lock ({@linkcode lockRunDir} then takes a new one).
 */
export async function unlockRunDir(dir: string, lock: Deno.FsFile): Promise<void> {
  try {
    await Deno.remove(`${dir}/run.lock`);
  } catch {
    // Already gone, or the directory went read-only: the lock is freed on close all the same.
  } finally {
    lock.close();
  }
}

/** Whether a process holds `<dir>/run.lock` now (false when there is none). */
export async function isRunLocked(dir: string): Promise<boolean> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(`${dir}/run.lock`, { read: true });
  } catch {
    return false;
  }
  try {
    if (!(await file.tryLock(false))) return true;
    await file.unlock();
    return false;
  } finally {
    file.close();
  }
}

/** A line of `metrics.jsonl` as read back: its step, and its eval accuracy where it has one. */
export interface MetricsRecord {
  step: number;
  evalAccuracy?: number;
  [field: string]: unknown;
}

/**
 * Parses the text of a `metrics.jsonl`; a line that is not a JSON object with a numeric `step`
 * (such as a last line cut short by a crash) is skipped.
 *
 * @example
 * ```ts
 * parseMetrics('{"step":0,"evalAccuracy":0.5}\n{"st'); // [{ step: 0, evalAccuracy: 0.5 }]
 * ```
 */
export function parseMetrics(text: string): MetricsRecord[] {
  const lines: MetricsRecord[] = [];
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    try {
      const value = JSON.parse(line);
      if (value !== null && typeof value === "object" && typeof value.step === "number") {
        lines.push(value as MetricsRecord);
      }
    } catch {
      // A partial line: the run stopped while writing it.
    }
  }
  return lines;
}
