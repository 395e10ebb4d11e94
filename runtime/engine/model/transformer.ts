/**
 * A Llama-style causal transformer written with tfjs-core ops: token embedding, pre-norm blocks of
 * RMSNorm → grouped-query attention with rotary position embeddings → residual, RMSNorm → SwiGLU
 * → residual, a final RMSNorm and the output projection (tied to the embedding or not).
 *
 * Parameter names are Hugging Face Llama's (`model.layers.0.self_attn.q_proj.weight`, …), so a
 * Llama-family checkpoint can load into it. Linear weights are kept here as [in, out] (a plain
 * `matMul(x, W)`, the fast case on wasm) and transposed to HF's [out, in] only on disk. RoPE uses
 * HF's rotate-half layout (first half of each head paired with the second half).
 *
 * What it leaves out: dropout (on-policy RL and the tiny SFT do not use it), biases (Llama has
 * none), padding inside prompts (the synthetic tasks' prompts all have one length; completions are
 * right-padded, which causal attention never lets earlier tokens see).
 *
 * @module
 */

import { oneHotFloat, tf } from "../backend.ts";
import { blasRunsMatMul } from "../blas.ts";
import { attentionBlas, blasAttention } from "../kernels/attention.ts";
import { fusedRmsNorm, fusedRmsNormRuns } from "../kernels/rms_norm.ts";
import { fusedRopeHeads } from "../kernels/rope.ts";
import { wasmBackendKernels } from "../kernels/simd.ts";
import type { ModelSpec } from "../../../dsl/plan.ts";
import { normalArray, type Rng } from "../random.ts";

/**
 * The model's dimensions: a plan's `ModelSpec` without the bookkeeping.
 *
 * @example
 * ```ts
 * const config: ModelConfig = modelConfig(compile(recipe).model);
 * config.vocab; // the tokenizer's vocabulary
 * ```
 */
export interface ModelConfig {
  vocab: number;
  dModel: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  ffnDim: number;
  contextLength: number;
  tiedEmbeddings: boolean;
  ropeTheta: number;
  normEps: number;
}

/**
 * The model config of a plan's model spec.
 *
 * @example
 * ```ts
 * const config = modelConfig(compile(recipe).model);
 * const params = initParams(config, new Rng(0));
 * ```
 */
export function modelConfig(spec: ModelSpec): ModelConfig {
  const { vocab, dModel, layers, heads, kvHeads, headDim, ffnDim, contextLength } = spec;
  const { tiedEmbeddings, ropeTheta, normEps } = spec;
  return {
    vocab,
    dModel,
    layers,
    heads,
    kvHeads,
    headDim,
    ffnDim,
    contextLength,
    tiedEmbeddings,
    ropeTheta,
    normEps,
  };
}

/**
 * Model weights by HF name. Variables while training, plain kept tensors for a frozen copy.
 *
 * @example
 * ```ts
 * const params: Params = weightsToTensors((await loadCheckpoint(dir)).weights, false);
 * params["model.embed_tokens.weight"]?.shape; // [vocab, dModel]
 * ```
 */
export type Params = Record<string, tf.Tensor>;

/** How one parameter is initialised. */
interface ParamShape {
  shape: number[];
  /** "ones" for norm gains, else the standard deviation of a normal draw. */
  init: "ones" | number;
}

/** Every parameter's shape (as stored here: linear weights [in, out]) and initialisation. */
export function paramShapes(config: ModelConfig): Record<string, ParamShape> {
  const { vocab, dModel: d, layers, heads, kvHeads, headDim, ffnDim } = config;
  const std = 0.02;
  const residual = std / Math.sqrt(2 * layers); // GPT-2: scale the projections into the stream
  const shapes: Record<string, ParamShape> = {
    "model.embed_tokens.weight": { shape: [vocab, d], init: std },
  };
  for (let l = 0; l < layers; l++) {
    const p = `model.layers.${l}.`;
    shapes[`${p}input_layernorm.weight`] = { shape: [d], init: "ones" };
    shapes[`${p}self_attn.q_proj.weight`] = { shape: [d, heads * headDim], init: std };
    shapes[`${p}self_attn.k_proj.weight`] = { shape: [d, kvHeads * headDim], init: std };
    shapes[`${p}self_attn.v_proj.weight`] = { shape: [d, kvHeads * headDim], init: std };
    shapes[`${p}self_attn.o_proj.weight`] = { shape: [heads * headDim, d], init: residual };
    shapes[`${p}post_attention_layernorm.weight`] = { shape: [d], init: "ones" };
    shapes[`${p}mlp.gate_proj.weight`] = { shape: [d, ffnDim], init: std };
    shapes[`${p}mlp.up_proj.weight`] = { shape: [d, ffnDim], init: std };
    shapes[`${p}mlp.down_proj.weight`] = { shape: [ffnDim, d], init: residual };
  }
  shapes["model.norm.weight"] = { shape: [d], init: "ones" };
  if (!config.tiedEmbeddings) shapes["lm_head.weight"] = { shape: [d, vocab], init: std };
  return shapes;
}

/** Whether a parameter is a linear weight stored transposed relative to HF ([in, out]). */
export function isLinear(name: string): boolean {
  return name.endsWith("_proj.weight") || name === "lm_head.weight";
}

/**
 * Fresh parameters drawn from `rng`, in `paramShapes` order, as tf.Variables.
 *
 * @example
 * ```ts
 * const plan = compile(recipe);
 * const params = initParams(modelConfig(plan.model), new Rng(plan.seed).fork("init"));
 * ```
 */
export function initParams(config: ModelConfig, rng: Rng): Record<string, tf.Variable> {
  const params: Record<string, tf.Variable> = {};
  for (const [name, { shape, init }] of Object.entries(paramShapes(config))) {
    const size = shape.reduce((a, b) => a * b, 1);
    const values = init === "ones" ? new Float32Array(size).fill(1) : normalArray(rng, size, init);
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
}

/** What `forward()` returns. */
export interface ForwardResult {
  /** [B, T - logitsFrom, V] */
  logits: tf.Tensor3D;
  /** [B, T - logitsFrom, d] the final-norm hidden states the logits are projected from. */
  hidden: tf.Tensor3D;
  /** Keys and values of every position so far, per layer. */
  cache: LayerCache[];
}

/** RMSNorm over the last axis with gain `w`: one fused step on wasm and cpu, else tfjs ops. */
function rmsNorm(x: tf.Tensor2D, w: tf.Tensor, eps: number): tf.Tensor2D {
  if (fusedRmsNormRuns()) return fusedRmsNorm(x, w, eps);
  const meanSquare = tf.mean(tf.square(x), -1, true); // [N, 1]
  return tf.mul(tf.mul(x, tf.rsqrt(tf.add(meanSquare, eps))), w);
}

/**
 * Vocabularies up to this size are embedded on wasm as `oneHot(ids) · table`: wasm's `gather`
 * takes ~10 ms for any table (1280 rows of 128), the product ~1 ms at 15 tokens and ~2 ms at
 * 512, and is exact (one term per output). Larger tables keep `gather`.
 */
const ONE_HOT_EMBED_MAX_VOCAB = 1024;

/**
 * Embedding lookup. `gather` has no gradient on wasm (its gradient needs `UnsortedSegmentSum`), so
 * there the table's gradient is written by hand as `oneHot(ids)ᵀ · dy`, a plain matmul; the
 * one-hot matrix is saved with `save` because tensors made in the forward pass are gone by the
 * time the backward pass runs. For small vocabularies the lookup itself is that product, whose
 * gradient is the same matmul.
 */
export function embed(table: tf.Tensor, ids: tf.Tensor1D, vocab: number): tf.Tensor2D {
  if (tf.getBackend() !== "wasm") return tf.gather(table, ids) as tf.Tensor2D; // [N, d]
  if (vocab <= ONE_HOT_EMBED_MAX_VOCAB) {
    return tf.matMul(oneHotFloat(ids, vocab) as tf.Tensor2D, table as tf.Tensor2D); // [N, d]
  }
  const f = tf.customGrad(
    ((e: tf.Tensor, oneHot: tf.Tensor, save: tf.GradSaveFunc) => {
      save([oneHot]);
      return {
        value: tf.gather(e, ids), // [N, d]
        gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
          const oh = saved[0] as tf.Tensor2D; // [N, V]
          return [tf.matMul(tf.transpose(oh), dy as tf.Tensor2D), tf.zerosLike(oh)]; // [V, d]
        },
      };
    }) as unknown as Parameters<typeof tf.customGrad>[0],
  );
  return f(table, oneHotFloat(ids, vocab)) as tf.Tensor2D;
}

/**
 * cos and sin of the rotary angles of T new tokens after `past` cached ones. Without padding the
 * positions are `past + t` for every row: [T, headDim] each. With left padding, row b's tokens are
 * numbered from its first real token (`past + t − padding[b]`, pads at 0): [B, 1, T, headDim].
 */
export function ropeTables(
  config: ModelConfig,
  past: number,
  time: number,
  padding: readonly number[] | null,
): [tf.Tensor, tf.Tensor] {
  const { headDim, ropeTheta } = config;
  const half = headDim / 2;
  const rows = padding ?? [0];
  const cos = new Float32Array(rows.length * time * headDim);
  const sin = new Float32Array(rows.length * time * headDim);
  rows.forEach((pad, b) => {
    for (let t = 0; t < time; t++) {
      const position = Math.max(0, past + t - pad);
      const at = (b * time + t) * headDim;
      for (let i = 0; i < half; i++) {
        const angle = position * ropeTheta ** (-(2 * i) / headDim);
        cos[at + i] = cos[at + half + i] = Math.cos(angle);
        sin[at + i] = sin[at + half + i] = Math.sin(angle);
      }
    }
  });
  const shape = padding ? [rows.length, 1, time, headDim] : [time, headDim];
  return [tf.tensor(cos, shape), tf.tensor(sin, shape)];
}

/** Rotary embedding, HF layout: x·cos + rotate_half(x)·sin, with rotate_half(x) = [−x₂, x₁]. */
export function rope(x: tf.Tensor4D, cos: tf.Tensor, sin: tf.Tensor): tf.Tensor4D {
  return tf.add(tf.mul(x, cos), tf.mul(rotateHalf(x), sin));
}

/**
 * rotate_half(x) = [−x₂, x₁] over the last axis. On wasm, and where OpenBLAS runs the products,
 * as one product with a signed permutation matrix: split, neg and concat (and their gradients)
 * cost ~10× more there. Exact either way: each output is one input times ±1.
 */
export function rotateHalf(x: tf.Tensor4D): tf.Tensor4D {
  const hd = x.shape[3];
  const half = hd / 2;
  const backend = tf.getBackend();
  if (backend === "wasm" || blasRunsMatMul(backend)) {
    const signs = new Float32Array(hd * hd); // [hd, hd]: out[j] = Σ_k x[k]·signs[k, j]
    for (let j = 0; j < half; j++) {
      signs[(j + half) * hd + j] = -1; // out[j] = −x[j + half]
      signs[j * hd + j + half] = 1; // out[j + half] = x[j]
    }
    const flat = tf.reshape(x, [-1, hd]) as tf.Tensor2D;
    return tf.reshape(tf.matMul(flat, tf.tensor2d(signs, [hd, hd])), x.shape);
  }
  const [x1, x2] = tf.split(x, [half, half], 3) as [tf.Tensor4D, tf.Tensor4D]; // [B, H, T, hd/2] each
  return tf.concat([tf.neg(x2), x1], 3); // [B, H, T, hd]
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

/** Grouped-query attention: each key/value head serves `heads / kvHeads` query heads. */
function repeatKv(x: tf.Tensor4D, repeats: number): tf.Tensor4D {
  if (repeats === 1) return x;
  const [b, kvHeads, s, hd] = x.shape;
  // Rank 4 throughout: tfjs has no tile gradient for rank 5. HF's repeat_interleave order.
  const flat = tf.reshape(x, [b, kvHeads, 1, s * hd]);
  const tiled = tf.tile(flat, [1, 1, repeats, 1]); // [B, kvH, rep, S·hd]
  return tf.reshape(tiled, [b, kvHeads * repeats, s, hd]);
}

/**
 * Additive attention mask for T new queries after `past` cached positions: −1e9 on keys after the
 * query (causal) and, with left padding, on row b's first `padding[b]` keys. [T, S] without
 * padding, [B, 1, T, S] with it (S = past + T); null when nothing is masked.
 */
function attentionBias(
  past: number,
  time: number,
  padding: readonly number[] | null,
): tf.Tensor | null {
  const keys = past + time;
  if (!padding && time === 1) return null;
  const rows = padding ?? [0];
  const bias = new Float32Array(rows.length * time * keys);
  rows.forEach((pad, b) => {
    for (let q = 0; q < time; q++) {
      const at = (b * time + q) * keys;
      for (let k = 0; k < keys; k++) if (k > past + q || k < pad) bias[at + k] = -1e9;
    }
  });
  return tf.tensor(bias, padding ? [rows.length, 1, time, keys] : [time, keys]);
}

/** softmax(q·kᵀ·scale + bias)·v: q [B, H, T, hd], k and v [B, H, S, hd]. */
function attention(
  q: tf.Tensor4D,
  k: tf.Tensor4D,
  v: tf.Tensor4D,
  scale: number,
  bias: tf.Tensor | null,
): tf.Tensor4D {
  let scores = tf.mul(tf.matMul(q, tf.transpose(k, [0, 1, 3, 2])), scale); // [B, H, T, S]
  if (bias) scores = tf.add(scores, bias);
  return tf.matMul(tf.softmax(scores), v);
}

/**
 * Runs the model on `ids` ([B, T] int32), continuing after `options.cache` when given.
 * Call inside `tf.tidy`; the returned cache holds new tensors (the caller disposes the old one).
 *
 * @example
 * ```ts
 * const { logits } = tf.tidy(() => forward(params, config, tf.tensor2d([[1, 4, 5]], [1, 3], "int32")));
 * logits.shape; // [1, 3, vocab]
 * ```
 */
export function forward(
  params: Params,
  config: ModelConfig,
  ids: tf.Tensor2D,
  options: ForwardOptions = {},
): ForwardResult {
  const { dModel: d, heads, kvHeads, headDim: hd, normEps: eps, vocab } = config;
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
  const padding = options.padding?.some((p) => p > 0) ? options.padding : null;
  if (padding && padding.length !== batch) {
    throw new Error(`Cannot run the model: ${padding.length} padding counts for ${batch} rows`);
  }
  const [cos, sin] = ropeTables(config, past, time, padding);
  const blas = attentionBlas(time, past + time, hd); // attention's small products through OpenBLAS
  const bias = blas ? null : attentionBias(past, time, padding);
  const scale = 1 / Math.sqrt(hd);
  const simd = wasmBackendKernels(); // RoPE and the split into heads in one pass, on wasm

  let x = embed(p("model.embed_tokens.weight"), tf.reshape(ids, [-1]) as tf.Tensor1D, vocab); // [N, d], N = B·T
  const cache: LayerCache[] = [];
  for (let l = 0; l < config.layers; l++) {
    const w = (name: string) => p(`model.layers.${l}.${name}.weight`);
    // 1) attention
    const h = rmsNorm(x, w("input_layernorm"), eps); // [N, d]
    const ropeHeads = (projection: string, count: number) => {
      const x = tf.matMul(h, w(projection)) as tf.Tensor2D;
      return simd
        ? fusedRopeHeads(simd, x, batch, time, count, hd, cos, sin)
        : rope(splitHeads(x, batch, time, count, hd), cos, sin);
    };
    const q = ropeHeads("self_attn.q_proj", heads); // [B, H, T, hd]
    let k = ropeHeads("self_attn.k_proj", kvHeads); // [B, kvH, T, hd]
    let v = splitHeads(tf.matMul(h, w("self_attn.v_proj")), batch, time, kvHeads, hd); // [B, kvH, T, hd]
    const earlier = options.cache?.[l];
    if (earlier) {
      k = tf.concat([earlier.k, k], 2); // [B, kvH, S, hd], S = past + T
      v = tf.concat([earlier.v, v], 2);
    }
    cache.push({ k, v });
    const kAll = repeatKv(k, heads / kvHeads); // [B, H, S, hd]
    const vAll = repeatKv(v, heads / kvHeads);
    const attended = blas
      ? blasAttention(blas, q, kAll, vAll, scale, padding)
      : attention(q, kAll, vAll, scale, bias); // [B, H, T, hd]
    const merged = tf.reshape(tf.transpose(attended, [0, 2, 1, 3]), [batch * time, heads * hd]); // [N, H·hd]
    x = tf.add(x, tf.matMul(merged, w("self_attn.o_proj"))); // [N, d]
    // 2) SwiGLU feed-forward
    const g = rmsNorm(x, w("post_attention_layernorm"), eps); // [N, d]
    const gate = tf.matMul(g, w("mlp.gate_proj")); // [N, F]
    const up = tf.matMul(g, w("mlp.up_proj")); // [N, F]
    const act = tf.mul(tf.mul(gate, tf.sigmoid(gate)), up); // silu(gate) · up
    x = tf.add(x, tf.matMul(act, w("mlp.down_proj"))); // [N, d]
  }
  // 3) output: only the positions whose logits are asked for
  const from = options.logitsFrom ?? 0;
  let out = tf.reshape(x, [batch, time, d]) as tf.Tensor3D;
  if (from > 0) out = tf.slice(out, [0, from, 0], [batch, time - from, d]);
  const rows = tf.reshape(out, [-1, d]) as tf.Tensor2D; // [B·(T−from), d]
  const normed = rmsNorm(rows, p("model.norm.weight"), eps);
  const head = config.tiedEmbeddings
    ? tf.transpose(p("model.embed_tokens.weight")) // [d, V]
    : p("lm_head.weight");
  const logits = tf.reshape(tf.matMul(normed, head as tf.Tensor2D), [batch, time - from, vocab]);
  const hidden = tf.reshape(normed, [batch, time - from, d]) as tf.Tensor3D;
  return { logits: logits as tf.Tensor3D, hidden, cache };
}

/**
 * Per-token log-probabilities of the completions in `ids` ([B, P + C] int32: prompts of length
 * `promptLength`, left-padded by `padding[b]` tokens, then completions), under logits divided by
 * `temperature` (as sampled): [B, C].
 *
 * @example
 * ```ts
 * const logp = tf.tidy(() => tokenLogProbs(params, config, ids, 7)); // [B, 4] for T = 11
 * ```
 */
export function tokenLogProbs(
  params: Params,
  config: ModelConfig,
  ids: tf.Tensor2D,
  promptLength: number,
  temperature = 1,
  padding?: readonly number[],
): tf.Tensor2D {
  const [batch, time] = ids.shape;
  const completion = time - promptLength;
  // Position t predicts token t + 1: feed all but the last token, read logits from the prompt's end.
  const inputs = tf.slice(ids, [0, 0], [batch, time - 1]); // [B, T − 1]
  const { logits } = forward(params, config, inputs, {
    logitsFrom: promptLength - 1,
    ...(padding ? { padding } : {}),
  }); // [B, C, V]
  const scaled = temperature === 1 ? logits : tf.div(logits, temperature);
  const logProbs = tf.logSoftmax(scaled); // [B, C, V]
  const targets = tf.slice(ids, [0, promptLength], [batch, completion]); // [B, C]
  const picked = tf.mul(logProbs, oneHotFloat(targets, config.vocab)); // [B, C, V]
  return tf.sum(picked, -1) as tf.Tensor2D; // [B, C]
}
