/**
 * RoPE in Hugging Face's rotate-half layout (x·cos + rotate_half(x)·sin): as tfjs ops, with the
 * rotation as split, neg and concat (`rotateHalf`) or as one product with a signed permutation
 * (`rotateHalfByProduct`), and fused with the split into heads for the `wasm` kernel set
 * (`fusedRopeHeads`): one pass of `simd.wat`'s `ropeHeads` each way, on the tensors where the
 * backend keeps them.
 *
 * Why: as tfjs ops it is a transpose, two products with the tables, rotate_half (a product with a
 * signed permutation) and a sum, forward, and as many backward, for each of q and k in every layer:
 * on the small tensors of the models trained here, dispatch outweighs the arithmetic, and one pass
 * each way shortens the train step (bench/RESULTS.md, "kernel choices").
 *
 * Bit-identical to those ops (tests/runtime/engine/kernels/wasm_test.ts): each product and sum is
 * one float32 operation in both, and the permutation's product is exact.
 *
 * @module
 */

import { tf } from "../tf.ts";
import type { BackendKernels } from "./simd.ts";

/** Rotary embedding of x [B, H, T, hd]: x·cos + rotate(x)·sin. */
export function applyRope(
  x: tf.Tensor4D,
  cos: tf.Tensor,
  sin: tf.Tensor,
  rotate: (x: tf.Tensor4D) => tf.Tensor4D,
): tf.Tensor4D {
  return tf.add(tf.mul(x, cos), tf.mul(rotate(x), sin));
}

/** rotate_half(x) = [−x₂, x₁] over the last axis, as split, neg and concat. */
export function rotateHalf(x: tf.Tensor4D): tf.Tensor4D {
  const half = x.shape[3] / 2;
  const [x1, x2] = tf.split(x, [half, half], 3) as [tf.Tensor4D, tf.Tensor4D]; // [B, H, T, hd/2] each
  return tf.concat([tf.neg(x2), x1], 3); // [B, H, T, hd]
}

/**
 * rotate_half(x) as one product with a signed permutation matrix, for wasm and where OpenBLAS runs
 * the products: split, neg and concat (and their gradients) cost several times more there. Exact
 * either way: each output is one input times ±1.
 */
export function rotateHalfByProduct(x: tf.Tensor4D): tf.Tensor4D {
  const hd = x.shape[3];
  const half = hd / 2;
  const signs = new Float32Array(hd * hd); // [hd, hd]: out[j] = Σ_k x[k]·signs[k, j]
  for (let j = 0; j < half; j++) {
    signs[(j + half) * hd + j] = -1; // out[j] = −x[j + half]
    signs[j * hd + j + half] = 1; // out[j + half] = x[j]
  }
  const flat = tf.reshape(x, [-1, hd]) as tf.Tensor2D;
  return tf.reshape(tf.matMul(flat, tf.tensor2d(signs, [hd, hd])), x.shape);
}

/**
 * x [B·T, H·hd] (a projection's output) → [B, H, T, hd] with RoPE applied: x·cos + rotate_half(x)·
 * sin in HF's layout. cos and sin: `ropeTables`'s, [B, 1, T, hd] with padding or [T, hd] without.
 */
export function fusedRopeHeads(
  simd: BackendKernels,
  x: tf.Tensor2D,
  batch: number,
  time: number,
  heads: number,
  hd: number,
  cos: tf.Tensor,
  sin: tf.Tensor,
): tf.Tensor4D {
  const { kernels, offset } = simd;
  const rows = cos.rank === 4 ? batch : 1;
  const run = (input: tf.Tensor, sign: number, toHeads: boolean, [cos, sin]: tf.Tensor[]) => {
    const out = tf.fill(toHeads ? [batch, heads, time, hd] : [batch * time, heads * hd], 0);
    kernels.ropeHeads(
      offset(input),
      offset(out),
      offset(cos!),
      offset(sin!),
      batch,
      time,
      heads,
      hd,
      rows,
      sign,
      toHeads ? 1 : 0,
    );
    return out;
  };
  const f = tf.customGrad(
    ((xt: tf.Tensor2D, save: tf.GradSaveFunc) => {
      save([cos, sin]); // kept for the gradient, which runs after the caller's tidy freed them
      return {
        value: run(xt, 1, true, [cos, sin]) as tf.Tensor4D,
        // the transposed rotation, back to [B·T, H·hd]
        gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => run(dy, -1, false, saved),
      };
    }) as unknown as Parameters<typeof tf.customGrad>[0],
  );
  return f(x) as tf.Tensor4D;
}
