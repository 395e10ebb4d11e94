/**
 * User rewards in TypeScript: `(sample) => number | Promise<number>`, by module URL and export
 * name, run in-process or in a sandbox.
 *
 * In-process (`sandbox: false`) the module is imported into the trainer and called with a copy of
 * each sample; the timeout ends the wait for an async reward, but a synchronous infinite loop
 * hangs the trainer.
 *
 * Sandboxed (`sandbox: true`) the module runs in a subprocess, `deno run` of `_fn_worker.ts`
 * started through `sh` (which sets its data limit: the trainer needs `--allow-run=sh`), with
 * `--no-config --no-npm` and one permission while it loads:
 *   - a `file:` module: read access to its directory (subdirectories included; symbolic links are
 *     followed) and `--no-remote`;
 *   - an `https:` module: import access to its host.
 * The harness imports the module by a computed `import()`, so Deno checks every module and file
 * of its graph against that permission (static imports, `with { type: "json" | "text" }`
 * attributes, and the literal dynamic imports it prefetches): a file outside the directory, or any
 * URL, fails the load with "Requires read access" or "Requires import access". Type-only imports
 * (`import type`) are not loaded. Then the harness revokes the permission, so every call runs
 * with none: `Deno.readTextFile`, `fetch`, `Deno.connect`, `Deno.env`, `Deno.Command` and an
 * `import()` of anything its graph did not load fail with "Requires … access", as that sample's
 * error. Code at the module's top level runs while it loads, with the read permission.
 *
 * Calls go one at a time as JSON lines over the subprocess's stdin and stdout (what the module
 * logs goes to stderr, which the trainer forwards to its own); samples are therefore copied as
 * JSON. A call that takes longer than `timeoutMs` gets an Error and its subprocess is killed; the
 * next call starts a fresh one. The subprocess's V8 heap is capped at `memoryMb` MiB, its data
 * memory (ArrayBuffers included) at `memoryMb` + 1024 MiB where the system enforces `ulimit -d`
 * (Linux): a call past the heap cap gets an Error ("ran out of memory"), an allocation past the
 * data cap throws in the module (`RangeError: Array buffer allocation failed`); either way the
 * trainer goes on. The subprocess ignores SIGINT, which a terminal sends to the whole process
 * group: the trainer decides what Ctrl-C means; and it ends itself when the trainer is gone, even
 * in the middle of a call (a worker thread of its own watches the parent's pid). Errors the
 * module raises outside a call (a throwing timer) are dropped.
 *
 * @module
 */

import type { BatchScorer, RewardFn, Sample } from "./types.ts";

/** Options of `fnScorer()`. */
export interface FnScorerOptions {
  /** The module, as an absolute `file:` or `https:` URL (already resolved against the recipe). */
  module: string;
  /** The export to call. @default {"default"} */
  export?: string;
  /** Whether to run the module in a sandboxed subprocess (see the module doc). @default {true} */
  sandbox?: boolean;
  /** Per call, in milliseconds. @default {10000} */
  timeoutMs?: number;
  /** Loading the module into a (fresh) subprocess, in milliseconds. @default {30000} */
  loadTimeoutMs?: number;
  /**
   * The sandbox's JavaScript heap, in MiB; its data memory (ArrayBuffers included, where the
   * operating system enforces `ulimit -d`) is limited to this plus 1024 MiB for Deno itself.
   * @default {512}
   */
  memoryMb?: number;
}

/** A message from `_fn_worker.ts`. */
type Reply =
  | { type: "loaded"; kind: string }
  | { type: "loadError"; error: { name: string; message: string } }
  | {
    type: "result";
    id: number;
    value?: number;
    returned?: string;
    error?: { name: string; message: string };
  };

/** A running sandbox subprocess; `listener` gets its next reply, or the Error that ended it. */
interface Sandbox {
  child: Deno.ChildProcess;
  stdin: WritableStreamDefaultWriter<Uint8Array>;
  dead: boolean;
  listener: ((reply: Reply | Error) => void) | null;
}

/** What the trainer's permissions must grant for the sandbox to start its subprocess. */
const RUN_FLAG = Deno.build.os === "windows" ? "--allow-run=<deno's path>" : "--allow-run=sh";

/**
 * The sandbox's data memory beyond its heap limit, for Deno itself: V8 reserves about 540 MiB of
 * writable address space (its code range) before it runs any code.
 */
const DATA_OVERHEAD_MB = 1024;

function firstLine(text: string): string {
  return text.split("\n").map((line) => line.trim()).find((line) => line !== "") ?? "";
}

/** Deno's permission messages end with advice that does not apply inside the sandbox. */
function permissionProblem(name: string, message: string): string | null {
  const line = firstLine(message);
  if (name !== "NotCapable" && name !== "PermissionDenied" && !/^Requires \S+ access/.test(line)) {
    return null;
  }
  return `permission denied: ${line.replace(/, run again with the --allow-\S+ flag$/, "")}`;
}

/** "threw …" or "permission denied: …", one line. */
function thrown(name: string, message: string): string {
  return permissionProblem(name, message) ?? `threw ${name}: ${firstLine(message)}`;
}

function errorParts(error: unknown): { name: string; message: string } {
  return error instanceof Error
    ? { name: error.name, message: error.message }
    : { name: "Error", message: String(error) };
}

/** Why loading `module` failed, one line. */
function loadProblem(module: string, error: { name: string; message: string }): string {
  const line = firstLine(error.message);
  const missing = /^Module not found "([^"]*)"/.exec(line);
  if (missing) {
    return missing[1] === module ? "module not found" : `module not found: ${missing[1]}`;
  }
  return permissionProblem(error.name, error.message) ?? line;
}

/** The Error of a value that is not a finite number, or the number. */
function checked(label: string, value: unknown): number | Error {
  if (typeof value === "number" && Number.isFinite(value)) return value;
  const shown = typeof value === "number" ? String(value) : value === null ? "null" : typeof value;
  return new Error(`reward ${label}: returned ${shown}, not a finite number`);
}

function exportProblem(name: string, kind: string): string | null {
  if (kind === "missing") return `export '${name}' not found`;
  if (kind !== "function") return `export '${name}' is not a function (${kind})`;
  return null;
}

/** The rejection of a call that ran out of time. */
class TimedOut extends Error {}

/** Resolves with `promise`, or rejects with a `TimedOut` after `ms`; leaves no timer behind. */
function within<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TimedOut()), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function loadInProcess(module: string, name: string): Promise<RewardFn> {
  let namespace: Record<string, unknown>;
  try {
    namespace = await import(module);
  } catch (error) {
    throw new Error(
      `Cannot load reward ${module}#${name}: ${loadProblem(module, errorParts(error))}`,
    );
  }
  const kind = name in namespace ? typeof namespace[name] : "missing";
  const problem = exportProblem(name, kind);
  if (problem !== null) throw new Error(`Cannot load reward ${module}#${name}: ${problem}`);
  return namespace[name] as RewardFn;
}

function inProcessScorer(fn: RewardFn, label: string, timeoutMs: number): BatchScorer {
  async function one(sample: Sample): Promise<number | Error> {
    try {
      const call = Promise.resolve().then(() => fn(structuredClone(sample)));
      return checked(label, await within(call, timeoutMs));
    } catch (error) {
      if (error instanceof TimedOut) {
        return new Error(`reward ${label}: no result within ${timeoutMs} ms`);
      }
      const { name, message } = errorParts(error);
      return new Error(`reward ${label}: ${thrown(name, message)}`);
    }
  }
  return {
    score(samples) {
      return Promise.all(samples.map(one));
    },
  };
}

/** Why the subprocess ended, for the sample whose call it was serving. */
function ended(status: Deno.CommandStatus, memoryMb: number): Error {
  // V8's fatal out-of-memory ends the process with SIGTRAP (exit status 133).
  if (status.signal === "SIGTRAP" || status.code === 133) {
    return new Error(`ran out of memory (the sandbox's limit is ${memoryMb} MiB of heap)`);
  }
  const how = status.signal === null ? `exit status ${status.code}` : `signal ${status.signal}`;
  return new Error(`the reward's process ended (${how})`);
}

function kill(sandbox: Sandbox, why: Error): void {
  if (sandbox.dead) return;
  sandbox.dead = true;
  try {
    sandbox.child.kill("SIGKILL");
  } catch {
    // already gone
  }
  sandbox.stdin.close().catch(() => {});
  sandbox.listener?.(why);
}

/**
 * The next reply of the sandbox, or an Error: its death, or no reply within `ms` (which kills it).
 * Call it right after writing: a reply arrives in a later task, never before the listener is set.
 */
function nextReply(sandbox: Sandbox, ms: number, onTimeout: () => Error): Promise<Reply | Error> {
  if (sandbox.dead) return Promise.resolve(new Error("the reward's process is gone"));
  return new Promise((resolve) => {
    function done(reply: Reply | Error): void {
      clearTimeout(timer);
      sandbox.listener = null;
      resolve(reply);
    }
    const timer = setTimeout(() => {
      const why = onTimeout();
      done(why);
      kill(sandbox, why);
    }, ms);
    sandbox.listener = done;
  });
}

/** The longest reply line read from the subprocess; a longer one is not a reply. */
const MAX_LINE = 1 << 16;

/** Hands each complete line of the subprocess's stdout to the sandbox's listener. */
async function readReplies(sandbox: Sandbox, stdout: ReadableStream<Uint8Array>): Promise<void> {
  let pending = "";
  try {
    for await (const text of stdout.pipeThrough(new TextDecoderStream())) {
      pending += text;
      let end: number;
      while ((end = pending.indexOf("\n")) >= 0) {
        const line = pending.slice(0, end);
        pending = pending.slice(end + 1);
        let reply: unknown;
        try {
          reply = JSON.parse(line);
        } catch {
          continue; // the module wrote to stdout itself: not a reply
        }
        if (typeof reply === "object" && reply !== null && "type" in reply) {
          sandbox.listener?.(reply as Reply);
        }
      }
      if (pending.length > MAX_LINE) pending = ""; // not a reply either, and unbounded
    }
  } catch {
    // the process was killed
  }
}

/**
 * Copies the subprocess's stderr (what the module logs) to the trainer's, up to V8's report of a
 * fatal error: that ends the call with one line instead.
 */
async function forwardStderr(stderr: ReadableStream<Uint8Array>): Promise<void> {
  let quiet = false;
  try {
    for await (const chunk of stderr) {
      if (quiet) continue;
      const text = new TextDecoder().decode(chunk);
      const fatal = text.search(/\n#\n# Fatal |^#\n# Fatal |<--- Last few GCs --->/);
      if (fatal >= 0) {
        quiet = true;
        const before = text.slice(0, fatal).trimEnd();
        if (before !== "") await Deno.stderr.write(new TextEncoder().encode(before + "\n"));
        continue;
      }
      await Deno.stderr.write(chunk);
    }
  } catch {
    // the process was killed
  }
}

/** The command line of the sandbox's subprocess for `module`, and the program it runs first. */
function sandboxCommand(module: string, name: string, memoryMb: number): Deno.Command {
  const url = new URL(module);
  const scope = url.protocol === "file:"
    ? [`--allow-read=${decodeURIComponent(new URL(".", url).pathname)}`, "--no-remote"]
    : [`--allow-import=${url.host}`];
  const deno = [
    "run",
    "--no-prompt",
    "--no-config",
    "--no-npm",
    `--v8-flags=--max-old-space-size=${memoryMb}`,
    ...scope,
    new URL("./_fn_worker.ts", import.meta.url).href,
    module,
    name,
  ];
  const options = { stdin: "piped", stdout: "piped", stderr: "piped" } as const;
  if (Deno.build.os === "windows") {
    return new Deno.Command(Deno.execPath(), { args: deno, ...options });
  }
  // sh sets the data limit (ArrayBuffers are outside V8's heap) and becomes deno.
  const dataKiB = (memoryMb + DATA_OVERHEAD_MB) * 1024;
  return new Deno.Command("sh", {
    args: [
      "-c",
      'ulimit -d "$1" 2>/dev/null; shift; exec "$@"',
      "sh",
      String(dataKiB),
      Deno.execPath(),
      ...deno,
    ],
    ...options,
  });
}

/** Starts a subprocess and loads the module in it; rejects with the one-line loading problem. */
async function startSandbox(
  module: string,
  name: string,
  loadTimeoutMs: number,
  memoryMb: number,
): Promise<Sandbox> {
  let child: Deno.ChildProcess;
  try {
    child = sandboxCommand(module, name, memoryMb).spawn();
  } catch (error) {
    const { name: kind, message } = errorParts(error);
    const problem = kind === "NotCapable" || kind === "PermissionDenied"
      ? `the sandbox runs it in a subprocess, which needs ${RUN_FLAG} (deno task run has it), ` +
        "or set sandbox: false"
      : `cannot start the sandbox's subprocess: ${firstLine(message)}`;
    throw new Error(`Cannot load reward ${module}#${name}: ${problem}`);
  }
  const sandbox: Sandbox = {
    child,
    stdin: child.stdin.getWriter(),
    dead: false,
    listener: null,
  };
  // Its end is reported once every reply it wrote has been read.
  const read = readReplies(sandbox, child.stdout);
  forwardStderr(child.stderr);
  Promise.all([child.status, read]).then(([status]) => kill(sandbox, ended(status, memoryMb)));
  const loaded = await nextReply(
    sandbox,
    loadTimeoutMs,
    () => new Error(`not loaded within ${loadTimeoutMs} ms`),
  );
  const problem = loaded instanceof Error
    ? firstLine(loaded.message)
    : loaded.type === "loadError"
    ? loadProblem(module, loaded.error)
    : loaded.type === "loaded"
    ? exportProblem(name, loaded.kind)
    : "unexpected message from the reward's process";
  if (problem !== null) {
    kill(sandbox, new Error(problem));
    throw new Error(`Cannot load reward ${module}#${name}: ${problem}`);
  }
  return sandbox;
}

function sandboxScorer(
  first: Sandbox,
  options: {
    module: string;
    name: string;
    timeoutMs: number;
    loadTimeoutMs: number;
    memoryMb: number;
  },
): BatchScorer {
  const { module, name, timeoutMs, loadTimeoutMs, memoryMb } = options;
  const label = `${module}#${name}`;
  const encoder = new TextEncoder();
  let sandbox: Sandbox | null = first;
  let closed = false;
  let nextId = 0;
  let queue: Promise<unknown> = Promise.resolve(); // one batch at a time, one call at a time

  async function one(sample: Sample): Promise<number | Error> {
    if (closed) return new Error(`reward ${label}: the scorer is closed`);
    if (sandbox === null || sandbox.dead) {
      try {
        sandbox = await startSandbox(module, name, loadTimeoutMs, memoryMb);
      } catch (error) {
        sandbox = null;
        return new Error(
          `reward ${label}: cannot restart the reward's process: ${errorParts(error).message}`,
        );
      }
      if (closed) {
        kill(sandbox, new Error("closed"));
        return new Error(`reward ${label}: the scorer is closed`);
      }
    }
    const current = sandbox;
    const id = nextId++;
    let line: Uint8Array;
    try {
      line = encoder.encode(JSON.stringify({ id, sample }) + "\n");
    } catch (error) {
      return new Error(`reward ${label}: cannot send the sample: ${errorParts(error).message}`);
    }
    const answer = nextReply(current, timeoutMs, () => {
      return new Error(`no result within ${timeoutMs} ms (its process was killed)`);
    });
    current.stdin.write(line).catch((error) =>
      kill(current, new Error(`cannot send the sample: ${errorParts(error).message}`))
    );
    const reply = await answer;
    if (reply instanceof Error) return new Error(`reward ${label}: ${reply.message}`);
    if (reply.type !== "result" || reply.id !== id) {
      kill(current, new Error("out of step"));
      return new Error(`reward ${label}: unexpected message from the reward's process`);
    }
    if (reply.error) {
      return new Error(`reward ${label}: ${thrown(reply.error.name, reply.error.message)}`);
    }
    if (reply.returned !== undefined) {
      return new Error(`reward ${label}: returned ${reply.returned}, not a finite number`);
    }
    return checked(label, reply.value);
  }

  async function scoreBatch(samples: readonly Sample[]): Promise<(number | Error)[]> {
    const out: (number | Error)[] = [];
    for (const sample of samples) out.push(await one(sample));
    return out;
  }

  return {
    score(samples) {
      const run = queue.then(() => scoreBatch(samples));
      queue = run.catch(() => {});
      return run;
    },
    close() {
      closed = true;
      if (sandbox !== null) kill(sandbox, new Error("the scorer is closed"));
    },
  };
}

/**
 * A batch scorer of a user reward `(sample) => number | Promise<number>`: the export `export` of
 * `module`, in-process or in a sandboxed subprocess (see the module doc). Loading problems
 * reject in one line; a call that throws, returns something other than a finite number or takes
 * longer than `timeoutMs` gives an Error for its sample. Call `close()` when done.
 *
 * @example
 * ```ts
 * const scorer = await fnScorer({
 *   module: new URL("./reward.ts", recipeUrl).href,
 *   export: "score",
 *   sandbox: true,
 *   timeoutMs: 1000,
 * });
 * try {
 *   const scores = await scorer.score(samples); // (number | Error)[]
 * } finally {
 *   await scorer.close?.();
 * }
 * ```
 */
export async function fnScorer(options: FnScorerOptions): Promise<BatchScorer> {
  const module = options.module;
  const name = options.export ?? "default";
  const timeoutMs = options.timeoutMs ?? 10_000;
  const loadTimeoutMs = options.loadTimeoutMs ?? 30_000;
  const memoryMb = options.memoryMb ?? 512;
  if (!Number.isInteger(memoryMb) || memoryMb < 16) {
    throw new Error(
      `Cannot load reward ${module}#${name}: memoryMb: expected an integer of 16 or more, ` +
        `got ${memoryMb}`,
    );
  }
  if (!/^(file|https?):/.test(module)) {
    throw new Error(
      `Cannot load reward ${module}#${name} as the module must be an absolute file: or https: URL`,
    );
  }
  if (module.startsWith("file:") && (options.sandbox ?? true)) {
    // Deno's --allow-read takes a comma-separated list: such a path would grant other paths.
    const dir = decodeURIComponent(new URL(".", module).pathname);
    if (dir.includes(",")) {
      throw new Error(
        `Cannot load reward ${module}#${name}: the sandbox cannot grant reading '${dir}', ` +
          "as its path has a comma; move the module or set sandbox: false",
      );
    }
  }
  if (module.startsWith("file:")) {
    // a missing file fails here, without starting a subprocess
    const found = await Deno.stat(new URL(module)).then(
      () => true,
      (e) => !(e instanceof Deno.errors.NotFound),
    );
    if (!found) throw new Error(`Cannot load reward ${module}#${name}: module not found`);
  }
  if (!(options.sandbox ?? true)) {
    return inProcessScorer(await loadInProcess(module, name), `${module}#${name}`, timeoutMs);
  }
  const first = await startSandbox(module, name, loadTimeoutMs, memoryMb);
  return sandboxScorer(first, { module, name, timeoutMs, loadTimeoutMs, memoryMb });
}
