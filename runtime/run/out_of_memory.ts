/**
 * A backend that runs out of memory fails deep inside its own code: tfjs's wasm build, compiled
 * without assertions, aborts (`RuntimeError: Aborted(). Build with -sASSERTIONS for more info.`) or
 * traps (`memory access out of bounds`) when its 4 GiB heap is full, and the cpu backend throws
 * `RangeError: Array buffer allocation failed`. {@linkcode outOfMemory} catches one stage of a run
 * and turns such a failure into an {@linkcode OutOfMemoryError}: one line naming the stage, its
 * estimated peak against what the backend holds, and the fix (dsl/memory.ts).
 *
 * @module
 */

import { bytesText } from "../../dsl/format.ts";
import {
  memoryFix,
  memoryLimit,
  type MemoryStage,
  stagePeaks,
  WASM_HEAP_BYTES,
} from "../../dsl/memory.ts";
import type { Plan } from "../../dsl/plan.ts";
import { tf } from "../engine/backend.ts";
import { machineMemory } from "../engine/native.ts";

/**
 * A stage that ran out of the backend's memory; the message is one line for the user.
 *
 * @example
 * ```ts
 * try {
 *   await execute(plan);
 * } catch (e) {
 *   if (e instanceof OutOfMemoryError) console.error(e.message); // "warm start ran out of memory …"
 * }
 * ```
 */
export class OutOfMemoryError extends Error {
  /** What ran: "warm start", "eval", "step 3". */
  readonly stage: string;

  constructor(stage: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "OutOfMemoryError";
    this.stage = stage;
  }
}

/**
 * Whether `error` is a backend's failure to allocate. A WebAssembly trap or abort counts only
 * when the wasm heap has grown past half its 4 GiB (`heapBytes`, null off wasm): below that it is
 * some other fault, which must not read as memory.
 *
 * @example
 * ```ts
 * isOutOfMemory(new RangeError("Array buffer allocation failed"), null); // true
 * isOutOfMemory(new WebAssembly.RuntimeError("Aborted()"), 3.9 * 2 ** 30); // true
 * isOutOfMemory(new WebAssembly.RuntimeError("Aborted()"), 64 * 2 ** 20); // false
 * ```
 */
export function isOutOfMemory(error: unknown, heapBytes: number | null): boolean {
  if (error instanceof RangeError) {
    return /allocation failed|out of memory|maximum memory size|invalid (typed )?array (buffer )?length/i
      .test(error.message);
  }
  if (error instanceof WebAssembly.RuntimeError) {
    return heapBytes !== null && heapBytes >= WASM_HEAP_BYTES / 2;
  }
  return false;
}

/** The size the wasm backend's heap has grown to (it never shrinks), or null off wasm. */
function wasmHeapBytes(): number | null {
  try {
    const backend = tf.backend() as { wasm?: { HEAPU8?: Uint8Array } };
    return backend.wasm?.HEAPU8?.buffer.byteLength ?? null;
  } catch {
    return null;
  }
}

/**
 * The one-line message for `label` (a stage, or "step 3" for `stages` together) running out of
 * memory: the largest estimate of `stages`, what the backend holds, and the fix.
 *
 * @example
 * ```ts
 * outOfMemoryMessage(plan, "warm start", ["warm start"], undefined);
 * // "warm start ran out of memory on wasm (estimated peak 3.39 GiB of wasm's 4 GiB heap): fix: …"
 * ```
 */
export function outOfMemoryMessage(
  plan: Plan,
  label: string,
  stages: readonly MemoryStage[],
  machineBytes: number | undefined,
): string {
  const peaks = stagePeaks(plan).filter((p) => stages.includes(p.stage));
  if (peaks.length === 0) return `${label} ran out of memory on ${plan.backend.name}`;
  const peak = peaks.reduce((a, b) => (b.bytes > a.bytes ? b : a));
  const limit = memoryLimit(plan.backend.name, machineBytes);
  const where = stages.length > 1 ? `, in the ${peak.stage}` : "";
  const of = limit === null ? "" : ` of ${limit.what}`;
  // It ran out, so its estimate was too low or the memory taken: aim for half the estimate at
  // most, and half of what the backend holds, as the compiler's check does.
  const budget = Math.min(peak.bytes, limit?.bytes ?? Infinity) / 2;
  const fix = memoryFix(plan, peak, budget, machineBytes);
  return `${label} ran out of memory on ${plan.backend.name} ` +
    `(estimated peak ${bytesText(peak.bytes)}${of}${where}): fix: ${fix}`;
}

/**
 * A rejection handler for one stage of `plan`'s run: it rethrows a backend's allocation failure
 * as an {@linkcode OutOfMemoryError} naming `label` (see {@linkcode outOfMemoryMessage}), and
 * any other error unchanged.
 *
 * @example
 * ```ts
 * await warmStart(...).catch(outOfMemory(plan, "warm start", ["warm start"]));
 * await trainStep(run, step).catch(outOfMemory(plan, `step ${step}`, STEP_STAGES));
 * ```
 */
export function outOfMemory(
  plan: Plan,
  label: string,
  stages: readonly MemoryStage[],
): (error: unknown) => never {
  return (error) => {
    // Only a trap asks for the heap: reading it on another backend would start tfjs's default one.
    const trap = error instanceof WebAssembly.RuntimeError && plan.backend.name === "wasm";
    const heap = trap ? wasmHeapBytes() : null;
    if (!isOutOfMemory(error, heap)) throw error;
    const message = outOfMemoryMessage(plan, label, stages, machineMemory());
    throw new OutOfMemoryError(label, message, { cause: error });
  };
}

/** The stages of an RL step: sampling, the log-probability passes, the update. */
export const STEP_STAGES: readonly MemoryStage[] = ["sample", "log-probs", "update"];
