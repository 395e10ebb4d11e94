/**
 * The worker of `stopOnSignals()` (interrupt.ts): takes SIGINT and SIGTERM off the main thread,
 * whose compute would hold a listener there back until the step in progress ends.
 *
 * @module
 */

/** What a worker's global scope offers here (its `self`, typed without the worker lib). */
const scope = self as unknown as { postMessage(message: unknown): void };
const SIGNALS = ["SIGINT", "SIGTERM"] as const;

function onSignal(): void {
  // With no listener left, the next signal gets the default action: the process ends at once.
  for (const signal of SIGNALS) Deno.removeSignalListener(signal, onSignal);
  scope.postMessage("stop");
}

for (const signal of SIGNALS) Deno.addSignalListener(signal, onSignal);
scope.postMessage("ready");
