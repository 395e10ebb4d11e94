/**
 * A Llama-style causal transformer: token embedding, pre-norm blocks of RMSNorm → grouped-query
 * attention with rotary position embeddings (with Qwen2's q/k/v biases, Qwen3's per-head q/k
 * RMSNorm and Llama 3.1's RoPE scaling where the config asks: `architecture.ts`) → residual,
 * RMSNorm → SwiGLU → residual, a final RMSNorm and the output projection (tied to the embedding
 * or not). It is written in the fused
 * operations of a kernel set (`kernels/types.ts`), one line each, plus tfjs's reshapes and sums;
 * which implementation runs them is the kernel set's business, chosen once by `useBackend()`.
 *
 * Parameter names are Hugging Face Llama's (`model.layers.0.self_attn.q_proj.weight`, …), so a
 * Llama-family checkpoint can load into it. Linear weights are kept in the kernel set's layout
 * (`KernelSet.layout`: [in, out] for every set, a plain x·W) and transposed to HF's [out, in] only
 * on disk. RoPE uses HF's rotate-half layout (first half of each head paired with the second half).
 * Given LoRA adapters (`lora.ts`), `forward()` adds their low-rank updates to the projections they
 * target; without them every operation is the one it was before adapters existed.
 *
 * What it leaves out: dropout (on-policy RL and the tiny SFT do not use it), biases other than
 * Qwen2's on q, k and v (the Llama family has none), padding inside prompts (the synthetic tasks'
 * prompts all have one length; completions are right-padded, which causal attention never lets
 * earlier tokens see).
 *
 * @module
 */

import { tf } from "../tf.ts";
import type { KernelSet, LinearLayout, Rotary } from "../kernels/types.ts";
import { cachedTensors } from "../kernels/constants.ts";
import type { ModelConfig, Params } from "./config.ts";
import { normalArray, type Rng } from "../random.ts";
import { attentionProjections, type Projection, ropeInverseFrequencies } from "./architecture.ts";
import type { LoraAdapters } from "./lora.ts";

export { type ModelConfig, modelConfig, type Params } from "./config.ts";

/** How one parameter is initialised. */
interface ParamShape {
  shape: number[];
  /** "ones" for norm gains, "zeros" for biases, else the standard deviation of a normal draw. */
  init: "ones" | "zeros" | number;
}

/**
 * Every parameter's shape (linear weights in `layout`, the kernel set's) and initialisation.
 *
 * @example
 * ```ts
 * paramShapes(config)["model.layers.0.mlp.up_proj.weight"].shape; // [dModel, ffnDim]
 * ```
 */
export function paramShapes(
  config: ModelConfig,
  layout: LinearLayout = "[in, out]",
): Record<string, ParamShape> {
  const { vocab, dModel: d, layers, heads, kvHeads, headDim, ffnDim } = config;
  const linear = (inputs: number, outputs: number) =>
    layout === "[in, out]" ? [inputs, outputs] : [outputs, inputs];
  const std = 0.02;
  const residual = std / Math.sqrt(2 * layers); // GPT-2: scale the projections into the stream
  const shapes: Record<string, ParamShape> = {
    "model.embed_tokens.weight": { shape: [vocab, d], init: std },
  };
  for (let l = 0; l < layers; l++) {
    const p = `model.layers.${l}.`;
    shapes[`${p}input_layernorm.weight`] = { shape: [d], init: "ones" };
    shapes[`${p}self_attn.q_proj.weight`] = { shape: linear(d, heads * headDim), init: std };
    shapes[`${p}self_attn.k_proj.weight`] = { shape: linear(d, kvHeads * headDim), init: std };
    shapes[`${p}self_attn.v_proj.weight`] = { shape: linear(d, kvHeads * headDim), init: std };
    shapes[`${p}self_attn.o_proj.weight`] = { shape: linear(heads * headDim, d), init: residual };
    // zeros and ones draw nothing from the generator: the other weights are drawn as a Llama's
    for (const { bias, norm, heads } of Object.values(attentionProjections(config, l))) {
      if (bias) shapes[bias] = { shape: [heads * headDim], init: "zeros" };
      if (norm) shapes[norm] = { shape: [headDim], init: "ones" };
    }
    shapes[`${p}post_attention_layernorm.weight`] = { shape: [d], init: "ones" };
    shapes[`${p}mlp.gate_proj.weight`] = { shape: linear(d, ffnDim), init: std };
    shapes[`${p}mlp.up_proj.weight`] = { shape: linear(d, ffnDim), init: std };
    shapes[`${p}mlp.down_proj.weight`] = { shape: linear(ffnDim, d), init: residual };
  }
  shapes["model.norm.weight"] = { shape: [d], init: "ones" };
  if (!config.tiedEmbeddings) shapes["lm_head.weight"] = { shape: linear(d, vocab), init: std };
  return shapes;
}

/** Whether a parameter is a linear weight (whose layout a kernel set chooses). */
export function isLinear(name: string): boolean {
  return name.endsWith("_proj.weight") || name === "lm_head.weight";
}

/**
 * Fresh parameters drawn from `rng`, in `paramShapes` order, as tf.Variables.
 *
 * @example
 * ```ts
 * const plan = compile(recipe);
 * const params = initParams(modelConfig(plan.model), new Rng(plan.seed).fork("init"), kernels.layout);
 * ```
 */
export function initParams(
  config: ModelConfig,
  rng: Rng,
  layout: LinearLayout = "[in, out]",
): Record<string, tf.Variable> {
  const params: Record<string, tf.Variable> = {};
  for (const [name, { shape, init }] of Object.entries(paramShapes(config, layout))) {
    const size = shape.reduce((a, b) => a * b, 1);
    const values = init === "ones"
      ? new Float32Array(size).fill(1)
      : init === "zeros"
      ? new Float32Array(size)
      : normalArray(rng, size, init);
    const t = tf.tensor(values, shape);
    params[name] = tf.variable(t, true);
    t.dispose();
  }
  return params;
}

/** Cached keys and values of one layer: [B, kvHeads, S, headDim] each. */
export interface LayerCache {
  k: tf.Tensor4D;
  v: tf.Tensor4D;
}

/** Options of `forward()`. */
export interface ForwardOptions {
  /** Keys and values of earlier positions (sampling); the new tokens continue after them. */
  cache?: LayerCache[];
  /** Only compute logits from this position of `ids` on (saves the output projection). */
  logitsFrom?: number;
  /**
   * Left padding: row b's first `padding[b]` positions (counted from the start of the sequence,
   * cache included) are `<pad>`, masked as keys and not counted in positions. Pass the same array
   * on every call of a sampling loop.
   */
  padding?: readonly number[];
  /**
   * Activation checkpointing: keep only each transformer block's input for the backward pass and
   * recompute the block's activations there (`checkpointedBlock()`), trading one more forward pass
   * of every block for the activations of all but one block at a time. The loss and every gradient
   * are those of the plain pass (with `adapters`, the adapters' and the input's: the base weights
   * are frozen constants of each block). Not with `cache`, and the result's `cache` is then empty.
   * @default false
   */
  gradientCheckpointing?: boolean;
  /**
   * Low-rank adapters (`lora.ts`) added to the projections they target: y = x·W (+ b) +
   * s·(x·A)·B. Without them the model is the base model, as it always was.
   */
  adapters?: LoraAdapters;
}

/** What `forward()` returns. */
export interface ForwardResult {
  /** [B, T - logitsFrom, V] */
  logits: tf.Tensor3D;
  /** [B, T - logitsFrom, d] the final-norm hidden states the logits are projected from. */
  hidden: tf.Tensor3D;
  /** Keys and values of every position so far, per layer (none with `gradientCheckpointing`). */
  cache: LayerCache[];
}

/**
 * cos and sin of the rotary angles of T new tokens after `past` cached ones. Without padding the
 * positions are `past + t` for every row: [T, headDim] each. With left padding, row b's tokens are
 * numbered from its first real token (`past + t − padding[b]`, pads at 0): [B, 1, T, headDim].
 * Cached per shape, positions and padding on a device backend (`cachedTensors`): the caller must
 * not dispose them.
 */
export function ropeTables(
  config: ModelConfig,
  past: number,
  time: number,
  padding: readonly number[] | null,
): Rotary {
  const inverse = ropeInverseFrequencies(config); // [hd / 2]
  const rows = padding?.join() ?? "none";
  const key = `rope:${config.headDim}:${inverse.join()}:${past}:${time}:${rows}`;
  const make = () => ropeArrays(config.headDim, inverse, past, time, padding);
  const [cos, sin] = cachedTensors(key, make);
  return { cos: cos!, sin: sin! };
}

/** `ropeTables`'s cos and sin, made from arrays. */
function ropeArrays(
  headDim: number,
  inverse: Float64Array,
  past: number,
  time: number,
  padding: readonly number[] | null,
): [tf.Tensor, tf.Tensor] {
  const half = headDim / 2;
  const rows = padding ?? [0];
  const cos = new Float32Array(rows.length * time * headDim);
  const sin = new Float32Array(rows.length * time * headDim);
  rows.forEach((pad, b) => {
    for (let t = 0; t < time; t++) {
      const position = Math.max(0, past + t - pad);
      const at = (b * time + t) * headDim;
      for (let i = 0; i < half; i++) {
        const angle = position * inverse[i]!;
        cos[at + i] = cos[at + half + i] = Math.cos(angle);
        sin[at + i] = sin[at + half + i] = Math.sin(angle);
      }
    }
  });
  const shape = padding ? [rows.length, 1, time, headDim] : [time, headDim];
  return [tf.tensor(cos, shape), tf.tensor(sin, shape)];
}

/** [B·T, heads·hd] → [B, heads, T, hd] */
export function splitHeads(
  x: tf.Tensor2D,
  batch: number,
  time: number,
  heads: number,
  hd: number,
): tf.Tensor4D {
  return tf.transpose(tf.reshape(x, [batch, time, heads, hd]), [0, 2, 1, 3]) as tf.Tensor4D;
}

/**
 * `y` = x·W (+ b) of the weight `weight` with its LoRA update s·(x·A)·B added when `adapters`
 * adapt it (added after the bias, as PEFT adds it); `y` itself otherwise.
 */
function withAdapter(
  ops: KernelSet,
  y: tf.Tensor2D,
  x: tf.Tensor2D,
  weight: string,
  adapters: LoraAdapters | undefined,
): tf.Tensor2D {
  if (!adapters) return y;
  const module = weight.slice(0, -".weight".length);
  const a = adapters.params[`${module}.lora_A.weight`];
  const b = adapters.params[`${module}.lora_B.weight`];
  if (!a || !b) return y;
  const update = ops.linear(ops.linear(x, a), b); // [N, r] → [N, out]
  return tf.add(y, tf.mul(update, adapters.scaling));
}

/**
 * One of attention's input projections of h [N, d] as the architecture has it
 * (`attentionProjections`): h·W, plus the bias (and the adapter's update), then RMSNorm over each
 * head → [N, heads·hd].
 */
function project(
  ops: KernelSet,
  p: (name: string) => tf.Tensor,
  h: tf.Tensor2D,
  projection: Projection,
  headDim: number,
  eps: number,
  adapters: LoraAdapters | undefined,
): tf.Tensor2D {
  let y = ops.linear(h, p(projection.weight)); // [N, heads·hd]
  if (projection.bias) y = tf.add(y, p(projection.bias));
  y = withAdapter(ops, y, h, projection.weight, adapters);
  if (!projection.norm) return y;
  const rows = tf.reshape(y, [-1, headDim]) as tf.Tensor2D; // [N·heads, hd]
  return tf.reshape(ops.rmsNorm(rows, p(projection.norm), eps), y.shape);
}

/** [B, heads, T, hd] → [B·T, heads·hd] */
function mergeHeads(x: tf.Tensor4D): tf.Tensor2D {
  const [batch, heads, time, hd] = x.shape;
  return tf.reshape(tf.transpose(x, [0, 2, 1, 3]), [batch * time, heads * hd]);
}

/** Grouped-query attention: each key/value head serves `heads / kvHeads` query heads. */
function repeatKv(x: tf.Tensor4D, repeats: number): tf.Tensor4D {
  if (repeats === 1) return x;
  const [b, kvHeads, s, hd] = x.shape;
  // Rank 4 throughout: tfjs has no tile gradient for rank 5. HF's repeat_interleave order.
  const flat = tf.reshape(x, [b, kvHeads, 1, s * hd]);
  const tiled = tf.tile(flat, [1, 1, repeats, 1]); // [B, kvH, rep, S·hd]
  return tf.reshape(tiled, [b, kvHeads * repeats, s, hd]);
}

/** What every block of one forward pass shares. */
interface BlockShape {
  batch: number;
  time: number;
  /** Left padding counts, or null for none. */
  padding: readonly number[] | null;
  /** [T, hd], or [B, 1, T, hd] padded */
  rotary: Rotary;
}

/**
 * Transformer block `l` on the residual stream x [N, d], N = B·T, after `earlier` cached keys and
 * values: pre-norm attention and SwiGLU, each added back to the stream.
 */
function block(
  ops: KernelSet,
  p: (name: string) => tf.Tensor,
  config: ModelConfig,
  l: number,
  x: tf.Tensor2D,
  { batch, time, padding, rotary }: BlockShape,
  earlier: LayerCache | undefined,
  adapters?: LoraAdapters,
): { x: tf.Tensor2D; k: tf.Tensor4D; v: tf.Tensor4D } {
  const { heads, kvHeads, headDim: hd, normEps: eps } = config;
  const w = (name: string) => p(`model.layers.${l}.${name}.weight`);
  // 1) attention
  const h = ops.rmsNorm(x, w("input_layernorm"), eps); // [N, d]
  const projections = attentionProjections(config, l);
  const projected = (which: "q" | "k" | "v") =>
    project(ops, p, h, projections[which], hd, eps, adapters);
  const q = ops.ropeHeads(projected("q"), heads, rotary); // [B, H, T, hd]
  let k = ops.ropeHeads(projected("k"), kvHeads, rotary); // [B, kvH, T, hd]
  let v = splitHeads(projected("v"), batch, time, kvHeads, hd); // [B, kvH, T, hd]
  if (earlier) {
    k = tf.concat([earlier.k, k], 2); // [B, kvH, S, hd], S = past + T
    v = tf.concat([earlier.v, v], 2);
  }
  const repeats = heads / kvHeads;
  const attended = ops.attention(q, repeatKv(k, repeats), repeatKv(v, repeats), padding); // [B, H, T, hd]
  const merged = mergeHeads(attended); // [N, H·hd]
  const o = `model.layers.${l}.self_attn.o_proj.weight`;
  x = tf.add(x, withAdapter(ops, ops.linear(merged, p(o)), merged, o, adapters)); // [N, d]
  // 2) SwiGLU feed-forward
  const g = ops.rmsNorm(x, w("post_attention_layernorm"), eps); // [N, d]
  x = tf.add(x, feedForward(ops, p, g, l, adapters)); // [N, d]
  return { x, k, v };
}

/** tfjs-core's engine, as far as `checkpointedBlock()` reaches into it. */
interface TapeEngine {
  state: { activeTape: unknown };
}

/**
 * `block()` l as one differentiable operation (tf.customGrad) whose backward pass recomputes it:
 * the forward keeps only its input x and the rotary tables (and references to the block's
 * parameters, which live anyway); the gradient function reruns the block under a tape and returns
 * its vector-Jacobian product with respect to x and the block's differentiated tensors. The
 * recomputed activations are the forward's bit for bit (same kernels, same inputs), so the
 * gradients are those of the plain pass.
 *
 * tf.customGrad differentiates only its explicit inputs, so every tensor whose gradient is wanted
 * is one: without adapters, every parameter of the layer; with `adapters`, the layer's adapter
 * tensors only, the base weights being frozen (LoRA's contract, `lora.ts`): they enter the block
 * as constants, and no gradient is computed for them.
 */
function checkpointedBlock(
  ops: KernelSet,
  params: Params,
  config: ModelConfig,
  l: number,
  x: tf.Tensor2D,
  shape: BlockShape,
  adapters: LoraAdapters | undefined,
): tf.Tensor2D {
  const prefix = `model.layers.${l}.`;
  const layer = (names: string[]) => names.filter((name) => name.startsWith(prefix));
  // the differentiated tensors: the base weights', or the adapters' (the base then constant)
  const names = adapters ? layer(Object.keys(adapters.params)) : layer(Object.keys(params));
  const source: Record<string, tf.Tensor> = adapters ? adapters.params : params;
  const run = (inputs: tf.Tensor[], rotary: Rotary): tf.Tensor2D => {
    const local = new Map(names.map((name, i) => [name, inputs[i + 1]!]));
    const p = (name: string) => {
      const t = adapters ? params[name] : local.get(name);
      if (!t) throw new Error(`The model has no parameter '${name}'`);
      return t;
    };
    const adapted = adapters && {
      ...adapters,
      params: Object.fromEntries(local) as Record<string, tf.Variable>,
    };
    const x = inputs[0] as tf.Tensor2D;
    return block(ops, p, config, l, x, { ...shape, rotary }, undefined, adapted).x;
  };
  // x, then the differentiated tensors, then the rotary tables (constants: their gradient is zero)
  const inputs = [x, ...names.map((name) => source[name]!), shape.rotary.cos, shape.rotary.sin];
  const differentiated = names.length + 1;
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const save = args.pop() as tf.GradSaveFunc;
    const xs = args as tf.Tensor[];
    save(xs); // clones sharing the inputs' data: nothing new is held but x and the tables
    return {
      value: run(xs.slice(0, differentiated), shape.rotary),
      gradFunc(dy: tf.Tensor, saved: tf.Tensor[]) {
        const [cos, sin] = saved.slice(differentiated) as [tf.Tensor, tf.Tensor];
        const f = (...xs: tf.Tensor[]) => run(xs, { cos, sin });
        // tf.grads from inside a backward pass would start the engine's tape afresh and drop it
        // when done, losing the outer pass's: keep it and put it back.
        const engine = tf.engine() as unknown as TapeEngine;
        const outer = engine.state.activeTape;
        try {
          const grads = tf.grads(f)(saved.slice(0, differentiated), dy);
          return [...grads, tf.zerosLike(cos), tf.zerosLike(sin)];
        } finally {
          engine.state.activeTape = outer;
        }
      },
    };
  });
  return op(...inputs) as tf.Tensor2D;
}

/**
 * Layer `l`'s SwiGLU of g [N, d]: the kernel set's fused `swiGlu`, or, where adapters target one
 * of its projections, the same ops (`swiGlu` in `kernels/tfjs.ts`, which every set runs) one by
 * one with the adapters' updates added.
 */
function feedForward(
  ops: KernelSet,
  p: (name: string) => tf.Tensor,
  g: tf.Tensor2D,
  l: number,
  adapters: LoraAdapters | undefined,
): tf.Tensor2D {
  const name = (which: string) => `model.layers.${l}.mlp.${which}.weight`;
  const [gate, up, down] = [name("gate_proj"), name("up_proj"), name("down_proj")];
  const adapted = adapters !== undefined &&
    [gate, up, down].some((w) =>
      `${w.slice(0, -".weight".length)}.lora_A.weight` in adapters.params
    );
  if (!adapted) return ops.swiGlu(g, p(gate), p(up), p(down)); // [N, d]
  const linear = (x: tf.Tensor2D, w: string) =>
    withAdapter(ops, ops.linear(x, p(w)), x, w, adapters);
  const gated = linear(g, gate); // [N, F]
  const hidden = tf.mul(tf.mul(gated, tf.sigmoid(gated)), linear(g, up)) as tf.Tensor2D; // [N, F]
  return linear(hidden, down); // [N, d]
}

/**
 * Runs the model on `ids` ([B, T] int32) with the kernel set `ops`, continuing after
 * `options.cache` when given. Call inside `tf.tidy`; the returned cache holds new tensors (the
 * caller disposes the old one).
 *
 * @example
 * ```ts
 * const { kernels } = await useBackend("wasm");
 * const ids = tf.tensor2d([[1, 4, 5]], [1, 3], "int32");
 * const { logits } = tf.tidy(() => forward(kernels, params, config, ids));
 * logits.shape; // [1, 3, vocab]
 * ```
 */
export function forward(
  ops: KernelSet,
  params: Params,
  config: ModelConfig,
  ids: tf.Tensor2D,
  options: ForwardOptions = {},
): ForwardResult {
  const { dModel: d, normEps: eps, vocab } = config;
  const [batch, time] = ids.shape;
  const past = options.cache?.[0]?.k.shape[2] ?? 0;
  if (past + time > config.contextLength) {
    throw new Error(
      `Cannot run the model on ${past + time} positions: its context length is ` +
        `${config.contextLength}`,
    );
  }
  const p = (name: string) => {
    const t = params[name];
    if (!t) throw new Error(`The model has no parameter '${name}'`);
    return t;
  };
  if (options.gradientCheckpointing && options.cache) {
    throw new Error(
      "Cannot run the model with gradientCheckpointing and a KV cache: it is for training",
    );
  }
  const padding = options.padding?.some((p) => p > 0) ? options.padding : null;
  if (padding && padding.length !== batch) {
    throw new Error(`Cannot run the model: ${padding.length} padding counts for ${batch} rows`);
  }
  const adapters = options.adapters;
  if (adapters && adapters.layout !== ops.layout) {
    throw new Error(
      `Cannot run the model with LoRA adapters in layout ${adapters.layout} on a kernel set ` +
        `of layout ${ops.layout}`,
    );
  }
  const rotary = ropeTables(config, past, time, padding); // [T, hd], or [B, 1, T, hd] padded

  let x = ops.embed(p("model.embed_tokens.weight"), tf.reshape(ids, [-1]), vocab); // [N, d], N = B·T
  const cache: LayerCache[] = [];
  const shape: BlockShape = { batch, time, padding, rotary };
  for (let l = 0; l < config.layers; l++) {
    if (options.gradientCheckpointing) {
      x = checkpointedBlock(ops, params, config, l, x, shape, adapters);
      continue;
    }
    // One block's intermediates are freed when it is done, unless a gradient saved them (tfjs
    // keeps what an op saves for its backward pass): held to the caller's tidy, a forward pass
    // without gradient (log-probs of π_old, a reference) kept every layer's activations at once.
    const input = x;
    const out = tf.tidy(() => block(ops, p, config, l, input, shape, options.cache?.[l], adapters));
    x = out.x;
    cache.push({ k: out.k, v: out.v });
  }
  // 3) output: only the positions whose logits are asked for
  const from = options.logitsFrom ?? 0;
  let out = tf.reshape(x, [batch, time, d]) as tf.Tensor3D;
  if (from > 0) out = tf.slice(out, [0, from, 0], [batch, time - from, d]);
  const rows = tf.reshape(out, [-1, d]) as tf.Tensor2D; // [B·(T−from), d]
  const normed = ops.rmsNorm(rows, p("model.norm.weight"), eps); // [B·(T−from), d]
  const projected = config.tiedEmbeddings
    ? ops.unembed(normed, p("model.embed_tokens.weight"))
    : ops.linear(normed, p("lm_head.weight")); // [B·(T−from), V]
  const logits = tf.reshape(projected, [batch, time - from, vocab]) as tf.Tensor3D;
  const hidden = tf.reshape(normed, [batch, time - from, d]) as tf.Tensor3D;
  return { logits, hidden, cache };
}

/** Options of `tokenLogProbs()`. */
export interface TokenLogProbsOptions {
  /**
   * Recompute each transformer block in the backward pass instead of keeping its activations
   * (`ForwardOptions.gradientCheckpointing`): the same values and gradients, less memory.
   * @default false
   */
  gradientCheckpointing?: boolean;
  /** LoRA adapters on the projections they target (`ForwardOptions.adapters`). */
  adapters?: LoraAdapters;
}

/**
 * Per-token log-probabilities of the completions in `ids` ([B, P + C] int32: prompts of length
 * `promptLength`, left-padded by `padding[b]` tokens, then completions), under logits divided by
 * `temperature` (as sampled), with the kernel set `ops` and LoRA `adapters` when given: [B, C].
 *
 * @example
 * ```ts
 * const logp = tf.tidy(() => tokenLogProbs(kernels, params, config, ids, 7)); // [B, 4] for T = 11
 * ```
 */
export function tokenLogProbs(
  ops: KernelSet,
  params: Params,
  config: ModelConfig,
  ids: tf.Tensor2D,
  promptLength: number,
  temperature = 1,
  padding?: readonly number[],
  options: TokenLogProbsOptions = {},
): tf.Tensor2D {
  const [batch, time] = ids.shape;
  const completion = time - promptLength;
  // Position t predicts token t + 1: feed all but the last token, read logits from the prompt's end.
  const inputs = tf.slice(ids, [0, 0], [batch, time - 1]); // [B, T − 1]
  const { logits } = forward(ops, params, config, inputs, {
    logitsFrom: promptLength - 1,
    ...(padding ? { padding } : {}),
    ...(options.gradientCheckpointing ? { gradientCheckpointing: true } : {}),
    ...(options.adapters ? { adapters: options.adapters } : {}),
  }); // [B, C, V]
  const targets = tf.slice(ids, [0, promptLength], [batch, completion]); // [B, C]
  // The kernel divides by the temperature itself: no [B, C, V] copy held for the backward pass.
  return ops.logSoftmaxAt(logits, targets, { temperature }); // [B, C]
}
