/**
 * One RL step, as straight-line code: sample → score → old/reference log-probs → advantages →
 * update. What runs is decided by the plan (its log-prob passes and the objective's axes), never
 * by the objective's name: the objective is a loss function over a batch of whole groups.
 *
 * Log-probabilities that must equal the policy's where it has not moved (π_old, a frozen π_ref at
 * step 0) are computed in the update's mini-batches with the update's shapes, so that GIFT's
 * implicit reward u is exactly 0 there rather than float noise divided by ε (docs/objectives.md).
 *
 * @module
 */

import { logProbPasses, type Plan } from "../../dsl/plan.ts";
import { tf } from "../engine/backend.ts";
import type { KernelSet } from "../engine/kernels/types.ts";
import type { Task } from "../data/task.ts";
import type { Problem } from "../data/types.ts";
import { type ModelConfig, type Params, tokenLogProbs } from "../engine/model/transformer.ts";
import { type LoraAdapters, mergeLora } from "../engine/model/lora.ts";
import type { Objective } from "./objectives/types.ts";
import { advantages, klK3 } from "./objectives/axes.ts";
import { microBatchWeighting, updateGradients } from "./micro_batches.ts";
import { type AdamW, adamWStep, deviceUpdates } from "../engine/optim.ts";
import type { Rng } from "../engine/random.ts";
import type { Scores, SourceScorer } from "./rewards/mod.ts";
import { sampleGroups } from "./groups.ts";
import type { Completions } from "./sample.ts";
import type { SampleGroup } from "../run/run_dir.ts";

export type { SampleGroup };

/** Everything a step reads and updates. */
export interface Run {
  plan: Plan;
  /** The backend's kernel set (`useBackend()`'s): the model's, the optimiser's, the sampler's. */
  kernels: KernelSet;
  config: ModelConfig;
  task: Task;
  /**
   * The policy's weights: the variables trained, or, with LoRA (`adapters`), the frozen base as
   * plain tensors, which no gradient reaches.
   */
  params: Params;
  /**
   * LoRA adapters on `params` (`plan.model.lora`), the only tensors trained and the only ones in
   * `optimizer`; absent or null for full fine-tuning. See {@linkcode trainedParams}.
   */
  adapters?: LoraAdapters | null;
  /**
   * A frozen reference policy (`initial` or a checkpoint); null for `rollout` or `none`. With
   * LoRA, `initial` is the base with the adapters off: `params` itself, no copy.
   */
  reference: Params | null;
  /**
   * The policy as it started RL, frozen, when the run tracks KL to it (`klInitial`); the same
   * tensors as `reference` when that is `initial` (with LoRA, the base: `params`).
   */
  initial: Params | null;
  optimizer: AdamW;
  /** The reward sources, ready to score. */
  sources: SourceScorer[];
  objective: Objective<unknown>;
  /** What `objective.loss` gets as options: the plan's, or a custom objective's own. */
  objectiveOptions: unknown;
  /** Draws the completions' tokens. */
  sampleRng: Rng;
  /** Orders the train problems. */
  promptRng: Rng;
  /** The order the train problems are visited in, and the next position in it. */
  cursor: { order: number[]; next: number };
  /** Updates skipped for a non-finite loss or gradient: the current run of them, and in all. */
  faults: { inRow: number; total: number };
}

/**
 * `optimizer.maxSkippedUpdates` updates in a row had a non-finite loss or gradient: the run stops
 * rather than train on garbage. The policy is the one before those updates (none was applied).
 *
 * @example
 * ```ts
 * try {
 *   await execute(plan);
 * } catch (e) {
 *   if (e instanceof NonFiniteUpdateError) console.error(`stopped at step ${e.step}`);
 * }
 * ```
 */
export class NonFiniteUpdateError extends Error {
  constructor(readonly step: number, readonly count: number, detail: string) {
    super(
      `Stopped at step ${step}: ${count} updates in a row had a non-finite ${detail}, so none ` +
        "was applied (optimizer.maxSkippedUpdates)",
    );
    this.name = "NonFiniteUpdateError";
  }
}

/**
 * The variables a run trains, AdamW's: its LoRA adapters' A and B, else the policy's weights
 * (variables then: `startPolicy()` and `initParams()` make them so).
 *
 * @example
 * ```ts
 * const optimizer = adamW(trainedParams(run), plan.optimizer, totalUpdates);
 * ```
 */
export function trainedParams(
  run: Pick<Run, "params" | "adapters">,
): Record<string, tf.Variable> {
  return run.adapters?.params ?? (run.params as Record<string, tf.Variable>);
}

/**
 * The policy's weights as the sampler and evaluation read them, which take full weights: `params`
 * itself, or with LoRA the adapters merged in (W + s·A·B, `mergeLora()`), made for the call and
 * freed by `release()`.
 *
 * @example
 * ```ts
 * const policy = policyWeights(run.params, run.adapters);
 * try {
 *   await evaluate(run.kernels, policy.weights, run.config, tokenizer, problems, metric, shapes);
 * } finally {
 *   policy.release();
 * }
 * ```
 */
export function policyWeights(
  params: Params,
  adapters: LoraAdapters | null | undefined,
): { weights: Params; release(): void } {
  if (!adapters) return { weights: params, release() {} };
  const weights = mergeLora(params, adapters);
  return {
    weights,
    release() {
      tf.dispose(Object.entries(weights).filter(([n, t]) => params[n] !== t).map(([, t]) => t));
    },
  };
}

/**
 * One line of `metrics.jsonl` (eval fields are added on the steps that evaluate).
 *
 * @example
 * ```ts
 * const { metrics } = await execute(plan);
 * for (const m of metrics) console.log(m.step, m.rewardMean, m.loss, m.kl, m.objective);
 * ```
 */
export interface StepMetrics {
  step: number;
  /** Mean and standard deviation (population) of the total reward over the batch. */
  rewardMean: number;
  rewardStd: number;
  /** Mean and standard deviation (population) of each reward source. */
  rewards: Record<string, { mean: number; std: number }>;
  /** Samples each source could not score this step (sources with none are left out). */
  rewardErrors: Record<string, number>;
  /** Fraction of groups left out of the update by a `"skip-group"` source. */
  skippedGroups: number;
  /** Fraction of completions the success signal scores 1 (null without one). */
  successRate: number | null;
  /** Fraction of groups whose rewards are all equal (no learning signal for GRPO-style losses). */
  zeroStdGroups: number;
  /**
   * k3 estimate of KL(π ‖ π_ref) per completion token, measured on each update's mini-batch just
   * before that update, mean over the step's updates (π_ref the rollout policy for `rollout`, so
   * there it is how far the step's earlier updates moved the policy); null without a reference.
   */
  kl: number | null;
  /**
   * k3 estimate of KL(π ‖ π_initial) per completion token at sampling time, π_initial the policy
   * as RL started; only when the run tracks it.
   */
  klInitial?: number;
  /** Mean entropy (nats) of the tempered distribution each completion token was drawn from. */
  entropy: number;
  /** DAPO: groups dropped for equal success rewards, and prompts sampled to replace them. */
  groupsDropped: number;
  promptsResampled: number;
  /** Mean completion length in tokens, and the fraction that hit maxNewTokens. */
  completionLength: number;
  truncated: number;
  /** Mean over the step's optimiser updates (null when one was not finite). */
  loss: number;
  /** The gradient's global norm before clipping (GIFT's all-equal groups scale it by ~1/ε). */
  gradNorm: number;
  /** The norm after clipping, what the update used: at most `optimizer.clipGradNorm`. */
  gradNormClipped: number;
  /** Updates of this step skipped because their loss or gradient was not finite. */
  skippedUpdates: number;
  lr: number;
  /** The objective's own diagnostics, mean over updates. */
  objective: Record<string, number>;
  sampleSeconds: number;
  stepSeconds: number;
  /** Completion tokens sampled per second of the whole step. */
  tokensPerSecond: number;
  evalAccuracy?: number;
  /** Greedy accuracy on as many train problems as the eval uses, when the run tracks it. */
  trainAccuracy?: number;
}

/** The next `count` train problems, reshuffling the split each time it is used up. */
function nextProblems(run: Run, count: number): Problem[] {
  const train = run.task.splits.train;
  const out: Problem[] = [];
  while (out.length < count) {
    if (run.cursor.next >= run.cursor.order.length) {
      run.cursor.order = run.promptRng.shuffle(train.map((_, i) => i));
      run.cursor.next = 0;
    }
    out.push(train[run.cursor.order[run.cursor.next++]!]!);
  }
  return out;
}

/** Rows [start, start + rows) of a batch as tensors, with the update's `mask` and `rewards`. */
function miniBatchTensors(
  batch: Completions,
  mask: Float32Array,
  rewards: Float32Array,
  start: number,
  rows: number,
) {
  const width = batch.promptLength + batch.newTokens;
  const C = batch.newTokens;
  return {
    ids: tf.tensor2d(
      batch.ids.slice(start * width, (start + rows) * width),
      [rows, width],
      "int32",
    ), // [b, P + C]
    mask: tf.tensor2d(mask.slice(start * C, (start + rows) * C), [rows, C]), // [b, C]
    rewards: tf.tensor1d(rewards.slice(start, start + rows)), // [b]
    padding: batch.padding.slice(start, start + rows),
  };
}

function mean(values: ArrayLike<number>): number {
  let sum = 0;
  for (let i = 0; i < values.length; i++) sum += values[i]!;
  return values.length === 0 ? 0 : sum / values.length;
}

/** Mean of `values` where `mask` is 1. */
function maskedMean(values: Float32Array, mask: Float32Array): number {
  let sum = 0;
  let count = 0;
  for (let i = 0; i < values.length; i++) {
    if (mask[i] === 0) continue;
    sum += values[i]!;
    count++;
  }
  return count === 0 ? 0 : sum / count;
}

function std(values: ArrayLike<number>): number {
  const m = mean(values);
  let sum = 0;
  for (let i = 0; i < values.length; i++) sum += (values[i]! - m) ** 2;
  return values.length === 0 ? 0 : Math.sqrt(sum / values.length);
}

/** Fraction of groups of `size` consecutive values that are all equal. */
function equalGroups(values: Float32Array, size: number): number {
  let equal = 0;
  const groups = values.length / size;
  for (let g = 0; g < groups; g++) {
    const first = values[g * size]!;
    let same = true;
    for (let i = 1; i < size && same; i++) same = values[g * size + i] === first;
    if (same) equal++;
  }
  return equal / groups;
}

/** Options of `trainStep()`. */
export interface TrainStepOptions {
  /** Return the step's first `log.sampleGroups` groups (for samples.jsonl). @default true */
  logSamples?: boolean;
  /**
   * Split each update's mini-batch into micro-batches of this many rows (whole groups) whose
   * gradients are accumulated (`updateGradients()`): the same update, one micro-batch's
   * activations alive at a time. @default the whole mini-batch
   */
  microBatchRows?: number;
  /** Recompute each transformer block in the update's backward pass (`tokenLogProbs()`). @default false */
  gradientCheckpointing?: boolean;
}

/** Runs one RL step on `run`, updating its policy and optimiser in place. */
export async function trainStep(
  run: Run,
  step: number,
  options: TrainStepOptions = {},
): Promise<{ metrics: StepMetrics; samples: SampleGroup[]; rewardErrors: Scores["errors"] }> {
  const { plan, config, task, params, kernels } = run;
  const adapters = run.adapters ?? null;
  const withAdapters = adapters ? { adapters } : {};
  const { prompts: P, groupSize: G, rows: B, promptTokens, newTokens: C } = plan.shapes;
  const { miniBatchRows } = plan.shapes;
  const temperature = plan.sampling.temperature > 0 ? plan.sampling.temperature : 1;
  const passes = logProbPasses(plan);
  const axes = plan.objective.axes;
  const started = performance.now();

  // 1) sample and 2) score: P prompts × G completions (a group is G consecutive rows), scored by
  // every reward source; with DAPO's dynamic sampling, groups without signal are replaced. The
  // sampler reads full weights: with LoRA, merged for this step's sampling only.
  const sampler = policyWeights(params, adapters);
  const { batch, samples, scores, groupsDropped, promptsResampled } = await sampleGroups(
    {
      kernels,
      params: sampler.weights,
      config,
      tokenizer: task.tokenizer,
      sampling: { ...plan.sampling, promptLength: promptTokens },
      sources: run.sources,
      rng: run.sampleRng,
      nextProblems: (count) => nextProblems(run, count),
    },
    P,
    G,
    axes.dynamicSampling,
  ).finally(() => sampler.release());
  const sampleSeconds = (performance.now() - started) / 1000;
  // A group a "skip-group" source could not score takes no part in the update: its mask is 0 and
  // its rewards are equal, so every objective gives it no gradient. DAPO may also mask out
  // truncated completions.
  const mask = batch.mask.slice(); // [B, C]
  const rewards = scores.total.slice(); // [B]
  scores.skippedGroups.forEach((skipped, g) => {
    if (!skipped) return;
    mask.fill(0, g * G * C, (g + 1) * G * C);
    rewards.fill(0, g * G, (g + 1) * G);
  });
  if (axes.maskTruncated) {
    batch.truncated.forEach((truncated, i) => truncated && mask.fill(0, i * C, (i + 1) * C));
  }

  // 3) old and reference log-probs: constants, in the update's mini-batches and shapes, down to
  // its micro-batches (a product's rounding may depend on how many rows it has). π_old is taken
  // with the adapters, as the update takes π; with LoRA the "initial" reference is the base,
  // `params` without them
  const passRows = Math.min(options.microBatchRows ?? miniBatchRows, miniBatchRows);
  const logProbsOf = (weights: Params, mb: ReturnType<typeof miniBatchTensors>, adapted: boolean) =>
    tf.tidy(() => {
      const rows = mb.padding.length;
      const parts: tf.Tensor2D[] = [];
      for (let at = 0; at < rows; at += passRows) {
        const n = Math.min(passRows, rows - at);
        const ids = n === rows ? mb.ids : tf.slice(mb.ids, [at, 0], [n, -1]); // [n, P + C]
        parts.push(tokenLogProbs(
          kernels,
          weights,
          config,
          ids,
          promptTokens,
          temperature,
          mb.padding.slice(at, at + n),
          adapted ? withAdapters : {},
        )); // [n, C]
      }
      return parts.length === 1 ? parts[0]! : tf.concat(parts, 0); // [b, C]
    });
  const miniBatches: (ReturnType<typeof miniBatchTensors> & {
    old: tf.Tensor2D | null;
    ref: tf.Tensor2D | null;
    start: number;
  })[] = [];
  for (let start = 0; start < B; start += miniBatchRows) {
    const mb = miniBatchTensors(batch, mask, rewards, start, miniBatchRows);
    const old = passes.old ? logProbsOf(params, mb, true) : null; // [b, C]
    const ref = run.reference && passes.reference ? logProbsOf(run.reference, mb, false) : null; // [b, C]
    miniBatches.push({ ...mb, old, ref, start });
  }

  // KL to the policy RL started from, when tracked: reuses the reference pass when they coincide.
  // Its k3 values [b, C] per mini-batch are read here, or on the device path (kernels that keep
  // the update's checks on the device) with the step's one read, at its end
  const onDevice = kernels.updateOnDevice;
  const initialK3: tf.Tensor[] = [];
  let klInitial: number | undefined;
  /** klInitial from each mini-batch's k3 values, masked by the sampled mask (the same sum). */
  const klInitialOf = (values: readonly Float32Array[]) => {
    let sum = 0;
    let tokens = 0;
    miniBatches.forEach((mb, i) => {
      const k3 = values[i]!;
      for (let j = 0; j < k3.length; j++) {
        if (batch.mask[mb.start * C + j] === 0) continue;
        sum += k3[j]!;
        tokens++;
      }
    });
    return tokens === 0 ? 0 : sum / tokens;
  };
  if (run.initial) {
    const read: Float32Array[] = [];
    for (const mb of miniBatches) {
      const initial = run.initial === run.reference && mb.ref
        ? mb.ref
        : tf.tidy(() =>
          tokenLogProbs(
            kernels,
            run.initial!,
            config,
            mb.ids,
            promptTokens,
            temperature,
            mb.padding,
          )
        );
      const rows = mb.padding.length;
      const sampledLogp = batch.logp.slice(mb.start * C, (mb.start + rows) * C); // [b, C] log π
      const k3 = tf.tidy(() => klK3(tf.tensor2d(sampledLogp, [rows, C]), initial)); // [b, C]
      if (initial !== mb.ref) initial.dispose();
      if (onDevice) {
        initialK3.push(k3);
        continue;
      }
      read.push((await k3.data()) as Float32Array); // [b, C]
      k3.dispose();
    }
    if (!onDevice) klInitial = klInitialOf(read);
  }

  // 4) advantages: the objective standardises rewards itself; the log records the equal groups
  const zeroStdGroups = equalGroups(scores.total, G);

  // 5) update: epochs × mini-batches of whole groups, one AdamW step each
  const trained = trainedParams(run);
  const vars = Object.values(trained);
  const names = Object.keys(trained);
  const microBatches = options.microBatchRows === undefined ? null : {
    microBatchRows: options.microBatchRows,
    weighting: microBatchWeighting(axes),
  };
  const rolloutReference = plan.reference.kind === "rollout";
  const losses: number[] = [];
  const norms: number[] = [];
  const clippedNorms: number[] = [];
  let skippedUpdates = 0;
  let lr = 0;
  const diagnostics: Record<string, number[]> = {};
  const kls: number[] = [];
  /**
   * The host's accounting of one update: a non-finite loss or gradient is not applied, and too
   * many in a row stop the run.
   */
  const account = (
    loss: number,
    update: { gradNorm: number; gradNormClipped: number; lr: number; skipped: boolean },
    kept: Record<string, number>,
    kl: number | null,
  ) => {
    losses.push(loss);
    norms.push(update.gradNorm);
    clippedNorms.push(update.gradNormClipped);
    if (Number.isFinite(loss)) lr = update.lr; // a non-finite loss took no step: lr as it was
    if (update.skipped) {
      skippedUpdates++;
      run.faults.total++;
      run.faults.inRow++;
      if (run.faults.inRow >= plan.optimizer.maxSkippedUpdates) {
        const what = Number.isFinite(loss)
          ? `gradient (norm ${update.gradNorm})`
          : `loss (${loss})`;
        throw new NonFiniteUpdateError(step, run.faults.inRow, what);
      }
    } else {
      run.faults.inRow = 0;
    }
    for (const [k, m] of Object.entries(kept)) (diagnostics[k] ??= []).push(m);
    if (kl !== null) kls.push(kl);
  };
  const gradientsOf = (mb: (typeof miniBatches)[number]) =>
    updateGradients(
      {
        kernels,
        params,
        ...withAdapters,
        config,
        promptLength: promptTokens,
        temperature,
        ...(options.gradientCheckpointing ? { gradientCheckpointing: true } : {}),
      },
      run.objective,
      mb,
      {
        objectiveOptions: run.objectiveOptions,
        groupSize: G,
        rolloutReference,
        ...(microBatches ?? {}),
        maskValues: mask.subarray(mb.start * C, (mb.start + mb.padding.length) * C),
      },
    );
  // the logged groups' advantages, on the device path from the mini-batches' rewards (no upload)
  const logRows = options.logSamples === false ? 0 : plan.schedule.sampleGroups * G;
  let advantage: Float32Array | null = null;
  let advantageTensor: tf.Tensor | null = null;
  try {
    if (onDevice) {
      const updates = deviceUpdates(run.optimizer, {
        updates: plan.schedule.epochs * miniBatches.length,
        faults: { inRow: run.faults.inRow, maxInRow: plan.optimizer.maxSkippedUpdates },
      });
      const queued: { metrics: Record<string, tf.Scalar>; kl: tf.Scalar | null }[] = [];
      try {
        for (let epoch = 0; epoch < plan.schedule.epochs; epoch++) {
          for (const mb of miniBatches) {
            const { value, grads, metrics: kept, kl } = await gradientsOf(mb);
            queued.push({ metrics: kept, kl });
            try {
              const byName = Object.fromEntries(names.map((n, i) => [n, grads[vars[i]!.name]!]));
              updates.step(trained, byName, value);
            } finally {
              tf.dispose([value, ...Object.values(grads)]);
            }
          }
        }
        const axis = plan.objective.axes.advantage;
        if (logRows > 0 && axis) {
          advantageTensor = tf.tidy(() => {
            const all = tf.concat(miniBatches.map((mb) => mb.rewards)); // [B]
            return advantages(tf.slice(all, 0, logRows), G, axis); // [rows]
          });
        }
        // the step's one read: every update's loss and norm, diagnostics and KL, the k3 values of
        // klInitial and the logged advantages
        const parts = [
          ...updates.pending.flat(),
          ...queued.flatMap((q) => [...Object.values(q.metrics), ...(q.kl ? [q.kl] : [])]),
          ...initialK3,
          ...(advantageTensor ? [advantageTensor] : []),
        ];
        const packed = tf.tidy(() => tf.concat(parts.map((t) => tf.reshape(t, [-1]))));
        const values = (await packed.data()) as Float32Array;
        packed.dispose();
        let at = 0;
        const take = (n: number) => values.subarray(at, at += n);
        const pairs = updates.pending.map(() => [...take(2)] as [number, number]);
        const results = updates.settle(pairs);
        const read = queued.map((q) => ({
          metrics: Object.fromEntries(Object.keys(q.metrics).map((k) => [k, take(1)[0]!])),
          kl: q.kl ? take(1)[0]! : null,
        }));
        if (run.initial) klInitial = klInitialOf(initialK3.map((t) => take(t.size)));
        if (advantageTensor) advantage = take(advantageTensor.size).slice();
        // settle() stops at an update that reaches the limit: account() throws there
        results.forEach((update, i) =>
          account(pairs[i]![0], update, read[i]!.metrics, read[i]!.kl)
        );
      } finally {
        updates.dispose();
        for (const q of queued) tf.dispose([...Object.values(q.metrics), ...(q.kl ? [q.kl] : [])]);
      }
    } else {
      for (let epoch = 0; epoch < plan.schedule.epochs; epoch++) {
        for (const mb of miniBatches) {
          const { value, grads, metrics: kept, kl } = await gradientsOf(mb);
          const measured = kl ? { kl } : {};
          try {
            const byName = Object.fromEntries(names.map((n, i) => [n, grads[vars[i]!.name]!]));
            const loss = (await value.data())[0]!;
            const update = Number.isFinite(loss)
              ? await adamWStep(kernels, run.optimizer, trained, byName)
              : { gradNorm: NaN, gradNormClipped: NaN, lr, skipped: true };
            const read: Record<string, number> = {};
            for (const [k, m] of Object.entries(kept)) read[k] = (await m.data())[0]!;
            account(loss, update, read, measured.kl ? (await measured.kl.data())[0]! : null);
          } finally {
            tf.dispose([
              value,
              ...Object.values(grads),
              ...Object.values(kept),
              ...Object.values(measured),
            ]);
          }
        }
      }
    }
  } finally {
    tf.dispose([...initialK3, ...(advantageTensor ? [advantageTensor] : [])]);
    for (const mb of miniBatches) {
      tf.dispose([mb.ids, mb.mask, mb.rewards, mb.old, mb.ref].filter((t) => t !== null));
    }
  }

  const stepSeconds = (performance.now() - started) / 1000;
  const sampledTokens = batch.lengths.reduce((a, b) => a + b, 0);
  const metrics: StepMetrics = {
    step,
    rewardMean: mean(scores.total),
    rewardStd: std(scores.total),
    rewards: Object.fromEntries(
      Object.entries(scores.bySource).map(([k, v]) => [k, { mean: mean(v), std: std(v) }]),
    ),
    rewardErrors: Object.fromEntries(
      Object.entries(scores.errors).map(([k, { count }]) => [k, count]),
    ),
    skippedGroups: scores.skippedGroups.filter(Boolean).length / P,
    successRate: scores.success ? mean(scores.success) : null,
    zeroStdGroups,
    kl: kls.length > 0 ? mean(kls) : null,
    ...(klInitial === undefined ? {} : { klInitial }),
    entropy: maskedMean(batch.entropy, batch.mask),
    groupsDropped,
    promptsResampled,
    completionLength: sampledTokens / B,
    truncated: batch.truncated.filter(Boolean).length / B,
    loss: mean(losses),
    gradNorm: mean(norms),
    gradNormClipped: mean(clippedNorms),
    skippedUpdates,
    lr,
    objective: Object.fromEntries(Object.entries(diagnostics).map(([k, v]) => [k, mean(v)])),
    sampleSeconds,
    stepSeconds,
    tokensPerSecond: sampledTokens / stepSeconds,
  };
  const logged = options.logSamples === false
    ? []
    : await sampleGroupsOf(run, step, samples, scores, batch, rewards, advantage);
  return { metrics, samples: logged, rewardErrors: scores.errors };
}

/**
 * The first `plan.schedule.sampleGroups` groups of a step, with rewards and advantages (`computed`
 * when the step read them already).
 */
async function sampleGroupsOf(
  run: Run,
  step: number,
  samples: readonly { prompt: string; completion: string; answer: string }[],
  scores: { total: Float32Array; bySource: Record<string, Float32Array> },
  batch: Completions,
  rewards: Float32Array,
  computed: Float32Array | null,
): Promise<SampleGroup[]> {
  const G = run.plan.shapes.groupSize;
  const rows = run.plan.schedule.sampleGroups * G;
  const axis = run.plan.objective.axes.advantage;
  let advantage = computed;
  if (axis && !advantage) {
    const values = tf.tidy(() => advantages(tf.tensor1d(rewards.slice(0, rows)), G, axis)); // [rows]
    advantage = (await values.data()) as Float32Array;
    values.dispose();
  }
  const groups: SampleGroup[] = [];
  for (let start = 0; start < rows; start += G) {
    const first = samples[start]!;
    groups.push({
      step,
      group: start / G,
      prompt: first.prompt,
      answer: first.answer,
      completions: samples.slice(start, start + G).map((s, j) => ({
        text: s.completion,
        reward: scores.total[start + j]!,
        rewards: Object.fromEntries(
          Object.entries(scores.bySource).map(([name, v]) => [name, v[start + j]!]),
        ),
        advantage: advantage ? advantage[start + j]! : null,
        length: batch.lengths[start + j]!,
        truncated: batch.truncated[start + j]!,
      })),
    });
  }
  return groups;
}
