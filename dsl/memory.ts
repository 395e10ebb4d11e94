/**
 * The memory a plan needs, stage by stage, held against what the backend can hold: wasm's heap
 * of 4 GiB (32-bit addresses), and the machine's memory when the caller says how much there is.
 *
 * The plan's `budget.perStep.peakBytes` is the update's peak alone; a run also holds the warm
 * start's batch, the sampler's prefill and KV cache, the evaluation's batch of up to
 * {@linkcode EVAL_BATCH} problems and the log-probability passes, and any of them can be the
 * largest. Each estimate is the tensors the stage holds at its peak ({@linkcode activationBytes}
 * for a differentiated pass, {@linkcode forwardBytes} for one without gradients) plus the weights,
 * AdamW's state and the frozen reference. Measured against the wasm heap (bench/RESULTS.md,
 * 2026-12-03), one step came within 5% of its estimate, and further steps grew the heap by up to
 * {@linkcode FRAGMENTATION} as the allocator fragments it (the heap never shrinks).
 *
 * @module
 */

import {
  activationBytes,
  EVAL_BATCH,
  floatBytes,
  forwardBytes,
  type ModelShape,
  samplingBytes,
} from "./budget.ts";
import { bytesText, plural } from "./format.ts";
import type { Issue } from "./issues.ts";
import type { BackendName, Plan } from "./plan.ts";

/** The largest heap tfjs's wasm backend can grow to: 4 GiB of 32-bit addresses. */
export const WASM_HEAP_BYTES = 4 * 2 ** 30;

/** How far a run's memory grows past one stage's estimate as the allocator fragments (measured). */
export const FRAGMENTATION = 1.3;

/** A stage whose peak memory is estimated. */
export type MemoryStage = "warm start" | "eval" | "sample" | "log-probs" | "update";

/** One stage's estimated peak. */
export interface StagePeak {
  stage: MemoryStage;
  /** Bytes of tensors at the stage's peak, the weights and the optimiser's state included. */
  bytes: number;
  /** Rows the stage runs at once. */
  rows: number;
  /** Tokens per row. */
  tokens: number;
}

/** What a backend can hold: its bytes, and how to name them in a message. */
export interface MemoryLimit {
  bytes: number;
  /** "wasm's 4 GiB heap", "this machine's 16 GiB of memory". */
  what: string;
}

/** The parts of a plan the estimate reads. */
export type MemoryPlan = Pick<
  Plan,
  "backend" | "model" | "shapes" | "schedule" | "reference" | "objective" | "budget" | "recipe"
>;

/**
 * The estimated peak of each stage the plan runs, in the order they run.
 *
 * @example
 * ```ts
 * // The front door, recipes/addition_gift.ts: evaluation's 500 problems at once are the most.
 * for (const peak of stagePeaks(compile(frontDoor))) {
 *   console.log(`${peak.stage}: ${bytesText(peak.bytes)}`); // "warm start: 36.2 MiB", "eval: 122 MiB", …
 * }
 * ```
 */
export function stagePeaks(plan: MemoryPlan): StagePeak[] {
  const { model, shapes, schedule } = plan;
  const T = shapes.sequenceTokens;
  const weights = floatBytes(model.params);
  const optimizer = 3 * weights; // gradients and AdamW's two moments
  const reference = plan.reference.kind === "initial" || plan.reference.kind === "checkpoint"
    ? weights
    : 0;
  const resident = weights + optimizer + reference;
  const decode = (rows: number) =>
    resident + forwardBytes(model, rows, shapes.promptTokens) + samplingBytes(model, rows, T);
  const peaks: StagePeak[] = [];
  const w = model.warmStart;
  if (w !== null && w.sftSteps > 0) {
    const bytes = weights + optimizer + 2 * activationBytes(model, w.batchSize, T);
    peaks.push({ stage: "warm start", bytes, rows: w.batchSize, tokens: T });
  }
  if (schedule.evalProblems > 0) {
    const rows = Math.min(schedule.evalProblems, EVAL_BATCH);
    peaks.push({ stage: "eval", bytes: decode(rows), rows, tokens: T });
  }
  peaks.push({ stage: "sample", bytes: decode(shapes.rows), rows: shapes.rows, tokens: T });
  // A separate pass reads π_old (a ratio, or the rollout reference, over several optimiser steps
  // per batch) or the frozen reference, as compile() lowers them.
  const readsOld = plan.objective.axes.readsOld || plan.reference.kind === "rollout";
  if ((readsOld && schedule.optimizerStepsPerBatch > 1) || reference > 0) {
    const rows = shapes.miniBatchRows;
    peaks.push({
      stage: "log-probs",
      bytes: resident + forwardBytes(model, rows, T),
      rows,
      tokens: T,
    });
  }
  peaks.push({
    stage: "update",
    bytes: plan.budget.perStep.peakBytes.total,
    rows: shapes.miniBatchRows,
    tokens: T,
  });
  return peaks;
}

/**
 * What `backend` can hold: wasm's heap, or less where the machine has less; on cpu, tensorflow
 * and webgpu the machine's memory (webgpu's device memory, a GPU's own, is not visible here, so
 * the message says so); null when the machine's memory is not given.
 *
 * @example
 * ```ts
 * memoryLimit("wasm"); // { bytes: 4294967296, what: "wasm's 4 GiB heap" }
 * memoryLimit("cpu", 16 * 2 ** 30); // { bytes: 17179869184, what: "this machine's 16 GiB of memory" }
 * ```
 */
export function memoryLimit(backend: BackendName, machineBytes?: number): MemoryLimit | null {
  const machine = machineBytes === undefined
    ? null
    : { bytes: machineBytes, what: `this machine's ${bytesText(machineBytes)} of memory` };
  if (backend === "wasm") {
    const heap = { bytes: WASM_HEAP_BYTES, what: `wasm's ${bytesText(WASM_HEAP_BYTES)} heap` };
    return machine !== null && machine.bytes < heap.bytes ? machine : heap;
  }
  if (backend === "cpu" || backend === "tensorflow") return machine;
  // webgpu: the device's memory is not visible here (a GPU's own, or the machine's on lavapipe);
  // every tensor also passes through the machine's memory on its way in and out.
  return machine === null ? null : {
    bytes: machine.bytes,
    what: `${machine.what} (webgpu's device memory is not known here)`,
  };
}

/** The recipe field a stage's size comes from, where an issue points. */
const FIELD: Record<MemoryStage, string> = {
  "warm start": "policy.warmStart.batchSize",
  eval: "eval.limit",
  sample: "group",
  "log-probs": "miniBatches",
  update: "miniBatches",
};

/** Each stage as the subject of a sentence. */
const SUBJECT: Record<MemoryStage, string> = {
  "warm start": "the warm start",
  eval: "evaluation",
  sample: "sampling",
  "log-probs": "the log-probability pass",
  update: "the update",
};

/**
 * How to make `peak` fit in `budget` bytes: the stage's own knob first (the largest warm-start
 * batch, the fewest mini-batches, the most eval problems that fit), then shorter sequences, then
 * the cpu backend where the machine (`machineBytes`, when known) holds the stage.
 */
export function memoryFix(
  plan: MemoryPlan,
  peak: StagePeak,
  budget: number,
  machineBytes?: number,
): string {
  const { shapes, schedule } = plan;
  const fixes: string[] = [];
  const scaled = (rows: number) =>
    stagePeaks(withRows(plan, peak.stage, rows))
      .find((p) => p.stage === peak.stage)!.bytes;
  if (peak.stage === "warm start") {
    const fits = largest(peak.rows - 1, (b) => scaled(b) <= budget);
    if (fits > 0) fixes.push(`set policy.warmStart.batchSize to ${fits} or less`);
  } else if (peak.stage === "update" || peak.stage === "log-probs") {
    const P = shapes.prompts;
    const more = divisorsOf(P).filter((m) => m > schedule.miniBatches);
    const fits = more.find((m) => scaled((P / m) * shapes.groupSize) <= budget);
    if (fits !== undefined) {
      fixes.push(
        `set miniBatches to ${fits} (${(P / fits) * shapes.groupSize} rows per update)`,
      );
    }
  } else if (peak.stage === "eval") {
    const fits = largest(peak.rows - 1, (n) => scaled(n) <= budget);
    if (fits > 0) fixes.push(`set eval.limit to ${fits} or less`);
  } else {
    fixes.push(`lower group.prompts (${shapes.prompts}) or group.size (${shapes.groupSize})`);
  }
  const data = plan.recipe.data;
  const shorter = [
    ...(data.kind === "jsonl" ? [`data.maxPromptTokens (${shapes.promptTokens})`] : []),
    `sampling.maxNewTokens (${shapes.newTokens})`,
  ];
  fixes.push(`shorten sequences of ${shapes.sequenceTokens} tokens with ${shorter.join(" or ")}`);
  const machineHolds = machineBytes === undefined || peak.bytes * FRAGMENTATION <= machineBytes;
  if (plan.backend.name === "wasm" && machineHolds) {
    fixes.push("use backend 'cpu' (no heap limit, slower)");
  }
  return fixes.length === 1 ? fixes[0]! : `${fixes.slice(0, -1).join(", ")}, or ${fixes.at(-1)}`;
}

/**
 * The memory issues of a plan: an error for a stage whose estimate, grown by
 * {@linkcode FRAGMENTATION}, exceeds what the backend holds (it would run out of memory), a
 * warning for one over half of it; each with the fix. `machineBytes` is the machine's memory,
 * when known.
 *
 * @example
 * ```ts
 * const { errors, warnings } = memoryIssues(plan, Deno.systemMemoryInfo().total);
 * ```
 */
export function memoryIssues(
  plan: MemoryPlan,
  machineBytes?: number,
): { errors: Issue[]; warnings: Issue[] } {
  const errors: Issue[] = [];
  const warnings: Issue[] = [];
  const limit = memoryLimit(plan.backend.name, machineBytes);
  if (limit === null) return { errors, warnings };
  // One issue per field, for the largest of its stages (miniBatches sizes two), in run order.
  const byField = new Map<string, StagePeak>();
  for (const peak of stagePeaks(plan)) {
    const other = byField.get(FIELD[peak.stage]);
    if (other === undefined || peak.bytes > other.bytes) byField.set(FIELD[peak.stage], peak);
  }
  const failing = [...byField.values()].filter((p) => p.bytes * FRAGMENTATION > limit.bytes);
  const stuck = failing.filter((p) => !fewerRowsFit(plan, p, limit.bytes / 2));
  if (stuck.length > 0) {
    // The sequences are too long for any batch: one error, on the length, whatever else fails.
    errors.push(lengthIssue(plan, failing, limit, machineBytes));
    return { errors, warnings };
  }
  for (const peak of byField.values()) {
    if (peak.bytes <= limit.bytes / 2) continue;
    const what = `${SUBJECT[peak.stage]}'s estimated peak of ${bytesText(peak.bytes)} ` +
      `(${plural(peak.rows, "row")} of ${peak.tokens} tokens)`;
    if (peak.bytes * FRAGMENTATION > limit.bytes) {
      errors.push({
        path: FIELD[peak.stage],
        message: `${what} does not fit ${limit.what} once a run's memory fragments ` +
          `(up to ${FRAGMENTATION}× the estimate)`,
        hint: memoryFix(plan, peak, limit.bytes / 2, machineBytes),
      });
    } else {
      warnings.push({
        path: FIELD[peak.stage],
        message: `${what} is over half of ${limit.what}, and a run's memory fragments to up ` +
          `to ${FRAGMENTATION}× the estimate: it may run out`,
        hint: memoryFix(plan, peak, limit.bytes / 2, machineBytes),
      });
    }
  }
  return { errors, warnings };
}

/** The fewest rows each stage can run at once: one problem, or one group. */
function fewestRows(plan: MemoryPlan, stage: MemoryStage): number {
  return stage === "warm start" || stage === "eval" ? 1 : plan.shapes.groupSize;
}

/** Whether `peak`'s stage fits `budget` bytes at its fewest rows, its sequences unchanged. */
function fewerRowsFit(plan: MemoryPlan, peak: StagePeak, budget: number): boolean {
  const rows = fewestRows(plan, peak.stage);
  const fewest = stagePeaks(withRows(plan, peak.stage, rows)).find((p) => p.stage === peak.stage)!;
  return fewest.bytes <= budget;
}

/**
 * The one error of a plan some of whose `failing` stages would not fit `limit` at any batch size:
 * it names the largest, and `sampling.maxNewTokens` with the longest completions at which every
 * stage fits half the limit (no warning), or, where none does, that stage's own fixes.
 */
function lengthIssue(
  plan: MemoryPlan,
  failing: StagePeak[],
  limit: MemoryLimit,
  machineBytes: number | undefined,
): Issue {
  const worst = failing.reduce((a, b) => (b.bytes > a.bytes ? b : a));
  const what = `${SUBJECT[worst.stage]}'s estimated peak of ${bytesText(worst.bytes)} ` +
    `(${plural(worst.rows, "row")} of ${worst.tokens} tokens) does not fit ${limit.what} ` +
    `once a run's memory fragments (up to ${FRAGMENTATION}× the estimate)`;
  const { shapes } = plan;
  const fits = largest(
    shapes.newTokens - 1,
    (n) => stagePeaks(withNewTokens(plan, n)).every((p) => p.bytes <= limit.bytes / 2),
  );
  if (fits > 0) {
    return {
      path: "sampling.maxNewTokens",
      message: `${what}, even ${fewestRows(plan, worst.stage) === 1 ? "one row" : "one group"} ` +
        `at a time with sequences of ${shapes.sequenceTokens} tokens`,
      hint: `set sampling.maxNewTokens to ${fits} or less (sequences of ` +
        `${shapes.promptTokens + fits} tokens at these batch sizes)`,
    };
  }
  return {
    path: FIELD[worst.stage],
    message: what,
    hint: memoryFix(plan, worst, limit.bytes / 2, machineBytes),
  };
}

/** The plan with completions of at most `newTokens` tokens (for trying a fix), as compiled. */
function withNewTokens(plan: MemoryPlan, newTokens: number): MemoryPlan {
  const { model, shapes } = plan;
  const T = shapes.promptTokens + newTokens;
  const m = plan.budget.perStep.peakBytes;
  // compile()'s update peak: the larger of the update's activations and the sampler's cache.
  const activations = Math.max(
    2 * activationBytes(model, shapes.miniBatchRows, T),
    samplingBytes(model, shapes.rows, T),
  );
  const peakBytes = { ...m, activations, total: m.total - m.activations + activations };
  return {
    ...plan,
    shapes: { ...shapes, newTokens, sequenceTokens: T },
    budget: { ...plan.budget, perStep: { ...plan.budget.perStep, peakBytes } },
  };
}

/** The plan with `stage` run on `rows` rows at once (for trying a fix). */
function withRows(plan: MemoryPlan, stage: MemoryStage, rows: number): MemoryPlan {
  const { model, shapes, schedule } = plan;
  switch (stage) {
    case "warm start":
      // Only a tinyGpt is warm-started.
      return model.kind === "tinyGpt"
        ? { ...plan, model: { ...model, warmStart: { ...model.warmStart!, batchSize: rows } } }
        : plan;
    case "eval":
      return { ...plan, schedule: { ...schedule, evalProblems: rows } };
    case "sample":
      return { ...plan, shapes: { ...shapes, rows } };
    case "log-probs":
    case "update": {
      const activations = 2 * activationBytes(model as ModelShape, rows, shapes.sequenceTokens);
      const m = plan.budget.perStep.peakBytes;
      const peakBytes = { ...m, activations, total: m.total - m.activations + activations };
      return {
        ...plan,
        shapes: { ...shapes, miniBatchRows: rows },
        budget: { ...plan.budget, perStep: { ...plan.budget.perStep, peakBytes } },
      };
    }
  }
}

/** The largest n in [1, from] with `ok(n)` (ok is monotone: true up to some n), or 0. */
function largest(from: number, ok: (n: number) => boolean): number {
  let lo = 0;
  let hi = from;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (ok(mid)) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

function divisorsOf(n: number): number[] {
  const out: number[] = [];
  for (let k = 1; k <= n; k++) if (n % k === 0) out.push(k);
  return out;
}
