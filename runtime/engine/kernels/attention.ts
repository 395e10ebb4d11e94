/**
 * Causal softmax attention with its gradient, one OpenBLAS product per (row, head), for the `wasm`
 * and `cpu` kernel sets where OpenBLAS runs their matrix products (`blasAttentionRuns` says for
 * which sizes).
 *
 * Why: attention's products are B·H tiny matrices ([T, hd] · [hd, S] with T, S ~ 10 in the front
 * door). tfjs's `BatchMatMul` sends each product under `BLAS_MIN_FLOPS` to the backend's own
 * kernel, whose per-matrix cost on wasm made the 12 attention products of a train step (forward
 * and backward) a third of it. Here they are `sgemm` calls on the tensors' values read out once,
 * and softmax and its gradient are plain loops.
 *
 * Same math as the tfjs kernel set's ops (scores·scale, the −1e9 mask, softmax, ·v); the softmax
 * accumulates in float64, so results agree to float32 rounding (tests/runtime/engine/kernels/).
 *
 * @module
 */

import { type Blas, BLAS_MIN_FLOPS } from "../blas.ts";
import { tf } from "../tf.ts";
import type { Values } from "./memory.ts";
import { attentionOps } from "./tfjs.ts";
import type { KernelSet } from "./types.ts";

const ROW_MAJOR = 101;
const NO_TRANS = 111;
const TRANS = 112;

/**
 * Whether attention over `keys` positions of `time` queries of width `hd` runs here (where
 * OpenBLAS runs the backend's products): only for products too small to go to OpenBLAS through
 * `BatchMatMul` (`BLAS_MIN_FLOPS`). Bigger ones already do, and their softmax is faster on the
 * backend's vectorised kernels than in JavaScript.
 */
export function blasAttentionRuns(time: number, keys: number, hd: number): boolean {
  return time * keys * hd < BLAS_MIN_FLOPS;
}

/** Where an array's values are, for OpenBLAS. */
const at = (a: Float32Array): Deno.PointerValue => Deno.UnsafePointer.of(a);

/** C = op(A) · op(B) for matrices at element offsets of flat arrays (row-major, packed). */
function gemm(
  blas: Blas,
  transA: boolean,
  transB: boolean,
  m: number,
  n: number,
  k: number,
  alpha: number,
  a: Deno.PointerValue,
  aAt: number,
  b: Deno.PointerValue,
  bAt: number,
  c: Deno.PointerValue,
  cAt: number,
): void {
  blas.sgemm(
    ROW_MAJOR,
    transA ? TRANS : NO_TRANS,
    transB ? TRANS : NO_TRANS,
    m,
    n,
    k,
    alpha,
    Deno.UnsafePointer.offset(a!, aAt * 4),
    transA ? m : k,
    Deno.UnsafePointer.offset(b!, bAt * 4),
    transB ? k : n,
    0,
    Deno.UnsafePointer.offset(c!, cAt * 4),
    n,
  );
}

/**
 * softmax(q·kᵀ·scale + mask)·v for q [B, H, T, hd] and k, v [B, H, S, hd]: the T queries are
 * positions S − T … S − 1, each sees the keys up to its own, and row b's first `padding[b]` keys
 * are masked. A query that sees no key (a padding position) averages all S values, as the
 * additive −1e9 mask of the tfjs ops makes it; nothing real reads those positions. `values` reads
 * the backend's memory.
 */
export function blasAttention(
  blas: Blas,
  values: Values,
  q: tf.Tensor4D,
  k: tf.Tensor4D,
  v: tf.Tensor4D,
  scale: number,
  padding: readonly number[] | null,
): tf.Tensor4D {
  const [batch, heads, time, hd] = q.shape;
  const keys = k.shape[2];
  const past = keys - time;
  /** Row b's visible keys for query t: [first, end). */
  const visible = (b: number, t: number): [number, number] => [padding?.[b] ?? 0, past + t + 1];
  const f = tf.customGrad(
    ((qt: tf.Tensor4D, kt: tf.Tensor4D, vt: tf.Tensor4D, save: tf.GradSaveFunc) => {
      save([qt, kt, vt]); // for the gradient, instead of copies of their values
      const probs = new Float32Array(batch * heads * time * keys); // [B, H, T, S]
      const value = tf.fill([batch, heads, time, hd], 0) as tf.Tensor4D; // fresh, written once here
      const [qs, ks, vs, out] = values([qt, kt, vt, value]);
      const [pq, pk, pv, pp, po] = [at(qs!), at(ks!), at(vs!), at(probs), at(out!)];
      for (let bh = 0; bh < batch * heads; bh++) {
        const b = Math.floor(bh / heads);
        const pAt = bh * time * keys;
        // scores = q·kᵀ·scale, then softmax over each query's visible keys (0 elsewhere)
        gemm(
          blas,
          false,
          true,
          time,
          keys,
          hd,
          scale,
          pq,
          bh * time * hd,
          pk,
          bh * keys * hd,
          pp,
          pAt,
        );
        for (let t = 0; t < time; t++) {
          const [first, end] = visible(b, t);
          const row = pAt + t * keys;
          if (first >= end) { // every key masked: −1e9 + score rounds to −1e9 for all of them
            probs.fill(1 / keys, row, row + keys);
            continue;
          }
          let max = -Infinity;
          for (let s = first; s < end; s++) max = Math.max(max, probs[row + s]!);
          let sum = 0;
          for (let s = 0; s < keys; s++) {
            const e = s < first || s >= end ? 0 : Math.exp(probs[row + s]! - max);
            probs[row + s] = e;
            sum += e;
          }
          for (let s = first; s < end; s++) probs[row + s] = probs[row + s]! / sum;
        }
        gemm(
          blas,
          false,
          false,
          time,
          hd,
          keys,
          1,
          pp,
          pAt,
          pv,
          bh * keys * hd,
          po,
          bh * time * hd,
        );
      }
      return {
        value,
        gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
          const [dqt, dkt, dvt] = [qt.shape, kt.shape, vt.shape].map((shape) => tf.fill(shape, 0));
          const [qs, ks, vs, dys, dq, dk, dv] = values([...saved, dy, dqt!, dkt!, dvt!]);
          const [pq, pk, pv] = [at(qs!), at(ks!), at(vs!)];
          const dp = new Float32Array(time * keys); // one (row, head)'s [T, S]
          const [pdy, pdq, pdk, pdv, pdp] = [at(dys!), at(dq!), at(dk!), at(dv!), at(dp)];
          for (let bh = 0; bh < batch * heads; bh++) {
            const [qAt, kAt, pAt] = [bh * time * hd, bh * keys * hd, bh * time * keys];
            gemm(blas, true, false, keys, hd, time, 1, pp, pAt, pdy, qAt, pdv, kAt); // dv = pᵀ·dy
            gemm(blas, false, true, time, keys, hd, 1, pdy, qAt, pv, kAt, pdp, 0); // dp = dy·vᵀ
            // softmax's gradient: ds = p ⊙ (dp − Σ p·dp), times scale for the scores' product
            for (let t = 0; t < time; t++) {
              let dot = 0;
              for (let s = 0; s < keys; s++) dot += probs[pAt + t * keys + s]! * dp[t * keys + s]!;
              for (let s = 0; s < keys; s++) {
                dp[t * keys + s] = probs[pAt + t * keys + s]! * (dp[t * keys + s]! - dot) * scale;
              }
            }
            gemm(blas, false, false, time, hd, keys, 1, pdp, 0, pk, kAt, pdq, qAt); // dq = ds·k
            gemm(blas, true, false, keys, hd, time, 1, pdp, 0, pq, qAt, pdk, kAt); // dk = dsᵀ·q
          }
          return [dqt, dkt, dvt];
        },
      };
    }) as unknown as Parameters<typeof tf.customGrad>[0],
  );
  return f(q, k, v) as tf.Tensor4D;
}

/**
 * The attention of a kernel set whose products OpenBLAS runs: `blasAttention` where its products
 * are too small for `BatchMatMul` to send there (`blasAttentionRuns`), else the tfjs ops.
 */
export function blasOrOpsAttention(blas: Blas, values: Values): KernelSet["attention"] {
  return (q, k, v, padding) => {
    const [, , time, hd] = q.shape;
    return blasAttentionRuns(time, k.shape[2], hd)
      ? blasAttention(blas, values, q, k, v, 1 / Math.sqrt(hd), padding)
      : attentionOps(q, k, v, padding);
  };
}
