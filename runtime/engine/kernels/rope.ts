/**
 * RoPE of the query and key projections, fused with their split into heads, for the `wasm`
 * backend: one pass of `simd.wat`'s `ropeHeads` each way, on the tensors where the backend keeps
 * them.
 *
 * Why: as tfjs ops it is a transpose, two products with the tables, rotate_half (a product with a
 * signed permutation) and a sum, forward, and as many backward, for each of q and k in every layer,
 * on [128, 4, 10, 32] tensors for the front door. Fused, its forward and backward pass took 70 ms
 * instead of 86 (medians of 25), and `deno task bench` timed its train step at 89–96 ms instead of
 * 110.
 *
 * Bit-identical to those ops (tests/runtime/engine/kernels/fast_paths_test.ts): each product and sum is
 * one float32 operation in both, and the permutation's product is exact.
 *
 * @module
 */

import { tf } from "../backend.ts";
import type { BackendKernels } from "./simd.ts";

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
