/**
 * The `wasm` kernel set: tfjs's WebAssembly backend (SIMD, one thread), whose kernels are fast on
 * big products and slow to dispatch, with transposed operands, and on broadcasts. Here:
 *
 * - RMSNorm, RoPE fused with the split into heads, and AdamW's update are single passes of
 *   `simd.wat`'s loops on the backend's memory (`rms_norm.ts`, `rope.ts`);
 * - the embedding is a one-hot product for small vocabularies, and `gather` with a hand-written
 *   gradient otherwise (wasm has no `gather` gradient);
 * - the matmul gradient transposes operands first (wasm's transposed products are slow), except
 *   for products OpenBLAS runs;
 * - where OpenBLAS runs the backend's products (`blas.ts`), attention's small products go to it one
 *   (row, head) at a time and sampling runs without tfjs (`decode.ts`), reading the weights in
 *   the heap.
 *
 * A wasm build that does not export its memory gets the same math as JavaScript loops and tfjs ops.
 *
 * @module
 */

import { type Blas, blasProduct } from "../blas.ts";
import { oneHotFloat, tf } from "../tf.ts";
import { blasOrOpsAttention } from "./attention.ts";
import { blasDecoder } from "./decode.ts";
import { type WasmBackend, wasmValues } from "./memory.ts";
import { loopRmsNorm, simdRmsNorm } from "./rms_norm.ts";
import { fusedRopeHeads, rotateHalfByProduct } from "./rope.ts";
import { type BackendKernels, backendKernels } from "./simd.ts";
import {
  adamWOps,
  attentionOps,
  blasUnembed,
  linear,
  logSoftmaxAt,
  rotaryShape,
  splitThenRope,
  swiGlu,
  tfjsDecoder,
  transposedFirst,
  unembed,
} from "./tfjs.ts";
import type { AdamWUpdate, KernelSet } from "./types.ts";

/**
 * Vocabularies up to this size are embedded as `oneHot(ids) · table`: wasm's `gather` costs
 * several times the product at the sizes trained here (bench/RESULTS.md, "kernel choices"), and
 * the product is exact (one term per output). Larger tables keep `gather`.
 */
export const ONE_HOT_EMBED_MAX_VOCAB = 1024;

/**
 * Embedding lookup on wasm. `gather` has no gradient there (its gradient needs
 * `UnsortedSegmentSum`), so the table's gradient is written by hand as a `scatterND` of `dy`'s rows
 * at the ids, repeated ids summed ([V, d], the gradient's own size); the ids are saved with `save`
 * (tensors made in the forward pass are gone by the time the backward pass runs). It was
 * `oneHot(ids)ᵀ · dy`: an int32 one-hot [N, V], its float copy and their transpose, three times
 * the logits of every position at the backward pass's end (450 MB for a SmolLM2-135M micro-batch
 * of 4 rows of 192 tokens), and a product of V·N·d. For small vocabularies the lookup itself is
 * the one-hot product, whose gradient is the same matmul.
 */
export function wasmEmbed(table: tf.Tensor, ids: tf.Tensor1D, vocab: number): tf.Tensor2D {
  if (vocab <= ONE_HOT_EMBED_MAX_VOCAB) {
    return tf.matMul(oneHotFloat(ids, vocab) as tf.Tensor2D, table as tf.Tensor2D); // [N, d]
  }
  const f = tf.customGrad(
    ((e: tf.Tensor, rows: tf.Tensor, save: tf.GradSaveFunc) => {
      save([rows]);
      return {
        value: tf.gather(e, rows), // [N, d]
        gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
          const at = tf.reshape(saved[0]!, [-1, 1]); // [N, 1]
          const grad = tf.scatterND(at, dy, [vocab, dy.shape[1]!]); // [V, d], repeated ids summed
          return [grad, tf.zerosLike(saved[0]!)];
        },
      };
    }) as unknown as Parameters<typeof tf.customGrad>[0],
  );
  return f(table, ids) as tf.Tensor2D;
}

/**
 * AdamW's update of one parameter as one pass of simd.wat's `adamW`: the same float32 steps as
 * the tfjs ops, bit for bit; ~12 kernels per parameter were nearly all dispatch.
 */
function simdAdamW(
  simd: BackendKernels,
  p: tf.Variable,
  g: tf.Tensor,
  m: tf.Variable,
  v: tf.Variable,
  { b1, b2, c1, c2, eps, lr, clip, decay }: AdamWUpdate,
): void {
  const [nextP, nextM, nextV] = [p, m, v].map((t) => tf.fill(t.shape, 0));
  const at = simd.offset;
  simd.kernels.adamW(
    at(p),
    at(g),
    at(m),
    at(v),
    at(nextP!),
    at(nextM!),
    at(nextV!),
    p.size,
    b1,
    b2,
    1 - b1,
    1 - b2,
    c1,
    c2,
    eps,
    lr,
    clip,
    decay,
  );
  m.assign(nextM!);
  v.assign(nextV!);
  p.assign(nextP!);
}

/**
 * The wasm kernel set on `backend` (the wasm backend's instance, once it is the active backend);
 * `blas` is the OpenBLAS that runs its products (`useBackend()` registered it), or null.
 *
 * @example
 * ```ts
 * const { kernels } = await useBackend("wasm"); // wasmKernels(tf.backend(), OpenBLAS or null)
 * ```
 */
export function wasmKernels(backend: unknown, blas: Blas | null): KernelSet {
  const wasm = backend as WasmBackend;
  const values = wasmValues(wasm);
  const simd = backendKernels(wasm);
  const kernels: KernelSet = {
    name: "wasm",
    blas: blas !== null,
    updateOnDevice: false,
    layout: "[in, out]",
    linear,
    unembed: blas ? blasUnembed : unembed,
    product: blas ? blasProduct : transposedFirst,
    embed: wasmEmbed,
    rmsNorm: (x, w, eps) => simd ? simdRmsNorm(simd, x, w, eps) : loopRmsNorm(values, x, w, eps),
    ropeHeads: (x, heads, rotary) => {
      if (!simd) return splitThenRope(x, heads, rotary, rotateHalfByProduct);
      const { batch, time } = rotaryShape(x, rotary);
      const hd = x.shape[1] / heads;
      return fusedRopeHeads(simd, x, batch, time, heads, hd, rotary.cos, rotary.sin);
    },
    attention: blas ? blasOrOpsAttention(blas, values) : attentionOps,
    swiGlu,
    logSoftmaxAt,
    adamW: (p, g, m, v, update) =>
      simd ? simdAdamW(simd, p, g, m, v, update) : adamWOps(p, g, m, v, update),
    decoder: (params, config, rows, padding, capacity) =>
      blas
        ? blasDecoder(blas, params, config, rows, padding, capacity, (t) => values([t])[0]!)
        : Promise.resolve(tfjsDecoder(kernels, params, config, rows, padding)),
  };
  return kernels;
}
