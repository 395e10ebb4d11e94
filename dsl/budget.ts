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

/** The shape of a decoder-only transformer. */
export interface ModelShape {
  layers: number;
  dModel: number;
  heads: number;
  kvHeads: number;
  ffnDim: number;
  vocab: number;
  tiedEmbeddings: boolean;
}

/** Width of one attention head. */
export function headDim(m: ModelShape): number {
  return m.dModel / m.heads;
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

/**
 * Bytes a forward pass without gradients allocates over `rows` sequences of `len` tokens: inside
 * `tf.tidy` every intermediate stays until the pass ends, so per layer and token about 16·d
 * (norms, q, k, v and their rotations, the attention output and its reshapes, projections,
 * residuals), 5·ffn (gate, up, sigmoid and two products) and 4·heads·len (scores, scaled, masked
 * and softmax); then 3·vocab per token for the logits and the two transients of their
 * log-probabilities (the shifted logits and their exponential, each at most 16 MiB for larger
 * logits; no one-hot). It counts tfjs's own kernels, whose attention keeps the scores; OpenBLAS's
 * sampler needs less.
 */
export function forwardBytes(m: ModelShape, rows: number, len: number): number {
  const perToken = m.layers * (16 * m.dModel + 5 * m.ffnDim + 4 * m.heads * len) + 3 * m.vocab;
  return floatBytes(rows * len * perToken);
}

/** Problems one evaluation decodes at once (`runtime/rl/evaluate.ts`). */
export const EVAL_BATCH = 512;
