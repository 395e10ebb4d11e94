/**
 * Running a comparison's runs: child processes in parallel, and the lines that report on them.
 *
 * `runPool()` starts jobs in order, at most `concurrency` at a time, holding back the other jobs
 * of a group (the runs of one seed) until its first job says its warm start is done: the warm
 * start is cached by content hash, so the rest of the group loads it instead of training the
 * same weights in parallel. A group whose running job fails before that hands the turn to its
 * next job.
 *
 * @module
 */

/** A job of `runPool()`: jobs of one group wait for the group's warm start. */
export interface PoolJob {
  group: string;
}

/** Options of `runPool()`. */
export interface PoolOptions<J, R> {
  /** Jobs running at once. */
  concurrency: number;
  /**
   * Starts a job; it calls `warm()` once its group's warm start is cached (at the latest when it
   * succeeds), which lets the group's other jobs start.
   */
  start: (job: J, warm: () => void) => Promise<R>;
}

/**
 * Runs `jobs` in order, at most `concurrency` at a time, one per group until the group is warm;
 * the results come back in the jobs' order.
 *
 * @example
 * ```ts
 * const codes = await runPool(jobs, {
 *   concurrency: 2,
 *   start: async (job, warm) => { const code = await train(job, { onWarmStart: warm }); return code; },
 * });
 * ```
 */
export function runPool<J extends PoolJob, R>(
  jobs: readonly J[],
  options: PoolOptions<J, R>,
): Promise<R[]> {
  const concurrency = Math.max(1, options.concurrency);
  return new Promise((resolve, reject) => {
    const results: R[] = new Array(jobs.length);
    const started = jobs.map(() => false);
    const warmGroups = new Set<string>();
    const busy = new Map<string, number>();
    let running = 0;
    let finished = 0;
    let failed = false;
    const pump = (): void => {
      if (failed) return;
      if (finished === jobs.length) return resolve(results);
      for (const [i, job] of jobs.entries()) {
        if (running >= concurrency) return;
        if (started[i]) continue;
        if (!warmGroups.has(job.group) && (busy.get(job.group) ?? 0) > 0) continue;
        started[i] = true;
        running++;
        busy.set(job.group, (busy.get(job.group) ?? 0) + 1);
        const warm = () => {
          if (warmGroups.has(job.group)) return;
          warmGroups.add(job.group);
          pump();
        };
        options.start(job, warm).then((result) => {
          results[i] = result;
          running--;
          finished++;
          busy.set(job.group, busy.get(job.group)! - 1);
          pump();
        }, (e) => {
          failed = true;
          reject(e);
        });
      }
    };
    pump();
  });
}

/** What a child process gave back. */
export interface ChildResult {
  code: number;
  stdout: string[];
  stderr: string;
}

/**
 * Runs `command args`, handing each stdout line to `onLine` as it comes; stderr is kept whole.
 * The child runs in a process group of its own, so a Ctrl-C at the terminal reaches only this
 * process, which passes it on once: when `signal` aborts, the child is sent SIGINT (a run then
 * finishes its step, writes a checkpoint and exits 130; a second SIGINT would quit it at once).
 *
 * @example
 * ```ts
 * const { code } = await runChild(Deno.execPath(), ["--version"], (line) => console.log(line));
 * ```
 */
export async function runChild(
  command: string,
  args: readonly string[],
  onLine: (line: string) => void,
  env: Record<string, string> = {},
  signal?: AbortSignal,
): Promise<ChildResult> {
  const child = new Deno.Command(command, {
    args: [...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1", ...env },
    detached: true,
  }).spawn();
  const interrupt = () => {
    try {
      child.kill("SIGINT");
    } catch {
      // it has exited already
    }
  };
  if (signal?.aborted) interrupt();
  signal?.addEventListener("abort", interrupt, { once: true });
  try {
    return await collect(child, onLine);
  } finally {
    signal?.removeEventListener("abort", interrupt);
  }
}

/** A child's stdout line by line to `onLine`, its stderr whole, and its exit code. */
async function collect(
  child: Deno.ChildProcess,
  onLine: (line: string) => void,
): Promise<ChildResult> {
  const stderr = new Response(child.stderr).text();
  const stdout: string[] = [];
  let rest = "";
  for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
    const lines = (rest + chunk).split("\n");
    rest = lines.pop()!;
    for (const line of lines) {
      stdout.push(line);
      onLine(line);
    }
  }
  if (rest !== "") {
    stdout.push(rest);
    onLine(rest);
  }
  const { code } = await child.status;
  return { code, stdout, stderr: await stderr };
}

/**
 * The one-line error of a failed `giftwrap run`, from its stderr: its last `giftwrap:` line
 * (without the prefix, and not the debugging hint), else Deno's `error:` line, else the last line
 * that is not a warning.
 *
 * @example
 * ```ts
 * errorLine("giftwrap: Cannot run objective 'grpo': …\n", 2); // "Cannot run objective 'grpo': …"
 * ```
 */
export function errorLine(stderr: string, code: number): string {
  // deno-lint-ignore no-control-regex
  const lines = stderr.replace(/\x1b\[[0-9;]*m/g, "").split("\n").map((l) => l.trim())
    .filter((l) => l !== "");
  const own = lines.filter((l) =>
    l.startsWith("giftwrap: ") && !l.startsWith("giftwrap: set GIFTWRAP_DEBUG")
  );
  if (own.length > 0) return own.at(-1)!.slice("giftwrap: ".length);
  const denoError = lines.find((l) => l.startsWith("error: "));
  if (denoError !== undefined) return denoError;
  const last = lines.filter((l) => !/: warning: /.test(l)).at(-1);
  return last ?? `exited with code ${code} and printed no error`;
}

/** Where a comparison stands, for its progress line. */
export interface ProgressState {
  runsDone: number;
  runs: number;
  stepsDone: number;
  steps: number;
  /** Seconds since the comparison started. */
  seconds: number;
}

/**
 * A duration in words: `45s`, `12m`, `1h05m`.
 *
 * @example
 * ```ts
 * duration(725); // "12m"
 * ```
 */
export function duration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.round(s / 60)}m`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

/**
 * The overall progress line; the ETA assumes the remaining steps go as fast as the done ones did
 * (warm starts included).
 *
 * @example
 * ```ts
 * progressLine({ runsDone: 7, runs: 24, stepsDone: 1234, steps: 3600, seconds: 372 });
 * // "compare: 7/24 runs done · step totals 1,234/3,600 · ETA 12m"
 * ```
 */
export function progressLine(state: ProgressState): string {
  const eta = state.stepsDone === 0
    ? "?"
    : duration(state.seconds * (state.steps - state.stepsDone) / state.stepsDone);
  const n = (x: number) => x.toLocaleString("en-US");
  return `compare: ${state.runsDone}/${state.runs} runs done · step totals ` +
    `${n(state.stepsDone)}/${n(state.steps)} · ETA ${eta}`;
}
