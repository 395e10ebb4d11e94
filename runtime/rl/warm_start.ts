/**
 * The warm start: supervised fine-tuning on the task's reference answers before any RL update,
 * so that RL starts from a policy that is sometimes right (a group whose rewards are all 0 teaches
 * nothing). The loss is the token-mean cross-entropy of answer tokens and `<eos>`, with AdamW.
 *
 * The result is cached by content hash: the model, tokenizer, data, warm-start settings, seed and
 * backend decide the weights, so a rerun of the same recipe loads them instead of training again.
 *
 * @module
 */

import { createHash } from "node:crypto";
import type { Plan } from "../../dsl/plan.ts";
import { canonicalJson } from "../../dsl/plan.ts";
import { tf } from "../engine/backend.ts";
import type { Problem } from "../data/types.ts";
import { loadCheckpoint, saveCheckpoint } from "../engine/model/checkpoint.ts";
import type { CharTokenizer } from "../engine/model/tokenizer.ts";
import { type ModelConfig, tokenLogProbs } from "../engine/model/transformer.ts";
import type { KernelSet } from "../engine/kernels/types.ts";
import { adamW, adamWStep, disposeAdamW } from "../engine/optim.ts";
import type { Rng } from "../engine/random.ts";
import { supervisedExample } from "../data/task.ts";

/** The format tag of the warm-start cache key; bump it when the warm start's math changes. */
const WARM_START_FORMAT = "giftwrap.warmstart/1";

/** The content hash naming a plan's warm-start weights (16 hex digits). */
export function warmStartKey(plan: Plan, matmul: string | null = null): string {
  // A data file's content (its hash in the plan): the same path holds other rows after an edit.
  const file = plan.inputs?.find((input) => input.field === "data.path");
  const key = {
    format: WARM_START_FORMAT,
    model: plan.model,
    tokenizer: plan.tokenizer,
    data: plan.recipe.data,
    ...(file === undefined ? {} : { dataSha256: file.sha256 }),
    newTokens: plan.shapes.newTokens,
    seed: plan.seed,
    backend: plan.backend.name,
    // OpenBLAS sums in another order than the backend's own kernel: other weights, bit for bit.
    ...(matmul === null ? {} : { matmul }),
  };
  return createHash("sha256").update(canonicalJson(key)).digest("hex").slice(0, 16);
}

/** What the warm start did. */
export interface WarmStartResult {
  /** Whether the weights came from the cache. */
  cached: boolean;
  /** The cache directory holding the weights. */
  dir: string;
  /** Mean loss over the last tenth of the steps (null when cached or no steps). */
  finalLoss: number | null;
  seconds: number;
}

/** Options of `warmStart()`. */
export interface WarmStartOptions {
  /** The backend's kernel set (the model's, the optimiser's and the checkpoint's layout). */
  kernels: KernelSet;
  /** Directory of the cache (one checkpoint per key). */
  cacheDir: string;
  /** Where matrix products run when not on the backend's own kernel (`BackendInfo.matmul.blas`). */
  matmul?: string | null;
  /**
   * Called after every step with the step, the total and the step's loss, and awaited (so it may
   * let the event loop turn); it may throw to stop.
   */
  progress?: (step: number, total: number, loss: number) => void | Promise<void>;
}

/**
 * Trains `params` in place on `train` as the plan's warm start says, or loads the cached result.
 */
export async function warmStart(
  plan: Plan,
  params: Record<string, tf.Variable>,
  config: ModelConfig,
  tokenizer: CharTokenizer,
  train: readonly Problem[],
  rng: Rng,
  options: WarmStartOptions,
): Promise<WarmStartResult> {
  const spec = plan.model.warmStart;
  const { kernels } = options;
  const started = performance.now();
  const dir = `${options.cacheDir}/${warmStartKey(plan, options.matmul ?? null)}`;
  if (!spec || spec.sftSteps === 0) {
    return { cached: false, dir, finalLoss: null, seconds: 0 };
  }
  try {
    const { weights } = await loadCheckpoint(dir, kernels.layout);
    for (const [name, p] of Object.entries(params)) {
      const w = weights[name]!;
      tf.tidy(() => p.assign(tf.tensor(w.data, w.shape, "float32")));
    }
    return { cached: true, dir, finalLoss: null, seconds: (performance.now() - started) / 1000 };
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }

  const { sftSteps, lr, batchSize } = spec;
  const newTokens = plan.shapes.newTokens;
  const promptLength = plan.shapes.promptTokens;
  const width = promptLength + newTokens;
  const optimizer = adamW(params, {
    lr,
    betas: [0.9, 0.999],
    eps: 1e-8,
    weightDecay: 0,
    clipGradNorm: 1,
    warmupSteps: 0,
    schedule: "constant",
  }, sftSteps);
  const vars = Object.values(params);
  const names = Object.keys(params);
  const losses: number[] = [];
  try {
    for (let step = 0; step < sftSteps; step++) {
      const examples = Array.from(
        { length: batchSize },
        () => supervisedExample(tokenizer, train[rng.int(train.length)]!, promptLength, newTokens),
      );
      const ids = tf.tensor2d(examples.flatMap((e) => e.ids), [batchSize, width], "int32");
      const mask = tf.tensor2d(examples.flatMap((e) => e.mask), [batchSize, newTokens]);
      const padding = examples.map((e) => e.padding);
      const { value, grads } = tf.variableGrads(() =>
        tf.tidy(() => {
          const logp = tokenLogProbs(kernels, params, config, ids, promptLength, 1, padding); // [b, C]
          return tf.neg(tf.div(tf.sum(tf.mul(logp, mask)), tf.sum(mask))) as tf.Scalar;
        }), vars);
      const byName = Object.fromEntries(names.map((n, i) => [n, grads[vars[i]!.name]!]));
      await adamWStep(kernels, optimizer, params, byName);
      losses.push((await value.data())[0]!);
      tf.dispose([ids, mask, value, ...Object.values(grads)]);
      await options.progress?.(step + 1, sftSteps, losses[losses.length - 1]!);
    }
  } finally {
    disposeAdamW(optimizer);
  }
  await saveCheckpoint(dir, params, config, tokenizer.alphabet, { layout: kernels.layout });
  const tail = losses.slice(-Math.max(1, Math.floor(sftSteps / 10)));
  return {
    cached: false,
    dir,
    finalLoss: tail.reduce((a, b) => a + b, 0) / tail.length,
    seconds: (performance.now() - started) / 1000,
  };
}
