/**
 * Stopping a run early. A run checks whether it was asked to stop between units of work (a warm
 * start step, a train step); the command line asks on the first Ctrl-C or SIGTERM, and a second
 * one ends the process at once.
 *
 * Two facts of Deno decide the design. A signal listener, like any event, runs only when the
 * event loop gets a turn, and a run's compute does not yield one on its own (awaiting a tensor's
 * data on the cpu and wasm backends settles as a microtask): so {@linkcode stopRequested} lets the
 * event loop turn before it answers. And a listener on the thread that trains cannot run while a
 * step computes: so the signals are taken by a worker, which the main thread's compute never
 * blocks. A second signal within 100 ms of the first is the same Ctrl-C delivered twice (a
 * terminal signals the whole process group, and `deno task` forwards the signal to the run); a
 * later one makes the worker drop its listeners and send the signal again to the process, whose
 * default action ends it at once (exit status 130 for Ctrl-C, 143 for SIGTERM), however long the
 * step in progress and whatever computes on the main thread.
 *
 * @module
 */

/** Thrown where a run stops before it has a step to checkpoint (the warm start). */
export class Interrupted extends Error {
  constructor() {
    super("the run was asked to stop");
    this.name = "Interrupted";
  }
}

/** Milliseconds of compute between two turns of the event loop (a turn costs about a timer's). */
const TURN_EVERY_MS = 50;
let lastTurn = 0;

/**
 * Whether `signal` asks the run to stop, after letting the event loop turn (at most every 50 ms)
 * so that signal listeners and messages waiting for it run first.
 *
 * @example
 * ```ts
 * for (let step = 1; step <= steps; step++) {
 *   if (await stopRequested(options.signal)) break;
 *   await trainStep(run, step);
 * }
 * ```
 */
export async function stopRequested(signal: AbortSignal | undefined): Promise<boolean> {
  if (signal === undefined) return false;
  if (performance.now() - lastTurn >= TURN_EVERY_MS) {
    await new Promise((resolve) => setTimeout(resolve, 0));
    lastTurn = performance.now();
  }
  return signal.aborted;
}

/** What {@linkcode stopOnSignals} returns: the signal to hand the run, and a way to let go. */
export interface SignalStop extends Disposable {
  /** Aborted on the first SIGINT or SIGTERM. */
  signal: AbortSignal;
}

/**
 * Listens for Ctrl-C (SIGINT) and SIGTERM until disposed: the first aborts the returned `signal`
 * and calls `onStop` (when the main thread gets a turn); the next, 100 ms or more later, ends the
 * process at once with the signal's default action (exit status 130 for Ctrl-C, 143 for SIGTERM).
 *
 * @example
 * ```ts
 * using stop = await stopOnSignals(() => console.log("stopping after this step"));
 * const result = await execute(plan, { signal: stop.signal });
 * ```
 */
export async function stopOnSignals(onStop: () => void): Promise<SignalStop> {
  const worker = new Worker(new URL("./_signal_worker.ts", import.meta.url), { type: "module" });
  try {
    await new Promise<void>((resolve, reject) => {
      worker.onmessage = () => resolve();
      worker.onerror = (e) => {
        e.preventDefault();
        reject(new Error(`Cannot listen for Ctrl-C: ${e.message}`));
      };
    });
  } catch (e) {
    worker.terminate();
    throw e;
  }
  const stop = new AbortController();
  worker.onmessage = () => {
    if (stop.signal.aborted) return;
    stop.abort();
    onStop();
  };
  return {
    signal: stop.signal,
    [Symbol.dispose]() {
      worker.terminate();
    },
  };
}
