/**
 * Cost estimates for the declared model, from its shape alone: parameters, FLOPs of a forward
 * pass, of KV-cache sampling and of a training pass, and bytes of float32 tensors.
 *
 * FLOPs count a multiply-add as 2. Attention is counted dense over the whole causal square, as
 * TensorFlow.js computes it (scores and the weighted sum: 2 · 2 · len² · dModel per layer and
 * sequence). A backward pass costs twice a forward pass (the usual 6N rule for training).
 *
 * @module
 */

import type { LoraTargetName } from "./plan.ts";

/** The shape of a decoder-only transformer. */
export interface ModelShape {
  layers: number;
  dModel: number;
  heads: number;
  kvHeads: number;
  ffnDim: number;
  vocab: number;
  tiedEmbeddings: boolean;
  /** Width of one attention head, where a config gives it (Qwen3's). @default dModel / heads */
  headDim?: number;
}

/** Width of one attention head. */
export function headDim(m: ModelShape): number {
  return m.headDim ?? m.dModel / m.heads;
}

/** Width of the key (or value) projection: kvHeads · headDim. */
function kvDim(m: ModelShape): number {
  return m.kvHeads * headDim(m);
}

/** Weights in the matrices one token passes through: attention, SwiGLU, output head. */
export function matmulParams(m: ModelShape): number {
  const d = m.dModel;
  const attention = 2 * d * d + 2 * d * kvDim(m); // q and o, k and v
  const mlp = 3 * d * m.ffnDim; // gate, up, down
  return m.layers * (attention + mlp) + d * m.vocab;
}

/** Every parameter: embeddings, blocks (no biases, two RMSNorm gains each), the final norm. */
export function parameterCount(m: ModelShape): number {
  const d = m.dModel;
  const embeddings = m.vocab * d * (m.tiedEmbeddings ? 1 : 2);
  const blocks = m.layers * (2 * d * d + 2 * d * kvDim(m) + 3 * d * m.ffnDim + 2 * d);
  return embeddings + blocks + d;
}

/** FLOPs of one forward pass over `rows` sequences of `len` tokens. */
export function forwardFlops(m: ModelShape, rows: number, len: number): number {
  return rows * (2 * matmulParams(m) * len + m.layers * 4 * m.dModel * len * len);
}

/** FLOPs of forward and backward over `rows` sequences of `len` tokens (3× forward). */
export function trainFlops(m: ModelShape, rows: number, len: number): number {
  return 3 * forwardFlops(m, rows, len);
}

/**
 * FLOPs of sampling `newTokens` tokens after a prompt of `promptLen` with a KV cache: one prefill
 * over the prompt gives the first token; each later token is one position attending to the cache.
 */
export function samplingFlops(
  m: ModelShape,
  rows: number,
  promptLen: number,
  newTokens: number,
): number {
  let flops = forwardFlops(m, rows, promptLen);
  for (let i = 1; i < newTokens; i++) {
    const cached = promptLen + i; // positions attended to, this one included
    flops += rows * (2 * matmulParams(m) + m.layers * 4 * m.dModel * cached);
  }
  return flops;
}

/** Bytes of `count` float32 values. */
export function floatBytes(count: number): number {
  return 4 * count;
}

/**
 * Bytes of the activations a differentiated forward pass keeps for the backward pass: per layer
 * and token about 10·d (norm inputs, q, k, v, attention output, residuals), 4·ffn (gate, up,
 * activation, product) and 2·heads·len (scores and probabilities); then 3·vocab per token for the
 * log-probabilities at the peak of their backward pass: the logits, the softmax recomputed from
 * them, and the gradient (`logSoftmaxAt` in runtime/engine/kernels/log_softmax.ts gathers and
 * scatters at the targets: no one-hot over the vocabulary). Only the completion's positions have
 * logits, so over `len` tokens the vocabulary term is an upper bound.
 */
export function activationBytes(m: ModelShape, rows: number, len: number): number {
  const perToken = m.layers * (10 * m.dModel + 4 * m.ffnDim + 2 * m.heads * len) + 3 * m.vocab;
  return floatBytes(rows * len * perToken);
}

/** Bytes of the KV cache for `rows` sequences of up to `len` tokens, plus one row of logits each. */
export function samplingBytes(m: ModelShape, rows: number, len: number): number {
  return floatBytes(2 * m.layers * rows * len * kvDim(m) + rows * m.vocab);
}

/** Options of {@linkcode forwardBytes}. */
export interface ForwardBytesOptions {
  /**
   * Positions of each row whose logits are computed: the completion's in a log-probability
   * pass, the last one in a prefill. Counted only from {@linkcode LARGE_VOCAB} on.
   * @default len
   */
  logitPositions?: number;
  /** Adapters on the model. @default null */
  lora?: LoraShape | null;
}

/**
 * Bytes a forward pass without gradients allocates over `rows` sequences of `len` tokens: inside
 * `tf.tidy` every intermediate stays until the pass ends, so per layer and token about 16·d
 * (norms, q, k, v and their rotations, the attention output and its reshapes, projections,
 * residuals), 5·ffn (gate, up, sigmoid and two products), 4·heads·len (scores, scaled, masked
 * and softmax) and twice the adapters' values; then the logits and the two transients of their
 * log-probabilities (the shifted logits and their exponential, no one-hot): below
 * {@linkcode LARGE_VOCAB} 3·vocab at every position, from it the logits at `logitPositions` and
 * two transients of at most {@linkcode LOG_SOFTMAX_CHUNK_VALUES} each. It counts tfjs's own
 * kernels, whose attention keeps the scores; OpenBLAS's sampler needs less.
 */
export function forwardBytes(
  m: ModelShape,
  rows: number,
  len: number,
  options: ForwardBytesOptions = {},
): number {
  const lora = 2 * loraValues(m, options.lora ?? null);
  const layer = m.layers * (16 * m.dModel + 5 * m.ffnDim + 4 * m.heads * len + lora);
  if (m.vocab < LARGE_VOCAB) return floatBytes(rows * len * (layer + 3 * m.vocab));
  const logits = rows * (options.logitPositions ?? len);
  const transient = Math.min(logits, logSoftmaxChunkRows(m.vocab));
  return floatBytes(rows * len * layer + (logits + 2 * transient) * m.vocab);
}

/** Problems one evaluation decodes at once (`runtime/rl/evaluate.ts`). */
export const EVAL_BATCH = 512;

/**
 * Values (float32) each forward transient of the log-softmax may hold: 2²² = 16 MiB. A copy of
 * `LOG_SOFTMAX_CHUNK_VALUES` in runtime/engine/kernels/log_softmax.ts, which loads tfjs and so
 * cannot be imported here (tests/dsl/budget_test.ts checks that they agree).
 */
export const LOG_SOFTMAX_CHUNK_VALUES = 2 ** 22;

/**
 * The vocabulary from which the estimate counts logits only where the code computes them: at the
 * completion's positions of a log-probability pass, the last position of a prefill, and the
 * log-softmax's chunks. Below it, every position of a sequence is counted with three vocabulary
 * rows (an upper bound, and a small part of the estimate there: the synthetic tasks' characters,
 * stories260K's 512 tokens), so those plans keep the numbers and hashes they had.
 */
export const LARGE_VOCAB = 4096;

/** A projection LoRA may adapt (dsl/schema.ts's `LORA_TARGETS`). */
export type LoraTarget = LoraTargetName;

/** Low-rank adapters as the estimate sees them: their rank and the projections they adapt. */
export interface LoraShape {
  rank: number;
  targets: readonly LoraTarget[];
}

/** PEFT's default adapters, as `lora()` without options resolves them: rank 8 on q and v. */
export const DEFAULT_LORA: LoraShape = { rank: 8, targets: ["q_proj", "v_proj"] };

/** [in, out] of projection `target` in every layer of `m`. */
export function projectionDims(m: ModelShape, target: LoraTarget): [number, number] {
  const d = m.dModel;
  const q = m.heads * headDim(m);
  switch (target) {
    case "q_proj":
      return [d, q];
    case "k_proj":
    case "v_proj":
      return [d, kvDim(m)];
    case "o_proj":
      return [q, d];
    case "gate_proj":
    case "up_proj":
      return [d, m.ffnDim];
    case "down_proj":
      return [m.ffnDim, d];
  }
}

/**
 * The adapters' parameters: A [in, r] and B [r, out] of each adapted projection in every layer
 * (PEFT's count).
 */
export function loraParamCount(m: ModelShape, lora: LoraShape): number {
  const perLayer = lora.targets.reduce((n, t) => {
    const [inputs, outputs] = projectionDims(m, t);
    return n + lora.rank * (inputs + outputs);
  }, 0);
  return m.layers * perLayer;
}

/**
 * Values per token and layer that adapters add to a pass: x·A (r) and the scaled update
 * s·(x·A)·B (out) of each adapted projection, kept for the backward pass; where an adapter is on
 * the feed-forward, its SwiGLU runs op by op instead of fused, one more ffn-wide product.
 */
export function loraValues(m: ModelShape, lora: LoraShape | null): number {
  if (lora === null) return 0;
  const adapters = lora.targets.reduce((n, t) => n + lora.rank + projectionDims(m, t)[1], 0);
  const unfused =
    lora.targets.some((t) => t === "gate_proj" || t === "up_proj" || t === "down_proj")
      ? m.ffnDim
      : 0;
  return adapters + unfused;
}

/**
 * Bytes one transformer block holds in a differentiated pass over `rows` sequences of `len`
 * tokens: the activations it keeps for the backward pass (about 10·d, 4·ffn and 2·heads·len per
 * token, as {@linkcode activationBytes} counts them, and the adapters') and, as much again, the
 * backward pass's transients (`activationBytes` twice, as measured against the wasm heap).
 */
export function blockBytes(
  m: ModelShape,
  rows: number,
  len: number,
  lora: LoraShape | null = null,
): number {
  const perToken = 10 * m.dModel + 4 * m.ffnDim + 2 * m.heads * len + loraValues(m, lora);
  return 2 * floatBytes(rows * len * perToken);
}

/** Rows of logits the log-softmax takes at once in its forward pass (at least one). */
export function logSoftmaxChunkRows(vocab: number): number {
  return Math.max(1, Math.floor(LOG_SOFTMAX_CHUNK_VALUES / vocab));
}

/** One differentiated pass of an update: its rows and sequences, and how it is computed. */
export interface UpdatePass {
  /** Rows of one pass: a micro-batch, or the whole mini-batch. */
  rows: number;
  promptTokens: number;
  newTokens: number;
  /** Each block's activations recomputed in the backward pass (only its input kept). */
  gradientCheckpointing: boolean;
  /** Adapters on the frozen model, or null. */
  lora: LoraShape | null;
}

/** The activations of an update's differentiated pass, in parts. */
export interface UpdateActivations {
  /**
   * The blocks' activations and the backward pass's transients: every block's, or with
   * activation checkpointing one block's at a time, recomputed.
   */
  blocks: number;
  /** With activation checkpointing, the input of every block (and the last one's output). */
  blockInputs: number;
  /**
   * The log-probabilities at the peak of their backward pass: the logits [rows, C, V], and twice
   * their size while the softmax is recomputed and becomes their gradient (no one-hot; the
   * forward's chunks are freed before the backward pass starts). Measured on wasm, the live
   * buffers' peak is 0.96 of this at every vocabulary and row count tried
   * (tests/dsl/memory_measured_test.ts). Below {@linkcode LARGE_VOCAB}, three vocabulary rows at
   * every position, twice.
   */
  logSoftmax: number;
  total: number;
}

/**
 * What one differentiated pass of `pass.rows` rows holds at its peak: `2·activationBytes` for a
 * plain pass below {@linkcode LARGE_VOCAB}; with activation checkpointing the blocks' inputs and
 * one block recomputed at a time instead of every block; with a large vocabulary, logits only at
 * the completion's positions.
 */
export function updateActivations(m: ModelShape, pass: UpdatePass): UpdateActivations {
  const { rows, promptTokens: P, newTokens: C } = pass;
  const T = P + C;
  const logits = rows * C;
  const logSoftmax = m.vocab >= LARGE_VOCAB
    ? floatBytes(3 * logits * m.vocab)
    : 2 * floatBytes(3 * rows * T * m.vocab);
  const block = blockBytes(m, rows, T, pass.lora);
  const blocks = pass.gradientCheckpointing ? block : m.layers * block;
  const blockInputs = pass.gradientCheckpointing
    ? floatBytes((m.layers + 1) * rows * T * m.dModel)
    : 0;
  return { blocks, blockInputs, logSoftmax, total: blocks + blockInputs + logSoftmax };
}
