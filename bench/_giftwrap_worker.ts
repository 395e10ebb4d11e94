/**
 * giftwrap's side of `deno task bench`: the protocol of bench/torch_ref.py (see bench/_protocol.ts)
 * implemented with giftwrap's own runtime, on one tfjs backend.
 *
 * - model: `initParams` (runtime/engine/model/transformer.ts) from the setup's seed, run with the
 *   kernel set `useBackend` chose; with `lora`, adapters from `initLoraAdapters` (fork "lora" of
 *   the seed) on the frozen base;
 * - train step: what runtime/rl/train_step.ts's update does for one mini-batch: `updateGradients`
 *   (runtime/rl/micro_batches.ts: `tokenLogProbs` and `objectives.gift.loss` under
 *   `tf.variableGrads`, over micro-batches of `microBatchRows` rows when set, with
 *   `gradientCheckpointing` when set), read the loss, then `adamWStep` (clip, AdamW) over what
 *   trains (every weight, or the adapters only), dispose the gradients; on webgpu, whose kernel
 *   set keeps the update's checks on the device, the train step's path instead (`DeviceUpdates`:
 *   the update queued, its loss and norm read once, after it);
 * - sampling: `sampleCompletions` (runtime/rl/sample.ts) of the batch's prompts, temperature 1;
 *   with adapters, on the weights with the adapters merged (`mergeLora`), freed after;
 * - memory: VmHWM of this process.
 *
 * Commands: `setup` (`{"config": WorkerConfig}`), `train`, `sample`, `logprobs`, `memory`;
 * `export` (`{"path"}`: the weights as float32 in `paramShapes` order, [in, out] linear layout,
 * with a JSON manifest at `path + ".json"`, for torch_ref.py's `weights`; the adapters after
 * them, in `loraParamShapes` order and layout); `profile`
 * (`{"what": "train" | "sample"}`: one of them under `tf.profile`, kernel time by kernel). Every answer carries
 * `numTensors` (less the device caches of runtime/engine/kernels/constants.ts, which keep a
 * shape's tables once made), so the bench can check that nothing leaks across iterations. `counts`
 * (`{"what": "train" | "sample"}`, webgpu only): one train step or one sampling call under the
 * WebGPU counters (runtime/engine/webgpu_counters.ts), its answer with `counts` added.
 * `setup`, `train`, `sample` and `counted` are exported for the tests of those counts.
 *
 *   deno run --allow-read --allow-write --allow-env --allow-sys --allow-ffi bench/_giftwrap_worker.ts
 *
 * @module
 */

import process from "node:process";
import { type KernelSet, tf, useBackend } from "../runtime/engine/backend.ts";
import { profileDecoders } from "../runtime/engine/kernels/decode.ts";
import {
  initParams,
  type ModelConfig,
  paramShapes,
  tokenLogProbs,
} from "../runtime/engine/model/transformer.ts";
import {
  initLoraAdapters,
  type LoraAdapters,
  loraConfig,
  type LoraTarget,
  mergeLora,
} from "../runtime/engine/model/lora.ts";
import { type CharTokenizer, charTokenizer } from "../runtime/engine/model/tokenizer.ts";
import { type GiftOptions, objectives } from "../runtime/rl/objectives/mod.ts";
import { type AdamW, adamW, adamWStep, deviceUpdates } from "../runtime/engine/optim.ts";
import { Rng } from "../runtime/engine/random.ts";
import { sampleCompletions } from "../runtime/rl/sample.ts";
import { updateGradients } from "../runtime/rl/micro_batches.ts";
import { deviceConstantCount } from "../runtime/engine/kernels/constants.ts";
import { countWebgpu, type WebgpuCounts } from "../runtime/engine/webgpu_counters.ts";
import { type Answer, readLines, residentBytes, type WorkerConfig } from "./_protocol.ts";

const START_RSS = residentBytes().rssBytes;

/** Everything setup makes. */
export interface State {
  /** The backend's kernel set. */
  kernels: KernelSet;
  config: ModelConfig;
  shapes: WorkerConfig["shapes"];
  params: Record<string, tf.Variable>;
  /** LoRA adapters on the frozen `params`, or null: every weight trains. */
  adapters: LoraAdapters | null;
  optimizer: AdamW;
  /** Rows per micro-batch of the update (null: the whole batch at once). */
  microBatchRows: number | null;
  gradientCheckpointing: boolean;
  objective: GiftOptions;
  tokenizer: CharTokenizer;
  /** [B, P + C] int32 */
  ids: tf.Tensor2D;
  /** [B, C] */
  mask: tf.Tensor2D;
  /** [B, C] */
  refLogp: tf.Tensor2D;
  /** [B] */
  rewards: tf.Tensor1D;
  /** B prompts of P tokens. */
  prompts: number[][];
  sampleRng: Rng;
}

/**
 * Sets up the worker for `c`: the backend, the model, the optimiser and the batch.
 *
 * @example
 * ```ts
 * const { state } = await setup({ ...benchConfig("front-door").setup, backend: "webgpu" });
 * await train(state); // { ms, loss, gradNorm, skipped }
 * ```
 */
export async function setup(c: WorkerConfig): Promise<{ state: State; answer: Answer }> {
  const backend = await useBackend(c.backend ?? "wasm");
  // tfjs flags to try, e.g. GIFTWRAP_TF_FLAGS='{"WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE": 100}'
  const flags = Deno.env.get("GIFTWRAP_TF_FLAGS");
  if (flags) tf.env().setFlags(JSON.parse(flags));
  const { rows: B, promptTokens: P, newTokens: C } = c.shapes;
  const rng = new Rng(c.seed);
  const params = initParams(c.model, rng.fork("init"));
  const adapters = c.lora
    ? initLoraAdapters(
      c.model,
      loraConfig({ ...c.lora, targets: c.lora.targets as LoraTarget[] }),
      rng.fork("lora"),
      backend.kernels.layout,
    )
    : null;
  if (adapters) { for (const p of Object.values(params)) p.trainable = false; // the frozen base
   }
  const state: State = {
    kernels: backend.kernels,
    config: c.model,
    shapes: c.shapes,
    params,
    adapters,
    optimizer: adamW(adapters?.params ?? params, c.optimizer, 1_000_000),
    microBatchRows: c.microBatchRows ?? null,
    gradientCheckpointing: c.gradientCheckpointing ?? false,
    objective: c.objective,
    tokenizer: charTokenizer(c.alphabet),
    ids: tf.tensor2d(c.ids, [B, P + C], "int32"),
    mask: tf.ones([B, C]) as tf.Tensor2D,
    refLogp: tf.fill([B, C], c.refLogp) as tf.Tensor2D,
    rewards: tf.tensor1d(c.rewards),
    prompts: Array.from({ length: B }, (_, b) => c.ids.slice(b * (P + C), b * (P + C) + P)),
    sampleRng: rng.fork("sample"),
  };
  const count = (ps: Record<string, tf.Tensor>) =>
    Object.values(ps).reduce((n, p) => n + p.size, 0);
  const update = [
    ...(state.microBatchRows ? [`micro-batches of ${state.microBatchRows} rows`] : []),
    ...(state.gradientCheckpointing ? ["activation checkpointing"] : []),
  ];
  return {
    state,
    answer: {
      tfjs: tf.version.tfjs,
      backend: `${backend.description}${flags ? ` · tfjs flags ${flags}` : ""}`,
      params: count(params),
      trainable: count(adapters?.params ?? params),
      update: update.join(", "),
    },
  };
}

/**
 * One optimiser update on the batch, as runtime/rl/train_step.ts does for one mini-batch: GIFT
 * with π_old = π (one update per batch) and the uniform reference, over micro-batches when set.
 *
 * @example
 * ```ts
 * const { ms, loss } = await train(state);
 * ```
 */
export async function train(s: State): Promise<Answer> {
  const { promptTokens: P, groupSize: G, rows: B, newTokens: C } = s.shapes;
  const trained = s.adapters?.params ?? s.params;
  const vars = Object.values(trained);
  const names = Object.keys(trained);
  const start = performance.now();
  const { value, grads, metrics, kl } = await updateGradients(
    {
      kernels: s.kernels,
      params: s.params,
      config: s.config,
      promptLength: P,
      temperature: 1,
      ...(s.gradientCheckpointing ? { gradientCheckpointing: true } : {}),
      ...(s.adapters ? { adapters: s.adapters } : {}),
    },
    objectives.gift,
    {
      ids: s.ids,
      mask: s.mask,
      rewards: s.rewards,
      padding: new Array<number>(B).fill(0),
      old: null,
      ref: s.refLogp,
    },
    {
      objectiveOptions: s.objective,
      groupSize: G,
      rolloutReference: false,
      ...(s.microBatchRows ? { microBatchRows: s.microBatchRows } : {}),
      weighting: "rows",
      maskValues: new Float32Array(B * C).fill(1), // s.mask's, without reading it back
    },
  );
  tf.dispose([...Object.values(metrics), ...(kl ? [kl] : [])]);
  const byName = Object.fromEntries(names.map((n, i) => [n, grads[vars[i]!.name]!]));
  if (s.kernels.updateOnDevice) {
    // as the train step: the update queued with its checks, then one read of [loss, norm], which
    // waits for the update's kernels (the queue runs in order), so the time includes them
    const updates = deviceUpdates(s.optimizer, { updates: 1 });
    try {
      updates.step(trained, byName, value);
      tf.dispose([value, ...Object.values(grads)]);
      const packed = tf.stack(updates.pending[0]!);
      const [loss, norm] = (await packed.data()) as Float32Array;
      packed.dispose();
      const [update] = updates.settle([[loss!, norm!]]);
      const ms = performance.now() - start;
      return { ms, loss: loss!, gradNorm: update!.gradNorm, skipped: update!.skipped };
    } finally {
      updates.dispose();
    }
  }
  const loss = (await value.data())[0]!;
  const update = Number.isFinite(loss)
    ? await adamWStep(s.kernels, s.optimizer, trained, byName)
    : { gradNorm: NaN, skipped: true };
  tf.dispose([value, ...Object.values(grads)]);
  // On a GPU the update's kernels are only queued: read a value computed after them, so that the
  // time includes them (the queue runs in order), as PyTorch's worker synchronises
  const flush = tf.sum(vars[vars.length - 1]!);
  await flush.data();
  flush.dispose();
  const ms = performance.now() - start;
  return { ms, loss, gradNorm: update.gradNorm, skipped: update.skipped };
}

/** The weights sampling runs on: the adapters merged in (new tensors, which `done` frees). */
function samplingWeights(s: State): { weights: Record<string, tf.Tensor>; done(): void } {
  if (!s.adapters) return { weights: s.params, done() {} };
  const merged = mergeLora(s.params, s.adapters);
  const own = Object.entries(merged).filter(([name, t]) => t !== s.params[name]);
  return { weights: merged, done: () => tf.dispose(own.map(([, t]) => t)) };
}

/**
 * KV-cache sampling of all B rows, back to back for at least `minMs` (once at least). `tokens`
 * counts the completion tokens drawn (`<eos>` included: a row stops there, and the sampler stops
 * computing it) and `ms` the time, both summed over the `calls`; `steps` is how many model calls
 * the last one made.
 *
 * @example
 * ```ts
 * const { tokens, ms } = await sample(state); // one call: the whole batch sampled once
 * ```
 */
export async function sample(s: State, minMs = 0): Promise<Answer> {
  const { rows: B, promptTokens: P, newTokens: C } = s.shapes;
  const options = { temperature: 1, topK: 0, topP: 1, maxNewTokens: C, promptLength: P };
  const start = performance.now();
  let [tokens, calls, steps, ms] = [0, 0, 0, 0];
  do {
    const { weights, done } = samplingWeights(s);
    const out = await sampleCompletions(
      s.kernels,
      weights,
      s.config,
      s.tokenizer,
      s.prompts,
      options,
      s.sampleRng,
    ).finally(done);
    steps = Math.max(...out.lengths);
    tokens += out.lengths.reduce((sum, n) => sum + n, 0);
    calls++;
    ms = performance.now() - start;
  } while (ms < minMs);
  return { tokens, steps, calls, rows: B, ms };
}

/**
 * The completions' log-probs [B, C], row-major, a micro-batch of rows at a time when the update
 * runs in micro-batches (the whole batch's [B, C, V] logits are 1.2 GB at Qwen's vocabulary).
 */
async function logprobs(s: State): Promise<Answer> {
  const { rows: B } = s.shapes;
  const step = s.microBatchRows ?? B;
  const out: number[] = [];
  for (let start = 0; start < B; start += step) {
    const rows = Math.min(step, B - start);
    const logp = tf.tidy(() =>
      tokenLogProbs(
        s.kernels,
        s.params,
        s.config,
        tf.slice(s.ids, [start, 0], [rows, -1]),
        s.shapes.promptTokens,
        1,
        undefined,
        s.adapters ? { adapters: s.adapters } : {},
      )
    ); // [rows, C]
    out.push(...await logp.data());
    logp.dispose();
  }
  return { logp: out };
}

/**
 * Writes the weights for torch_ref.py: float32 in `paramShapes` order, then the adapters (when
 * any) in `loraParamShapes` order, [in, r] and [r, out]; a JSON manifest of names and shapes.
 * Written tensor by tensor, so that no second copy of a large model is held.
 */
async function exportWeights(s: State, path: string): Promise<Answer> {
  const manifest = [
    ...Object.entries(paramShapes(s.config)).map(([name, { shape }]) => ({ name, shape })),
    ...Object.entries(s.adapters?.params ?? {}).map(([name, t]) => ({ name, shape: t.shape })),
  ];
  const tensors: Record<string, tf.Tensor> = { ...s.params, ...s.adapters?.params };
  const file = await Deno.open(path, { write: true, create: true, truncate: true });
  let bytes = 0;
  try {
    for (const { name } of manifest) {
      const values = (await tensors[name]!.data()) as Float32Array;
      const data = new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
      for (let at = 0; at < data.length;) at += await file.write(data.subarray(at));
      bytes += data.length;
    }
  } finally {
    file.close();
  }
  await Deno.writeTextFile(`${path}.json`, JSON.stringify(manifest));
  return { path, bytes };
}

/**
 * `work` under `tf.profile`: its own answer, plus kernel time by kernel name (top `top`), the sum
 * of all kernel time, and the peak bytes of live tensors. Profiling adds work (tfjs reads every
 * kernel's output to look for NaN), so `ms` here is above the bench's.
 */
async function profile(work: () => Promise<Answer>, top: number): Promise<Answer> {
  let answer: Answer = {};
  const cpu = process.cpuUsage();
  profileDecoders(true);
  const info = await tf.profile(async () => {
    answer = await work();
  });
  const decoder = profileDecoders(false);
  const used = process.cpuUsage(cpu);
  const byName = new Map<string, { ms: number; calls: number }>();
  for (const k of info.kernels) {
    const entry = byName.get(k.name) ?? { ms: 0, calls: 0 };
    entry.ms += typeof k.kernelTimeMs === "number" ? k.kernelTimeMs : 0;
    entry.calls += 1;
    byName.set(k.name, entry);
  }
  const kernels = [...byName].map(([name, e]) => ({ name, ...e })).sort((a, b) => b.ms - a.ms);
  return {
    ...answer,
    // this process's CPU time: near the wall time when dispatching kernels is the bottleneck
    cpuMs: (used.user + used.system) / 1000,
    kernelMs: kernels.reduce((sum, k) => sum + k.ms, 0),
    kernelCalls: info.kernels.length,
    peakBytes: info.peakBytes,
    kernels: kernels.slice(0, top),
    // the OpenBLAS decoder's step by part (it runs outside tfjs): the rest of a sampling run's
    // wall time is the sampler's own (drawing tokens, their entropy, the model's set-up)
    ...(decoder.length > 0 ? { decoder } : {}),
  };
}

/** Warm-up steps `counts` allows before it counts a step that did not settle (`counted`). */
export const SETTLE_AT_MOST = 16;

/**
 * One train step or one sampling call (`what`) under the WebGPU counters, once they repeat
 * themselves: its answer, with `counts` (runtime/engine/webgpu_counters.ts's `WebgpuCounts`),
 * `warmUp` (the calls run before it, counted the same way) and `settled` added. Only on webgpu.
 *
 * The dispatch caches (runtime/engine/webgpu_dispatch.ts) find a step's bind groups again only
 * once the pool's buffers have settled, about 10 steps into a process: a step counted right after
 * the bench's few timed runs still made some, and the table showed warm-up instead of the steady
 * state. (A sampling call's shapes follow the tokens it draws, so it may not settle at all.) So calls run until one makes no
 * bind group, writes no uniform and compiles no pipeline right after another that made none
 * either; that one is the answer (`settled`), or the last of `atMost` + 1 calls (not `settled`).
 */
export async function counted(s: State, what: unknown, atMost = SETTLE_AT_MOST): Promise<Answer> {
  if (what !== "train" && what !== "sample") {
    throw new Error(`'counts' needs 'what' to be "train" or "sample": current value is ${what}`);
  }
  if (tf.getBackend() !== "webgpu") {
    throw new Error(`'counts' needs the webgpu backend: this worker runs ${tf.getBackend()}`);
  }
  const quiet = (c: WebgpuCounts) =>
    c.bindGroups === 0 && c.uniformWrites === 0 && c.pipelines === 0;
  let previous = false;
  for (let warmUp = 0;; warmUp++) {
    const { result, counts } = await countWebgpu(() => what === "train" ? train(s) : sample(s));
    const settled = previous && quiet(counts);
    if (settled || warmUp >= atMost) {
      return { ...result, counts, warmUp, settled };
    }
    previous = quiet(counts);
  }
}

function memory(): Answer {
  const info = tf.memory() as tf.MemoryInfo & { numBytesAllocatedInGPU?: number };
  // wasm: the module's memory, which only grows (so this is its peak), up to 4 GiB
  const heap = tf.getBackend() === "wasm"
    ? (tf.backend() as unknown as { wasm: { HEAPU8: Uint8Array } }).wasm.HEAPU8.byteLength
    : null;
  return {
    ...residentBytes(),
    startRssBytes: START_RSS,
    tfBytes: info.numBytes,
    heapBytes: heap,
    // webgpu: the bytes of GPU buffers tfjs allocated, its pool of free ones included; the pool
    // only grows, so this is the peak
    peakDeviceBytes: info.numBytesAllocatedInGPU ?? null,
  };
}

async function handle(command: Record<string, unknown>, state: State | null) {
  if (command.cmd === "setup") return await setup(command.config as WorkerConfig);
  if (command.cmd === "memory") return { state, answer: memory() };
  if (!state) throw new Error(`'${command.cmd}' before 'setup'`);
  switch (command.cmd) {
    case "train":
      return { state, answer: await train(state) };
    case "sample":
      return { state, answer: await sample(state, Number(command.minMs ?? 0)) };
    case "logprobs":
      return { state, answer: await logprobs(state) };
    case "profile": {
      const work = command.what === "sample" ? () => sample(state) : () => train(state);
      return { state, answer: await profile(work, Number(command.top ?? 12)) };
    }
    case "export":
      return { state, answer: await exportWeights(state, String(command.path)) };
    case "counts":
      return {
        state,
        answer: await counted(state, command.what, Number(command.atMost ?? SETTLE_AT_MOST)),
      };
  }
  throw new Error(`unknown command '${command.cmd}'`);
}

/** Answers commands from stdin until it closes (bench/gpu.ts calls it in the one-file bundle). */
export async function workerMain(): Promise<void> {
  let state: State | null = null;
  for await (const line of readLines(Deno.stdin.readable)) {
    if (line.trim() === "") continue;
    let answer: Answer;
    try {
      const result = await handle(JSON.parse(line), state);
      state = result.state;
      // the device caches (constants, RoPE tables and masks per shape) are kept, not leaked
      answer = { ...result.answer, numTensors: tf.memory().numTensors - deviceConstantCount() };
    } catch (e) {
      answer = { error: e instanceof Error ? e.message : String(e) };
    }
    console.log(JSON.stringify(answer));
  }
  Deno.exit(0);
}

if (import.meta.main) await workerMain();
