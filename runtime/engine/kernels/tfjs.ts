/**
 * The plain tfjs kernel set: every fused operation as tfjs-core ops, for the backends that run
 * their own kernels well (`webgpu`, `tensorflow`), and the reference the other sets are tested
 * against (tests/runtime/engine/kernels/_conformance.ts). Its pieces that the other sets share
 * (`linear`, `swiGlu`, `logSoftmaxAt`, `tfjsDecoder`, …) are exported for them.
 *
 * @module
 */

import { swapLastAxes, tf } from "../tf.ts";
import type { ModelConfig, Params } from "../model/config.ts";
import { forward, type LayerCache, splitHeads } from "../model/transformer.ts";
import { logSoftmaxAt } from "./log_softmax.ts";
import { applyRope, rotateHalf } from "./rope.ts";
import { cachedTensors, deviceConstant, scopedConstant } from "./constants.ts";
import type { AdamWUpdate, Decoder, KernelSet, Rotary } from "./types.ts";

export { logSoftmaxAt };

/** x [N, in] · W [in, out]: a plain product, the fast case on every backend. */
export function linear(x: tf.Tensor2D, w: tf.Tensor): tf.Tensor2D {
  return tf.matMul(x, w as tf.Tensor2D);
}

/** x [N, d] · Eᵀ for the embedding table E [V, d]: the table transposed to [d, V], then `linear`. */
export function unembed(x: tf.Tensor2D, table: tf.Tensor): tf.Tensor2D {
  return linear(x, tf.transpose(table)); // [N, V]
}

/**
 * Tables from this many values on are unembedded by OpenBLAS with its transpose flag
 * ({@linkcode blasUnembed}). Smaller ones keep `unembed`'s transpose, as they always have.
 */
export const BLAS_UNEMBED_MIN_TABLE = 1 << 20;

/**
 * `unembed` where OpenBLAS runs the products: x · Eᵀ as one product with the transpose flag, so a
 * large table (a real vocabulary: 545 MB for Qwen's 151,936 × 896) is not copied transposed on
 * every call and held again for the backward pass; its gradient comes out as [V, d] directly.
 * Tables under {@linkcode BLAS_UNEMBED_MIN_TABLE} values take `unembed`.
 */
export function blasUnembed(x: tf.Tensor2D, table: tf.Tensor): tf.Tensor2D {
  if (table.size < BLAS_UNEMBED_MIN_TABLE) return unembed(x, table);
  return tf.matMul(x, table as tf.Tensor2D, false, true); // [N, V]
}

/** op(a) · op(b) with each transposed operand transposed first (no transpose flag). */
export function transposedFirst(
  a: tf.Tensor,
  b: tf.Tensor,
  transposeA: boolean,
  transposeB: boolean,
): tf.Tensor {
  return tf.matMul(transposeA ? swapLastAxes(a) : a, transposeB ? swapLastAxes(b) : b);
}

/** The rows of `table` at `ids`: `tf.gather` (its gradient is tfjs's). */
export function gatherRows(table: tf.Tensor, ids: tf.Tensor1D): tf.Tensor2D {
  return tf.gather(table, ids) as tf.Tensor2D; // [N, d]
}

/**
 * RMSNorm as tfjs ops. `eps` is a device constant, and the gradients of `Mean`, `Square` and
 * `Rsqrt` are `gradients.ts`'s: on webgpu neither direction uploads anything.
 */
export function rmsNormOps(x: tf.Tensor2D, w: tf.Tensor, eps: number): tf.Tensor2D {
  const meanSquare = tf.mean(tf.square(x), -1, true); // [N, 1]
  return tf.mul(tf.mul(x, tf.rsqrt(tf.add(meanSquare, deviceConstant(eps)))), w);
}

/** The batch and time of a projection [B·T, ·] whose RoPE tables are `rotary`. */
export function rotaryShape(x: tf.Tensor2D, rotary: Rotary): { batch: number; time: number } {
  const time = rotary.cos.shape[rotary.cos.rank - 2]!;
  return { batch: x.shape[0] / time, time };
}

/** Split into heads, then RoPE with `rotate` as the rotation. */
export function splitThenRope(
  x: tf.Tensor2D,
  heads: number,
  rotary: Rotary,
  rotate: (x: tf.Tensor4D) => tf.Tensor4D,
): tf.Tensor4D {
  const { batch, time } = rotaryShape(x, rotary);
  const hd = x.shape[1] / heads;
  return applyRope(splitHeads(x, batch, time, heads, hd), rotary.cos, rotary.sin, rotate);
}

/**
 * Additive attention mask for T new queries after `past` cached positions: −1e9 on keys after the
 * query (causal) and, with left padding, on row b's first `padding[b]` keys. [T, S] without
 * padding, [B, 1, T, S] with it (S = past + T); null when nothing is masked. Cached per shape
 * and padding on the device (`cachedTensors`): never dispose it.
 */
export function attentionBias(
  past: number,
  time: number,
  padding: readonly number[] | null,
): tf.Tensor | null {
  if (!padding && time === 1) return null;
  const key = `attention-bias:${past}:${time}:${padding?.join() ?? "none"}`;
  const [bias] = cachedTensors(key, () => [biasTensor(past, time, padding)] as [tf.Tensor]);
  return bias;
}

/** `attentionBias`'s mask, made from an array. */
function biasTensor(past: number, time: number, padding: readonly number[] | null): tf.Tensor {
  const keys = past + time;
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

/** Causal softmax attention as tfjs ops, with the additive mask of `attentionBias`. */
export function attentionOps(
  q: tf.Tensor4D,
  k: tf.Tensor4D,
  v: tf.Tensor4D,
  padding: readonly number[] | null,
): tf.Tensor4D {
  const [, , time, hd] = q.shape;
  const bias = attentionBias(k.shape[2] - time, time, padding);
  const scale = 1 / Math.sqrt(hd);
  const product = tf.matMul(q, tf.transpose(k, [0, 1, 3, 2])); // [B, H, T, S]
  let scores = tf.mul(product, deviceConstant(scale)); // [B, H, T, S]
  if (bias) scores = tf.add(scores, bias);
  return tf.matMul(tf.softmax(scores), v);
}

/** SwiGLU: (silu(x·W_gate) ⊙ x·W_up)·W_down. */
export function swiGlu(
  x: tf.Tensor2D,
  gate: tf.Tensor,
  up: tf.Tensor,
  down: tf.Tensor,
): tf.Tensor2D {
  const g = linear(x, gate); // [N, F]
  const u = linear(x, up); // [N, F]
  return linear(tf.mul(tf.mul(g, tf.sigmoid(g)), u), down); // [N, d]
}

/**
 * AdamW's update of one parameter as tfjs ops. The settings (β₁, β₂, ε, decay) are device
 * constants; the values of this step (clip, c₁, c₂, lr) are `scopedConstant`s, made once per
 * step and shared by every parameter when the caller's tidy spans the step (`adamWStep`'s does).
 */
export function adamWOps(
  p: tf.Variable,
  raw: tf.Tensor,
  m: tf.Variable,
  v: tf.Variable,
  { b1, b2, c1, c2, eps, lr, clip, decay }: AdamWUpdate,
): void {
  const [fixed, step] = [deviceConstant, scopedConstant];
  const g = clip === 1 ? raw : tf.mul(raw, step(clip));
  m.assign(tf.add(tf.mul(m, fixed(b1)), tf.mul(g, fixed(1 - b1))));
  v.assign(tf.add(tf.mul(v, fixed(b2)), tf.mul(tf.square(g), fixed(1 - b2))));
  const update = tf.div(tf.div(m, step(c1)), tf.add(tf.sqrt(tf.div(v, step(c2))), fixed(eps)));
  const decayed = decay > 0 ? tf.mul(p, fixed(decay)) : null;
  p.assign(tf.sub(p, tf.mul(decayed ? tf.add(update, decayed) : update, step(lr))));
}

/**
 * A `Decoder` through `forward()` on `kernels`, holding its KV cache as tensors until `dispose`.
 * It runs every row (the shapes stay fixed); `active` is only a hint. `next` reads the logits
 * back; `nextOnDevice` leaves them on the device for a draw there.
 */
export function tfjsDecoder(
  kernels: KernelSet,
  params: Params,
  config: ModelConfig,
  rows: number,
  padding: readonly number[],
): Decoder {
  let cache: LayerCache[] | undefined;
  const disposeCache = () => {
    for (const { k, v } of cache ?? []) tf.dispose([k, v]);
  };
  const nextOnDevice = (ids: tf.Tensor2D, time: number): tf.Tensor2D =>
    tf.tidy(() => {
      const { logits, cache: next } = forward(kernels, params, config, ids, {
        ...(cache ? { cache } : {}),
        logitsFrom: time - 1,
        padding,
      });
      disposeCache();
      cache = next;
      for (const { k, v } of next) {
        tf.keep(k);
        tf.keep(v);
      }
      return tf.reshape(logits, [rows, config.vocab]);
    });
  return {
    async next(ids, time) {
      const input = tf.tensor2d(ids, [rows, time], "int32");
      const logits = nextOnDevice(input, time);
      input.dispose();
      try {
        return (await logits.data()) as Float32Array;
      } finally {
        logits.dispose();
      }
    },
    nextOnDevice,
    dispose: disposeCache,
  };
}

/**
 * The plain tfjs kernel set (for `webgpu` and `tensorflow`, and the reference of the others);
 * `updateOnDevice` as `KernelSet.updateOnDevice` (webgpu's is true).
 *
 * @example
 * ```ts
 * const kernels = tfjsKernels();
 * const y = tf.tidy(() => kernels.rmsNorm(x, w, 1e-5)); // [N, d]
 * ```
 */
export function tfjsKernels(options: { updateOnDevice?: boolean } = {}): KernelSet {
  const kernels: KernelSet = {
    name: "tfjs",
    blas: false,
    layout: "[in, out]",
    updateOnDevice: options.updateOnDevice ?? false,
    linear,
    unembed,
    product: transposedFirst,
    embed: (table, ids) => gatherRows(table, ids),
    rmsNorm: rmsNormOps,
    ropeHeads: (x, heads, rotary) => splitThenRope(x, heads, rotary, rotateHalf),
    attention: attentionOps,
    swiGlu,
    logSoftmaxAt,
    adamW: adamWOps,
    decoder: (params, config, rows, padding) =>
      Promise.resolve(tfjsDecoder(kernels, params, config, rows, padding)),
  };
  return kernels;
}
