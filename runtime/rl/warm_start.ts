/**
 * The warm start: supervised fine-tuning on the task's reference answers before any RL update,
 * so that RL starts from a policy that is sometimes right (a group whose rewards are all 0 teaches
 * nothing). The loss is the token-mean cross-entropy of answer tokens and `<eos>`, with AdamW.
 *
 * The result is cached by content hash: the model, tokenizer, data, warm-start settings, seed and
 * backend decide the weights, so a rerun of the same recipe loads them instead of training again.
 * A cache entry is written as a run's checkpoint is (a temporary directory, each file synced, then
 * renamed into place) with `cache.json` last, the SHA-256 of every other file: a read checks them
 * all, and an entry that fails is trained and written again. Writers hold the cache's lock, so
 * a temporary directory found under it is a crashed writer's, and removed.
 *
 * @module
 */

import { createHash } from "node:crypto";
import type { Plan } from "../../dsl/plan.ts";
import { canonicalJson } from "../../dsl/plan.ts";
import { tf } from "../engine/backend.ts";
import type { Problem } from "../data/types.ts";
import { readRegularFile } from "../engine/model/_regular_file.ts";
import { checkpointFiles, loadCheckpoint, MAX_JSON_BYTES } from "../engine/model/checkpoint.ts";
import type { LinearLayout } from "../engine/kernels/types.ts";
import { osReason, RunWriteError, writeCheckpointDir } from "../run/run_dir.ts";
import { alphabetOf, type Tokenizer } from "../engine/model/tokenizer.ts";
import { type ModelConfig, tokenLogProbs } from "../engine/model/transformer.ts";
import type { KernelSet } from "../engine/kernels/types.ts";
import { adamW, adamWStep, deviceUpdates, disposeAdamW } from "../engine/optim.ts";
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
   * let the event loop turn); it may throw to stop. Where the kernel set updates on the device
   * (webgpu), the losses are read every {@linkcode WARM_START_READ_EVERY} steps, and the calls
   * for those steps come together after each read.
   */
  progress?: (step: number, total: number, loss: number) => void | Promise<void>;
  /** Receives a line to show: a cache entry that cannot be read, and is trained again. */
  note?: (line: string) => void;
}

/**
 * Steps between reads of the warm start's losses where the kernel set updates on the device
 * (`KernelSet.updateOnDevice`, webgpu): each read waits at least ~10 ms in Deno's WebGPU, and the
 * host path reads twice a step (the loss and AdamW's gradient norm).
 */
export const WARM_START_READ_EVERY = 16;

/**
 * Trains `params` in place on `train` as the plan's warm start says, or loads the cached result.
 * Where the kernel set updates on the device, AdamW's checks run there (`DeviceUpdates`, as the RL
 * step's do), and the losses and norms are read once per {@linkcode WARM_START_READ_EVERY} steps;
 * the examples and their order are the same on either path.
 */
export async function warmStart(
  plan: Plan,
  params: Record<string, tf.Variable>,
  config: ModelConfig,
  tokenizer: Tokenizer,
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
  const cached = await readCache(dir, params, kernels.layout);
  if (cached.weights) {
    for (const [name, p] of Object.entries(params)) {
      const w = cached.weights[name]!;
      tf.tidy(() => p.assign(tf.tensor(w.data, w.shape, "float32")));
    }
    await sweepCache(options.cacheDir);
    return { cached: true, dir, finalLoss: null, seconds: (performance.now() - started) / 1000 };
  }
  if (cached.why !== null) {
    options.note?.(
      `warm start: the cache ${dir} cannot be read (${cached.why}); training it again`,
    );
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
  /**
   * A fresh batch from `rng`, the mean negative log-likelihood of its completions and its
   * gradients by name, handed to `use` and freed after it.
   */
  const withGradients = async (
    use: (loss: tf.Scalar, grads: Record<string, tf.Tensor>) => void | Promise<void>,
  ) => {
    const examples = Array.from(
      { length: batchSize },
      () => supervisedExample(tokenizer, train[rng.int(train.length)]!, promptLength, newTokens),
    );
    const ids = tf.tensor2d(examples.flatMap((e) => e.ids), [batchSize, width], "int32");
    const mask = tf.tensor2d(examples.flatMap((e) => e.mask), [batchSize, newTokens]);
    const padding = examples.map((e) => e.padding);
    try {
      const { value, grads } = tf.variableGrads(() =>
        tf.tidy(() => {
          const logp = tokenLogProbs(kernels, params, config, ids, promptLength, 1, padding); // [b, C]
          return tf.neg(tf.div(tf.sum(tf.mul(logp, mask)), tf.sum(mask))) as tf.Scalar;
        }), vars);
      try {
        await use(value, Object.fromEntries(names.map((n, i) => [n, grads[vars[i]!.name]!])));
      } finally {
        tf.dispose([value, ...Object.values(grads)]);
      }
    } finally {
      tf.dispose([ids, mask]);
    }
  };
  /** The next `count` steps with AdamW's checks on the device: their losses, in one read. */
  const onDevice = async (count: number): Promise<number[]> => {
    const updates = deviceUpdates(optimizer, { updates: count });
    try {
      for (let i = 0; i < count; i++) {
        await withGradients((loss, grads) => updates.step(params, grads, loss));
      }
      const packed = tf.tidy(() => tf.stack(updates.pending.flat())); // [loss, norm] a step
      const values = (await packed.data()) as Float32Array;
      packed.dispose();
      const pairs = updates.pending.map((_, i) =>
        [values[2 * i]!, values[2 * i + 1]!] as [number, number]
      );
      updates.settle(pairs);
      return pairs.map(([loss]) => loss);
    } finally {
      updates.dispose();
    }
  };
  /** The next step, AdamW's norm and the loss read on the host. */
  const onHost = async (): Promise<number[]> => {
    let taken = NaN;
    await withGradients(async (loss, grads) => {
      await adamWStep(kernels, optimizer, params, grads);
      taken = (await loss.data())[0]!;
    });
    return [taken];
  };
  try {
    while (losses.length < sftSteps) {
      const taken = kernels.updateOnDevice
        ? await onDevice(Math.min(WARM_START_READ_EVERY, sftSteps - losses.length))
        : await onHost();
      for (const loss of taken) {
        losses.push(loss);
        await options.progress?.(losses.length, sftSteps, loss);
      }
    }
  } finally {
    disposeAdamW(optimizer);
  }
  await writeCache(
    options.cacheDir,
    basename(dir),
    await checkpointFiles(params, config, alphabetOf(tokenizer), kernels.layout),
    params,
    kernels.layout,
  );
  const tail = losses.slice(-Math.max(1, Math.floor(sftSteps / 10)));
  return {
    cached: false,
    dir,
    finalLoss: tail.reduce((a, b) => a + b, 0) / tail.length,
    seconds: (performance.now() - started) / 1000,
  };
}

/** The format tag of a cache entry's `cache.json`. */
const CACHE_FORMAT = "giftwrap.warmstart_cache/1";

/** A cache entry's `cache.json`: its key and the SHA-256 of each of its other files. */
interface CacheRecord {
  format: typeof CACHE_FORMAT;
  key: string;
  sha256: Record<string, string>;
}

function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/**
 * The weights of the cache entry `dir` for `params`, checked against its `cache.json` (every
 * file's SHA-256), the parameters' names and shapes, and finite; `why` it cannot be used
 * otherwise (null when there is no entry).
 */
async function readCache(
  dir: string,
  params: Record<string, tf.Variable>,
  layout: LinearLayout,
): Promise<
  { weights: Awaited<ReturnType<typeof loadCheckpoint>>["weights"]; why: null } | {
    weights: null;
    why: string | null;
  }
> {
  let text: string;
  try {
    text = new TextDecoder().decode(await readRegularFile(`${dir}/cache.json`, MAX_JSON_BYTES));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      try {
        await Deno.lstat(dir);
      } catch {
        return { weights: null, why: null }; // no entry
      }
    }
    return { weights: null, why: `cache.json: ${osReason(e)}` };
  }
  try {
    const record = JSON.parse(text) as CacheRecord;
    if (record?.format !== CACHE_FORMAT || record.key !== basename(dir)) {
      throw new Error(`cache.json: not a ${CACHE_FORMAT} record of key ${basename(dir)}`);
    }
    for (const name of ["model.safetensors", "config.json"]) {
      if (typeof record.sha256?.[name] !== "string") {
        throw new Error(`cache.json: no SHA-256 of ${name}`);
      }
    }
    // The two files an entry holds, each no larger than its weights (and a header) can make it.
    const limits: Record<string, number> = {
      "model.safetensors": 4 * Object.values(params).reduce((n, p) => n + p.size, 0) + 2 ** 27,
      "config.json": MAX_JSON_BYTES,
    };
    for (const [name, digest] of Object.entries(record.sha256)) {
      const limit = limits[name];
      if (limit === undefined) throw new Error(`cache.json: names a file '${name}' of no entry`);
      let bytes: Uint8Array;
      try {
        bytes = await readRegularFile(`${dir}/${name}`, limit);
      } catch (e) {
        throw new Error(`${name}: ${osReason(e)}`);
      }
      if (sha256(bytes) !== digest) {
        throw new Error(`${name}: its SHA-256 is not the one cache.json records`);
      }
    }
    const { weights } = await loadCheckpoint(dir, layout);
    for (const [name, p] of Object.entries(params)) {
      const w = weights[name];
      if (!w || w.shape.join(",") !== p.shape.join(",")) {
        throw new Error(`model.safetensors: '${name}' is not shaped [${p.shape}]`);
      }
      if (!w.data.every(Number.isFinite)) {
        throw new Error(`model.safetensors: '${name}' holds a value that is not finite`);
      }
    }
    return { weights, why: null };
  } catch (e) {
    return { weights: null, why: (e as Error).message.split("\n")[0]! };
  }
}

/**
 * Writes the cache entry `cacheDir/key` holding `files`, with its `cache.json`, under the cache's
 * lock (`<cacheDir>.lock`, which every writer holds while its temporary directory exists, so what
 * is found there under the lock was left by a crashed writer, and is removed). An entry there
 * that reads well (another run wrote it meanwhile) is kept; one that does not is replaced.
 * @throws {RunWriteError} naming the entry and the reason (a full disk, a read-only directory).
 */
async function writeCache(
  cacheDir: string,
  key: string,
  files: Record<string, Uint8Array | string>,
  params: Record<string, tf.Variable>,
  layout: LinearLayout,
): Promise<void> {
  const dir = `${cacheDir}/${key}`;
  let lock: Deno.FsFile;
  try {
    await Deno.mkdir(cacheDir, { recursive: true });
    lock = await Deno.open(`${cacheDir}.lock`, { write: true, create: true });
  } catch (e) {
    throw new RunWriteError(dir, e);
  }
  try {
    await lock.lock(true);
    await removeStale(cacheDir);
    if ((await readCache(dir, params, layout)).weights) return;
    const encoder = new TextEncoder();
    const bytes = Object.fromEntries(
      Object.entries(files).map((
        [name, content],
      ) => [name, typeof content === "string" ? encoder.encode(content) : content]),
    );
    const record: CacheRecord = {
      format: CACHE_FORMAT,
      key,
      sha256: Object.fromEntries(Object.entries(bytes).map(([name, b]) => [name, sha256(b)])),
    };
    // An entry there could not be read: out of the way first, removed once the new one is in.
    const old = `${dir}.old-${crypto.randomUUID().slice(0, 8)}`;
    let moved = false;
    try {
      await Deno.rename(dir, old);
      moved = true;
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw new RunWriteError(dir, e);
    }
    await writeCheckpointDir(dir, { ...bytes, "cache.json": JSON.stringify(record) + "\n" });
    if (moved) await Deno.remove(old, { recursive: true }).catch(() => {});
  } finally {
    lock.close();
  }
}

/** Removes what crashed writers left in the cache (its lock held: no writer is at work). */
async function removeStale(cacheDir: string): Promise<void> {
  for await (const entry of Deno.readDir(cacheDir)) {
    if (/\.(tmp|old)-[0-9a-f]{8}$/.test(entry.name)) {
      await Deno.remove(`${cacheDir}/${entry.name}`, { recursive: true }).catch(() => {});
    }
  }
}

/**
 * Removes what crashed writers left in the cache when no writer is at work now; a cache that
 * cannot be written is left as it is (reading it needs nothing more).
 */
async function sweepCache(cacheDir: string): Promise<void> {
  let lock: Deno.FsFile;
  try {
    lock = await Deno.open(`${cacheDir}.lock`, { write: true, create: true });
  } catch {
    return;
  }
  try {
    if (await lock.tryLock(true)) await removeStale(cacheDir).catch(() => {});
  } finally {
    lock.close();
  }
}

function basename(path: string): string {
  return path.slice(path.lastIndexOf("/") + 1);
}
