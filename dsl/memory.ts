/**
 * The memory a plan needs, stage by stage, held against what the backend can hold: wasm's heap
 * of 4 GiB (32-bit addresses), and the machine's memory when the caller says how much there is.
 *
 * The plan's `budget.perStep.peakBytes` is the update's peak alone; a run also holds the warm
 * start's batch, the sampler's prefill and KV cache, the evaluation's batch of up to
 * {@linkcode EVAL_BATCH} problems and the log-probability passes, and any of them can be the
 * largest. Each estimate is the tensors the stage holds at its peak ({@linkcode updateActivations}
 * for the update's differentiated pass, {@linkcode forwardBytes} for one without gradients) plus
 * what stays resident ({@linkcode residentBytes}): the weights in float32, the trained parameters'
 * gradients and AdamW's two moments (with LoRA the adapters' alone) and the reference's frozen copy
 * (none for LoRA's 'initial', the base with the adapters off). Activation checkpointing keeps the
 * blocks' inputs and recomputes one block at a time; micro-batches size the pass to their rows
 * and add the gradients' running sum. Measured against the wasm heap (bench/RESULTS.md,
 * 2026-12-03), one step came within 5% of its estimate, and further steps grew the heap by up to
 * {@linkcode FRAGMENTATION} as the allocator fragments it (the heap never shrinks).
 *
 * @module
 */

import {
  activationBytes,
  DEFAULT_LORA,
  EVAL_BATCH,
  floatBytes,
  forwardBytes,
  LARGE_VOCAB,
  loraParamCount,
  type LoraShape,
  type ModelShape,
  projectionDims,
  samplingBytes,
  type UpdateActivations,
  updateActivations,
} from "./budget.ts";
import { bytesText, plural } from "./format.ts";
import type { Issue } from "./issues.ts";
import { type BackendName, logProbPasses, type Plan } from "./plan.ts";

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
  "backend" | "model" | "shapes" | "schedule" | "reference" | "objective" | "recipe" | "update"
>;

/**
 * Everything the estimate of a step reads, explicit: {@linkcode memoryInputs} takes it from a
 * plan; the bench writes its own (bench/_configs.ts).
 */
export interface MemoryInputs {
  /** The model's dimensions and every parameter of it (the base's, with LoRA). */
  model: ModelShape & { params: number };
  /** The adapters, when only they train; null when every parameter does. */
  lora: (LoraShape & { params: number }) | null;
  /**
   * Whether the reference is a frozen copy of the weights: 'initial' without LoRA, or a
   * checkpoint. With LoRA, 'initial' is the base with the adapters off: no copy.
   */
  referenceCopy: boolean;
  /** Rows sampled at once (B). */
  rows: number;
  /** Rows of one update's mini-batch: each log-probability pass takes them at once. */
  updateRows: number;
  /** Rows of one differentiated pass: a micro-batch, or the whole mini-batch. */
  passRows: number;
  /** Micro-batches per update: with more than one, their gradients are summed in another copy. */
  microBatches: number;
  promptTokens: number;
  newTokens: number;
  /** The update recomputes each block in its backward pass. */
  gradientCheckpointing: boolean;
}

/** The update's peak in parts, as `plan.budget.perStep.peakBytes` has them. */
export type PeakBytes = Plan["budget"]["perStep"]["peakBytes"];

/**
 * What the estimate reads of `plan` (see {@linkcode MemoryInputs}).
 *
 * @example
 * ```ts
 * memoryInputs(compile(recipe)).passRows; // plan.update?.microBatchRows ?? plan.shapes.miniBatchRows
 * ```
 */
export function memoryInputs(
  plan: Omit<MemoryPlan, "backend" | "objective" | "recipe" | "schedule">,
): MemoryInputs {
  const { model, shapes, update } = plan;
  const lora = model.kind === "hfModel" && model.lora !== undefined
    ? { rank: model.lora.rank, targets: model.lora.targets, params: model.lora.params }
    : null;
  const frozen = plan.reference.kind === "initial" || plan.reference.kind === "checkpoint";
  return {
    model,
    lora,
    referenceCopy: frozen && !(lora !== null && plan.reference.kind === "initial"),
    rows: shapes.rows,
    updateRows: shapes.miniBatchRows,
    passRows: update?.microBatchRows ?? shapes.miniBatchRows,
    microBatches: update?.microBatches ?? 1,
    promptTokens: shapes.promptTokens,
    newTokens: shapes.newTokens,
    gradientCheckpointing: update?.gradientCheckpointing ?? false,
  };
}

/**
 * What stays in memory through a step: the weights (float32: the base's and the adapters'), the
 * trained parameters' gradients and AdamW's two moments (the adapters' alone with LoRA), and the
 * reference's frozen copy when it has one.
 */
export function residentBytes(
  inputs: MemoryInputs,
): { weights: number; optimizer: number; reference: number } {
  const adapters = inputs.lora?.params ?? 0;
  const trained = inputs.lora === null ? inputs.model.params : adapters;
  return {
    weights: floatBytes(inputs.model.params + adapters),
    optimizer: 3 * floatBytes(trained),
    reference: inputs.referenceCopy ? floatBytes(inputs.model.params) : 0,
  };
}

/** The activations of one differentiated pass of the update (`updateActivations`). */
export function passActivations(inputs: MemoryInputs): UpdateActivations {
  return updateActivations(inputs.model, {
    rows: inputs.passRows,
    promptTokens: inputs.promptTokens,
    newTokens: inputs.newTokens,
    gradientCheckpointing: inputs.gradientCheckpointing,
    lora: inputs.lora,
  });
}

/**
 * The update's peak (`plan.budget.perStep.peakBytes`): what stays resident, with micro-batches a
 * second copy of the trained parameters' gradients (their running sum beside a micro-batch's),
 * and the larger of the differentiated pass's activations and sampling's KV cache.
 *
 * @example
 * ```ts
 * updatePeakBytes(memoryInputs(plan)).total === plan.budget.perStep.peakBytes.total; // true
 * ```
 */
export function updatePeakBytes(inputs: MemoryInputs): PeakBytes {
  const resident = residentBytes(inputs);
  const sum = inputs.microBatches > 1 ? resident.optimizer / 3 : 0;
  const T = inputs.promptTokens + inputs.newTokens;
  const activations = Math.max(
    passActivations(inputs).total,
    samplingBytes(inputs.model, inputs.rows, T),
  );
  const peak = { ...resident, optimizer: resident.optimizer + sum, activations, total: 0 };
  peak.total = peak.weights + peak.optimizer + peak.reference + peak.activations;
  return peak;
}

/**
 * Bytes of sampling (or greedy evaluation) of `rows` rows on `backend`: what stays resident, the
 * KV cache and the decoder's own. Below {@linkcode LARGE_VOCAB}, and on webgpu and tensorflow,
 * that of tfjs's decoder: the prefill's forward pass over the prompts, every intermediate of every
 * layer counted (an upper bound: `forward()` frees each block's when it is done; the larger,
 * where OpenBLAS's decoder would run). From it, on wasm and cpu, that of OpenBLAS's decoder
 * (runtime/engine/kernels/decode.ts), which runs outside tfjs's tensors: one layer of the prefill
 * at a time in its own memory, and, on cpu, its copy of the weights
 * ({@linkcode decoderWeightCopyBytes}; on wasm it reads them in the heap, in place). With LoRA,
 * the adapted projections merged ({@linkcode mergedBytes}). Without OpenBLAS (no `--allow-ffi`),
 * such a model samples through tfjs's decoder, which this does not count.
 */
export function decodeBytes(inputs: MemoryInputs, rows: number, backend: BackendName): number {
  const { model, promptTokens: P } = inputs;
  const T = P + inputs.newTokens;
  const blas = model.vocab >= LARGE_VOCAB && (backend === "wasm" || backend === "cpu");
  const decoder = blas
    ? forwardBytes({ ...model, layers: 1 }, rows, P, { logitPositions: 1, lora: inputs.lora }) +
      (backend === "cpu" ? decoderWeightCopyBytes(inputs) : 0)
    : forwardBytes(model, rows, P, { logitPositions: 1, lora: inputs.lora });
  return samplingTensorBytes(inputs) + decoder + samplingBytes(model, rows, T);
}

/** The tensors sampling holds whatever its decoder: what stays resident, and LoRA's merged ones. */
function samplingTensorBytes(inputs: MemoryInputs): number {
  const r = residentBytes(inputs);
  return r.weights + r.optimizer + r.reference + mergedBytes(inputs);
}

/**
 * Bytes of the adapted projections with LoRA's adapters merged in (W + s·A·B), which sampling and
 * evaluation run on (`policyWeights()`, runtime/rl/train_step.ts) beside the frozen base; none
 * without LoRA.
 */
export function mergedBytes(inputs: MemoryInputs): number {
  const { lora, model } = inputs;
  if (lora === null) return 0;
  const perLayer = lora.targets.reduce((n, t) => {
    const [inputs, outputs] = projectionDims(model, t);
    return n + inputs * outputs;
  }, 0);
  return floatBytes(model.layers * perLayer);
}

/**
 * Bytes of a log-probability pass without gradients (π_old, the frozen reference) beyond what
 * stays resident: it runs the update's passes, a micro-batch of rows at a time, and `forward()`
 * frees each block's intermediates when the block is done, so one block's and the residual stream
 * beside them are live, then the logits at the completion's positions and the log-softmax's chunks.
 */
export function logProbBytes(inputs: MemoryInputs): number {
  const { model, passRows: rows, promptTokens: P, newTokens: C } = inputs;
  const T = P + C;
  const block = forwardBytes({ ...model, layers: 1 }, rows, T, {
    logitPositions: C,
    lora: inputs.lora,
  });
  return block + floatBytes(rows * T * model.dModel);
}

/**
 * Bytes of the copy of the weights OpenBLAS's decoder reads its products from on the cpu backend
 * (JavaScript arrays, one per tensor read): the weights, the adapters' merged in where LoRA is on.
 */
export function decoderWeightCopyBytes(inputs: MemoryInputs): number {
  return floatBytes(inputs.model.params);
}

/** A process's estimated peak, in parts (see {@linkcode processPeakBytes}). */
export interface ProcessPeak {
  /** The update's peak (`updatePeakBytes`). */
  update: number;
  /** Sampling's (`decodeBytes`), the decoder's own memory included. */
  sample: number;
  /**
   * OpenBLAS's decoder's own memory (its layer of the prefill, the KV cache, a row of logits
   * each), where it is beside the tensors' heap (wasm), or 0.
   */
  decoder: number;
  /** The tensors' peak (the larger of the update's and sampling's), plus the decoder's own. */
  total: number;
}

/**
 * What a process that runs one update and samples `inputs.rows` rows on `backend` holds at its
 * peak, as the bench's giftwrap worker does. On wasm with OpenBLAS's decoder (a vocabulary of
 * {@linkcode LARGE_VOCAB} or more): the heap grows to the larger of the update and sampling's
 * tensors (the weights, the optimiser's state, LoRA's merged projections) and never shrinks, and
 * the decoder's memory, its own wasm memory, kept for the next call, sits beside it. Elsewhere the
 * larger of the two stages. Its resident set also holds the runtime (Deno, tfjs, V8's own heap)
 * and the heap's fragmentation (up to {@linkcode FRAGMENTATION}), which this leaves out.
 *
 * @example
 * ```ts
 * processPeakBytes(inputs, "wasm").total; // to set beside the worker's VmHWM
 * ```
 */
export function processPeakBytes(inputs: MemoryInputs, backend: BackendName): ProcessPeak {
  const update = updatePeakBytes(inputs).total;
  const sample = decodeBytes(inputs, inputs.rows, backend);
  if (backend !== "wasm" || inputs.model.vocab < LARGE_VOCAB) {
    return { update, sample, decoder: 0, total: Math.max(update, sample) };
  }
  const tensors = samplingTensorBytes(inputs);
  const decoder = sample - tensors;
  return { update, sample, decoder, total: Math.max(update, tensors) + decoder };
}

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
  const inputs = memoryInputs(plan);
  const { weights, optimizer, reference } = residentBytes(inputs);
  const resident = weights + optimizer + reference;
  const peaks: StagePeak[] = [];
  const w = model.warmStart;
  if (w !== null && w.sftSteps > 0) {
    const bytes = weights + optimizer + 2 * activationBytes(model, w.batchSize, T);
    peaks.push({ stage: "warm start", bytes, rows: w.batchSize, tokens: T });
  }
  if (schedule.evalProblems > 0) {
    const rows = Math.min(schedule.evalProblems, EVAL_BATCH);
    peaks.push({
      stage: "eval",
      bytes: decodeBytes(inputs, rows, plan.backend.name),
      rows,
      tokens: T,
    });
  }
  peaks.push({
    stage: "sample",
    bytes: decodeBytes(inputs, shapes.rows, plan.backend.name),
    rows: shapes.rows,
    tokens: T,
  });
  // A separate pass reads π_old (a ratio, or the rollout reference, over several optimiser steps
  // per batch) or the frozen reference, as compile() lowers them, over the update's passes.
  const passes = logProbPasses(plan);
  if (passes.old || passes.reference) {
    const bytes = resident + logProbBytes(inputs);
    peaks.push({ stage: "log-probs", bytes, rows: inputs.passRows, tokens: T });
  }
  peaks.push({
    stage: "update",
    bytes: updatePeakBytes(inputs).total,
    rows: inputs.passRows,
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

/** A change of the plan that may make a stage fit: what to tell the user, and the changed plan. */
interface Change {
  text: string;
  plan: MemoryPlan;
}

/**
 * How to make `peak` fit in `budget` bytes: the stage's own knob first (the largest warm-start
 * batch, the most eval problems that fit; for the update activation checkpointing or the fewest
 * micro-batches, then the fewest mini-batches), then LoRA for a Hugging Face policy without it
 * where nothing before fits, then shorter sequences, then the cpu backend where the machine
 * (`machineBytes`, when known) holds the stage. Every knob named with a value fits by the
 * estimate, and with `limitBytes` leaves every stage the same field sizes (miniBatches: the update
 * and the log-probability pass) compiling. Where nothing fits `budget`, the first checkpointing, micro-batches or LoRA change
 * that compiles against `limitBytes` (its estimate grown by {@linkcode FRAGMENTATION} within
 * them, with a warning), when given, is named, and said to be over half.
 */
export function memoryFix(
  plan: MemoryPlan,
  peak: StagePeak,
  budget: number,
  machineBytes?: number,
  limitBytes?: number,
): string {
  const { shapes, schedule } = plan;
  const fixes: string[] = [];
  // A change fits when the issue's stage fits `budget` and, when the limit is given, every stage
  // the same field sizes compiles (miniBatches: the update and the log-probability pass), so that
  // fixing one does not leave the other over the limit.
  const fieldPeaks = (changed: MemoryPlan) =>
    stagePeaks(changed).filter((p) => FIELD[p.stage] === FIELD[peak.stage]);
  const compiles = (changed: MemoryPlan) =>
    limitBytes === undefined ||
    fieldPeaks(changed).every((p) => p.bytes * FRAGMENTATION <= limitBytes);
  const bytesOf = (changed: MemoryPlan) =>
    stagePeaks(changed).find((p) => p.stage === peak.stage)?.bytes ?? 0;
  const clears = (changed: MemoryPlan) => bytesOf(changed) <= budget && compiles(changed);
  const scaled = (rows: number) => bytesOf(withRows(plan, peak.stage, rows));
  const fitting = (changes: Change[], ok: (changed: MemoryPlan) => boolean) =>
    changes.find((c) => ok(c.plan));
  // Checkpointing, micro-batches and LoRA, each the least change that fits, in that order.
  // (The log-probability passes run a micro-batch's rows at a time: micro-batches shrink them too.)
  const knobs: Change[][] = peak.stage === "update" || peak.stage === "log-probs"
    ? updateChanges(plan)
    : [];
  const lora = loraChanges(plan, peak.stage);
  let fitted = false;
  if (peak.stage === "warm start") {
    const fits = largest(peak.rows - 1, (b) => scaled(b) <= budget);
    if (fits > 0) fixes.push(`set policy.warmStart.batchSize to ${fits} or less`);
    fitted = fits > 0;
  } else if (peak.stage === "update" || peak.stage === "log-probs") {
    // Checkpointing and micro-batches, each alone; both together only where neither fits alone.
    for (const family of knobs) {
      const fix = fitting(family, clears);
      if (fix !== undefined && !(family === knobs[2] && fixes.length > 0)) fixes.push(fix.text);
    }
    const P = shapes.prompts;
    const micro = plan.update?.microBatches ?? 1;
    const more = divisorsOf(P).filter((m) => m > schedule.miniBatches && (P / m) % micro === 0);
    const fits = more.find((m) => scaled((P / m) * shapes.groupSize) <= budget);
    if (fits !== undefined) {
      fixes.push(
        `set miniBatches to ${fits} (${(P / fits) * shapes.groupSize} rows per update)`,
      );
    }
    fitted = fixes.length > 0;
  } else if (peak.stage === "eval") {
    const fits = largest(peak.rows - 1, (n) => scaled(n) <= budget);
    if (fits > 0) fixes.push(`set eval.limit to ${fits} or less`);
    fitted = fits > 0;
  } else {
    fixes.push(`lower group.prompts (${shapes.prompts}) or group.size (${shapes.groupSize})`);
    fitted = scaled(shapes.groupSize) <= budget;
  }
  if (!fitted) {
    // Nothing above fits without a warning: the least change that compiles at all (when the
    // limit is given), and LoRA where the policy can take it.
    const loosely = (changed: MemoryPlan) => limitBytes !== undefined && compiles(changed);
    const loose = (c: Change | undefined) =>
      c === undefined ? [] : [`${c.text} (still over half: it may run out)`];
    const knob = knobs.map((family) => fitting(family, loosely)).find((c) => c);
    fixes.push(...loose(knob));
    const adapted = fitting(lora, clears);
    fixes.push(...(adapted ? [adapted.text] : loose(fitting(lora, loosely))));
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

/** Whether the objective's loss can be split into micro-batches (runtime/rl/micro_batches.ts). */
function microBatchable(plan: MemoryPlan): boolean {
  const { axes } = plan.objective;
  return axes.loss !== "custom" && axes.aggregation !== "pair-mean";
}

/** The plan with `microBatches` micro-batches per update and checkpointing on or off. */
function withUpdate(plan: MemoryPlan, microBatches: number, checkpointing: boolean): MemoryPlan {
  return {
    ...plan,
    update: {
      microBatches,
      microBatchRows: plan.shapes.miniBatchRows / microBatches,
      gradientCheckpointing: checkpointing,
    },
  };
}

/**
 * The update's own changes, least first, in families: activation checkpointing (where it is
 * off); the fewest micro-batches (whole groups); and, where checkpointing is off, both.
 */
function updateChanges(plan: MemoryPlan, prefix = ""): Change[][] {
  const groups = plan.shapes.miniBatchGroups;
  const micro = plan.update?.microBatches ?? 1;
  const on = plan.update?.gradientCheckpointing ?? false;
  const ks = microBatchable(plan) ? divisorsOf(groups).filter((k) => k > micro) : [];
  const rows = (k: number) => (groups / k) * plan.shapes.groupSize;
  const families: Change[][] = [];
  if (!on) {
    families.push([{
      text: `${prefix}set gradientCheckpointing: true`,
      plan: withUpdate(plan, micro, true),
    }]);
  }
  families.push(ks.map((k) => ({
    text: `${prefix}set microBatches to ${k} (${plural(rows(k), "row")} at a time)`,
    plan: withUpdate(plan, k, on),
  })));
  if (!on) {
    families.push(ks.map((k) => ({
      text: `${prefix}set gradientCheckpointing: true and microBatches to ${k} ` +
        `(${plural(rows(k), "row")} at a time)`,
      plan: withUpdate(plan, k, true),
    })));
  }
  return families;
}

/**
 * Adding LoRA (PEFT's defaults, `lora()`) to a Hugging Face policy without it, and for the update
 * with its own changes: the frozen base then has no gradients, no AdamW state and, with reference
 * 'initial', no copy. None for any other policy.
 */
function loraChanges(plan: MemoryPlan, stage: MemoryStage): Change[] {
  const { model } = plan;
  if (model.kind !== "hfModel" || model.lora !== undefined) return [];
  const { rank, targets } = DEFAULT_LORA;
  const adapted: MemoryPlan = {
    ...plan,
    model: {
      ...model,
      lora: {
        rank,
        alpha: rank,
        scale: 1,
        dropout: 0,
        targets: [...targets],
        params: loraParamCount(model, DEFAULT_LORA),
        adapter: null,
        saveMerged: false,
      },
    },
  };
  const text = "add lora() to the policy";
  const alone = [{ text, plan: adapted }];
  if (stage !== "update") return alone;
  return [alone, ...updateChanges(adapted, `${text} and `)].flat();
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
        hint: memoryFix(plan, peak, limit.bytes / 2, machineBytes, limit.bytes),
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

/**
 * Whether `peak`'s stage fits `budget` bytes at its fewest rows, its sequences unchanged; the
 * update also with activation checkpointing, and a stage with LoRA where it can be added.
 */
function fewerRowsFit(plan: MemoryPlan, peak: StagePeak, budget: number): boolean {
  const fewest = withRows(plan, peak.stage, fewestRows(plan, peak.stage));
  const tries = [fewest];
  if (peak.stage === "update") tries.push(withUpdate(fewest, 1, true));
  tries.push(...loraChanges(fewest, peak.stage).map((c) => c.plan));
  return tries.some((p) =>
    (stagePeaks(p).find((s) => s.stage === peak.stage)?.bytes ?? 0) <= budget
  );
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
    hint: memoryFix(plan, worst, limit.bytes / 2, machineBytes, limit.bytes),
  };
}

/** The plan with completions of at most `newTokens` tokens (for trying a fix). */
function withNewTokens(plan: MemoryPlan, newTokens: number): MemoryPlan {
  const { shapes } = plan;
  const T = shapes.promptTokens + newTokens;
  return { ...plan, shapes: { ...shapes, newTokens, sequenceTokens: T } };
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
      const G = shapes.groupSize;
      const changed = {
        ...plan,
        shapes: { ...shapes, miniBatchRows: rows, miniBatchGroups: rows / G },
      };
      if (plan.update === undefined) return changed;
      // A micro-batch keeps its rows where the mini-batch still holds them.
      const micro = Math.min(plan.update.microBatchRows, rows);
      return {
        ...changed,
        update: { ...plan.update, microBatches: Math.ceil(rows / micro), microBatchRows: micro },
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
