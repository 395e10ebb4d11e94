/**
 * The worker of `stopOnSignals()` (interrupt.ts): takes SIGINT and SIGTERM off the main thread,
 * whose compute would hold a listener there back until the step in progress ends.
 *
 * The first signal asks the run to stop. A signal within `SAME_PRESS_MS` of it is the same
 * request delivered twice: a terminal sends Ctrl-C to the whole process group, and `deno task`,
 * in that group, forwards it to the run as well. A later one ends the process at once: this
 * worker drops its listeners and sends the signal again to its own process, whose default action
 * (exit status 130 for SIGINT, 143 for SIGTERM) no busy main thread can hold back.
 *
 * @module
 */

/** What a worker's global scope offers here (its `self`, typed without the worker lib). */
const scope = self as unknown as { postMessage(message: unknown): void };

/** Signals this close to the first are the first, delivered twice. */
const SAME_PRESS_MS = 100;

type Name = "SIGINT" | "SIGTERM";
const listeners: Record<Name, () => void> = {
  SIGINT: () => onSignal("SIGINT"),
  SIGTERM: () => onSignal("SIGTERM"),
};
let first: number | null = null;

function onSignal(signal: Name): void {
  const now = performance.now();
  if (first === null) {
    first = now;
    scope.postMessage("stop");
    return;
  }
  if (now - first < SAME_PRESS_MS) return;
  for (const name of ["SIGINT", "SIGTERM"] as const) {
    Deno.removeSignalListener(name, listeners[name]);
  }
  Deno.kill(Deno.pid, signal); // with no listener left: the default action, the process ends
}

for (const name of ["SIGINT", "SIGTERM"] as const) Deno.addSignalListener(name, listeners[name]);
scope.postMessage("ready");
