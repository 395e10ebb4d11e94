/**
 * log softmax(logits) at each row's target token, forward and gradient, without the one-hot
 * [B, C, V] tensor the textbook formula `Σ_v logSoftmax(logits)·oneHot(targets)` builds: at
 * Qwen's vocabulary of 151,936 that one-hot, float32, is 608 KB per token (2.5 GB for 4,096
 * tokens), and the formula holds it, its int32 original and the product besides.
 *
 * For a row x of the logits [N, V] (N = B·C) at temperature τ, s = x/τ, its target t, with
 * m = max(s) and ℓ = log Σ_v exp(s_v − m):
 *
 *     value  = (s_t − m) − ℓ                          gathered at t, never a [N, V] product
 *     ∂/∂x_v = dy · (1[v = t] − p_v) / τ,   p = exp((s − m) − ℓ)
 *
 * The gradient is written as p·(−dy) for every v, then dy + (−p_t·dy) scattered into the target
 * positions (`tensorScatterUpdate`), then divided by τ: the same float32 operations, in the same
 * order, as tfjs's own division and `logSoftmax` gradient under the one-hot product, so both
 * directions give the bits of `Σ_v logSoftmax(logits / τ)·oneHot(targets)` on the same backend
 * (tests/runtime/engine/kernels/ check it on cpu, wasm and webgpu). Taking τ here spares the
 * caller a [N, V] copy of the logits divided by τ, held from the forward pass to the backward.
 *
 * Memory (float32; N·V is the size of the logits, a chunk ⌊{@linkcode LOG_SOFTMAX_CHUNK_VALUES} /
 * V⌋ rows, at least one):
 * - forward: at most two transients of min(N, chunk) rows at a time (s − m and its exponential,
 *   or the rows and s); it keeps m and ℓ (N values each) for the gradient, and a reference to the
 *   logits, which the caller holds.
 * - gradient: at most two [N, V] tensors at a time while the softmax is recomputed from the
 *   logits, one of which becomes ∂/∂logits itself: the logits plus twice their size at the peak,
 *   no one-hot. The recomputation is not chunked: the gradient is one [N, V] tensor, and assembling
 *   it from chunks would hold the chunks and it at once.
 *
 * @module
 */

import { tf } from "../tf.ts";
import { cachedTensors, deviceConstant } from "./constants.ts";
import type { Values } from "./memory.ts";
import type { KernelSet } from "./types.ts";

/**
 * Values (float32) each forward transient may hold: 2²² = 16 MiB. Logits with more values are
 * taken a chunk of rows at a time; smaller ones (every model trained in the tests) in one pass.
 */
export const LOG_SOFTMAX_CHUNK_VALUES: number = 2 ** 22;

/** Values one tensor may index with int32 flat indices (the logits' N·V). */
const MAX_VALUES = 2 ** 31 - 1;

/** Options of {@linkcode logSoftmaxAt}. */
export interface LogSoftmaxAtOptions {
  /**
   * τ: the log-probabilities are those of softmax(logits / τ), as sampled at temperature τ.
   * @default 1
   */
  temperature?: number;
  /**
   * Values each forward transient may hold: rows are taken ⌊chunkValues / V⌋ (at least one) at a
   * time. @default LOG_SOFTMAX_CHUNK_VALUES
   */
  chunkValues?: number;
}

/** The flat index row·V + targets[row] of each row's target in the logits [N·V]: [N] int32. */
function flatTargets(targets: tf.Tensor, rows: number, vocab: number): tf.Tensor1D {
  // The row offsets are made here rather than by tf.range, which webgpu computes in float32, and
  // kept on the device for the next call of this shape (`cachedTensors`).
  const [offsets] = cachedTensors(`row-offsets:${rows}:${vocab}`, () => [
    tf.tensor1d(Int32Array.from({ length: rows }, (_, r) => r * vocab), "int32"),
  ]);
  return tf.add(offsets!, tf.reshape(targets, [rows])) as tf.Tensor1D;
}

/**
 * Rows `from` … `from + rows − 1` of `x` [N, V] divided by `temperature`, s: their max m
 * [rows, 1], log Σ exp(s − m) ℓ [rows, 1], and (s_t − m) − ℓ at each row's target [rows].
 */
function pickRows(
  x: tf.Tensor2D,
  targets: tf.Tensor1D,
  temperature: number,
  from: number,
  rows: number,
): { max: tf.Tensor2D; logSum: tf.Tensor2D; value: tf.Tensor1D } {
  return tf.tidy(() => {
    const vocab = x.shape[1];
    const whole = rows === x.shape[0];
    const part = whole ? x : tf.slice(x, [from, 0], [rows, vocab]); // [r, V]
    const scaled = temperature === 1 ? part : tf.div(part, deviceConstant(temperature)); // [r, V]
    if (scaled !== part && part !== x) part.dispose();
    const max = tf.max(scaled, 1, true) as tf.Tensor2D; // [r, 1]
    const shifted = tf.sub(scaled, max); // [r, V]
    if (scaled !== x) scaled.dispose();
    const own = whole ? targets : tf.slice(targets, [from], [rows]); // [r]
    const picked = tf.gather(tf.reshape(shifted, [rows * vocab]), flatTargets(own, rows, vocab));
    const exps = tf.exp(shifted); // [r, V]
    shifted.dispose();
    const logSum = tf.log(tf.sum(exps, 1, true)) as tf.Tensor2D; // [r, 1]
    exps.dispose();
    // (s_t − m) − ℓ, each step rounded as log-softmax rounds it at every v, then picked
    const value = tf.sub(picked, tf.reshape(logSum, [rows])) as tf.Tensor1D; // [r]
    return { max, logSum, value };
  });
}

/**
 * The gradient ∂/∂x = dy·(1[v = t] − p)/τ of the picked log-softmax at x [N, V], from its rows'
 * max and log-sum of x/τ, in the logits' `shape` (see the module doc for the order of operations
 * and the memory it holds).
 */
function pickedGradient(
  x: tf.Tensor2D,
  saved: { max: tf.Tensor; logSum: tf.Tensor; at: tf.Tensor1D },
  temperature: number,
  dy: tf.Tensor,
  shape: number[],
): tf.Tensor {
  return tf.tidy(() => {
    const [rows, vocab] = x.shape;
    const scaled = temperature === 1 ? x : tf.div(x, deviceConstant(temperature)); // [N, V]
    const shifted = tf.sub(scaled, saved.max); // [N, V]
    if (scaled !== x) scaled.dispose();
    const logProbs = tf.sub(shifted, saved.logSum); // [N, V]
    shifted.dispose();
    const probs = tf.exp(logProbs); // [N, V]
    logProbs.dispose();
    const dyRows = tf.reshape(dy, [rows, 1]); // [N, 1]
    const away = tf.mul(probs, tf.neg(dyRows)); // [N, V] −p·dy: the gradient off the targets
    probs.dispose();
    const flat = tf.reshape(away, [rows * vocab]); // [N·V]
    const onTarget = tf.add(tf.reshape(dyRows, [rows]), tf.gather(flat, saved.at)); // [N] dy − p_t·dy
    const grad = tf.tensorScatterUpdate(flat, tf.reshape(saved.at, [rows, 1]), onTarget); // [N·V]
    tf.dispose([away, flat]);
    if (temperature === 1) return tf.reshape(grad, shape);
    const unscaled = tf.div(grad, deviceConstant(temperature)); // [N·V] through s = x/τ
    grad.dispose();
    return tf.reshape(unscaled, shape);
  });
}

/**
 * log softmax(logits / τ) [B, C, V] at each row's target token `targets` [B, C] (int32) → [B, C],
 * differentiable with respect to the logits; no one-hot over the vocabulary (see the module doc
 * for the memory it holds). Every target must be in [0, V): one outside is not detected.
 *
 * @example
 * ```ts
 * const logits = tf.tensor3d([[[0, Math.log(3)]]]); // [1, 1, 2]
 * const targets = tf.tensor2d([[1]], [1, 1], "int32");
 * logSoftmaxAt(logits, targets); // [[log(3/4)]]
 * logSoftmaxAt(logits, targets, { temperature: 2 }); // [[log(√3 / (1 + √3))]]
 * ```
 */
export function logSoftmaxAt(
  logits: tf.Tensor3D,
  targets: tf.Tensor2D,
  options: LogSoftmaxAtOptions = {},
): tf.Tensor2D {
  const [batch, count, vocab] = logits.shape;
  const rows = batch * count;
  if (rows * vocab > MAX_VALUES) {
    throw new Error(
      `Cannot take log-probs of ${rows} tokens over a vocabulary of ${vocab}: the logits must ` +
        `hold at most 2^31 − 1 values (int32 indices): current size is ${rows * vocab}`,
    );
  }
  const temperature = options.temperature ?? 1;
  const chunkValues = options.chunkValues ?? LOG_SOFTMAX_CHUNK_VALUES;
  const chunk = Math.max(1, Math.min(rows, Math.floor(chunkValues / vocab)));
  const f = tf.customGrad(
    ((input: tf.Tensor3D, save: tf.GradSaveFunc) => {
      const x = tf.reshape(input, [rows, vocab]) as tf.Tensor2D; // [N, V]
      const ids = tf.reshape(targets, [rows]) as tf.Tensor1D; // [N]
      const parts: { max: tf.Tensor2D; logSum: tf.Tensor2D; value: tf.Tensor1D }[] = [];
      for (let from = 0; from < rows; from += chunk) {
        parts.push(pickRows(x, ids, temperature, from, Math.min(chunk, rows - from)));
      }
      const only = parts.length === 1 ? parts[0]! : null;
      const max = only?.max ?? tf.concat(parts.map((p) => p.max)); // [N, 1]
      const logSum = only?.logSum ?? tf.concat(parts.map((p) => p.logSum)); // [N, 1]
      const value = only?.value ?? tf.concat(parts.map((p) => p.value)); // [N]
      save([x, max, logSum, flatTargets(ids, rows, vocab)]);
      return {
        value: tf.reshape(value, [batch, count]),
        gradFunc: (dy: tf.Tensor, [xs, max, logSum, at]: tf.Tensor[]) =>
          pickedGradient(
            xs as tf.Tensor2D,
            { max: max!, logSum: logSum!, at: at as tf.Tensor1D },
            temperature,
            dy,
            logits.shape,
          ),
      };
    }) as unknown as Parameters<typeof tf.customGrad>[0],
  );
  return f(logits) as tf.Tensor2D;
}

/**
 * `logSoftmaxAt` as JavaScript loops over the backend's memory (`values`), for the cpu kernel set:
 * tfjs's cpu kernels spend ~100 ns a value on broadcasts, several times the arithmetic, over
 * logits of millions of values (bench/RESULTS.md, "log-probs at real vocabulary sizes"). Each step
 * is rounded to float32 where the cpu kernels store it (sums in float64), so the bits are those of
 * the ops; the forward pass allocates nothing of [N, V], the gradient only itself.
 *
 * @example
 * ```ts
 * const kernels = { ...cpuKernels(null), logSoftmaxAt: loopLogSoftmaxAt(cpuValues) };
 * ```
 */
export function loopLogSoftmaxAt(values: Values): KernelSet["logSoftmaxAt"] {
  return (logits, targets, options = {}) => {
    const [batch, count, vocab] = logits.shape;
    const rows = batch * count;
    const tau = Math.fround(options.temperature ?? 1); // a float32 scalar tensor, as tf.div takes it
    const ids = targets.dataSync();
    const maxes = new Float32Array(rows);
    const logSums = new Float32Array(rows);
    const f = tf.customGrad(
      ((input: tf.Tensor3D, save: tf.GradSaveFunc) => {
        save([input]);
        const value = tf.fill([batch, count], 0) as tf.Tensor2D; // fresh, written once here
        const [xs, out] = values([input, value]);
        for (let r = 0; r < rows; r++) {
          const row = xs!.subarray(r * vocab, (r + 1) * vocab);
          const s = (v: number) => (tau === 1 ? row[v]! : Math.fround(row[v]! / tau));
          let max = s(0);
          for (let v = 0; v < vocab; v++) {
            const sv = s(v);
            if (Number.isNaN(sv) || sv > max) max = sv;
          }
          let sum = 0;
          for (let v = 0; v < vocab; v++) sum += Math.fround(Math.exp(Math.fround(s(v) - max)));
          const logSum = Math.fround(Math.log(Math.fround(sum)));
          maxes[r] = max;
          logSums[r] = logSum;
          out![r] = Math.fround(s(ids[r]!) - max) - logSum;
        }
        return {
          value,
          gradFunc: (dy: tf.Tensor, [x]: tf.Tensor[]) => {
            const grad = tf.fill(logits.shape, 0); // [B, C, V], fresh
            const [xs, dys, g] = values([x!, dy, grad]);
            for (let r = 0; r < rows; r++) {
              const row = xs!.subarray(r * vocab, (r + 1) * vocab);
              const gRow = g!.subarray(r * vocab, (r + 1) * vocab);
              const s = (v: number) => (tau === 1 ? row[v]! : Math.fround(row[v]! / tau));
              const [max, logSum, negDy] = [maxes[r]!, logSums[r]!, -dys![r]!];
              for (let v = 0; v < vocab; v++) {
                const p = Math.fround(Math.exp(Math.fround(Math.fround(s(v) - max) - logSum)));
                gRow[v] = p * negDy; // −p·dy
              }
              gRow[ids[r]!] = dys![r]! + gRow[ids[r]!]!; // dy − p_t·dy
              if (tau !== 1) { for (let v = 0; v < vocab; v++) gRow[v] = gRow[v]! / tau; }
            }
            return grad;
          },
        };
      }) as unknown as Parameters<typeof tf.customGrad>[0],
    );
    return f(logits) as tf.Tensor2D;
  };
}
