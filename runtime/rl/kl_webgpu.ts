/**
 * The update's KL diagnostic, the token mean of k3 = exp(ref − logp) − (ref − logp) − 1 over the
 * completion tokens (`klK3` and `aggregate(…, "token-mean")` of `objectives/axes.ts`, as
 * `micro_batches.ts` takes it), on webgpu in one dispatch instead of 9 of tfjs's ops (each ≈ 100
 * µs of the host's: docs/tfjs.md, "WebGPU host costs"). A diagnostic: nothing flows back through
 * it (a program's output is no node of the tape).
 *
 * Same bits as the ops on tfjs-webgpu 4.22: one workgroup replays them in their order, each
 * operation in f32: ref − logp, its `exp`, the two subtractions, the product with the mask (0 or
 * 1), and the two sums as tfjs's `ReduceProgram` takes a row of N values (lane k of W adds elements k,
 * k + W, … to 0, then the lanes pairwise in its tree: while n > 1, lane l < ⌊n/2⌋ adds lane
 * l + ⌈n/2⌉, n = ⌈n/2⌉; W = 64 below 4,096 values, 256 below 32,768), then max(Σ mask, 1) and the
 * quotient. From 32,768 values tfjs's W follows the device's limits, so there the ops run
 * ({@linkcode klOnDevice}).
 *
 * @module
 */

import { tf } from "../engine/tf.ts";
import { runFused, treeSumWgsl, wgslAvailable } from "../engine/kernels/webgpu_program.ts";

/** tfjs's `ReduceProgram`'s lanes for a row of `count` values (below 32,768). */
function reduceLanes(count: number): number {
  return count >= 4096 ? 256 : 64;
}

/** Whether a KL of `count` tokens (B·T) takes the fused program here: webgpu, below 32,768. */
export function klOnDevice(count: number): boolean {
  return wgslAvailable() && count > 0 && count < 32768;
}

/**
 * `aggregate(klK3(logp, refLogp), mask, "token-mean")` ([B, T] each, float32) in one dispatch, a
 * scalar owned by the caller's scope, as a constant. Only where {@linkcode klOnDevice}.
 *
 * @example
 * ```ts
 * const kl = tokenMeanKl(stopGradient(logp), refLogp, mask);
 * ```
 */
export function tokenMeanKl(logp: tf.Tensor, refLogp: tf.Tensor, mask: tf.Tensor): tf.Scalar {
  const count = logp.size;
  if (refLogp.size !== count || mask.size !== count) {
    throw new RangeError(
      `Cannot take the KL of [${logp.shape}] log-probabilities with a [${refLogp.shape}] reference and a [${mask.shape}] mask: their shapes must match`,
    );
  }
  const lanes = reduceLanes(count);
  const out = runFused({
    name: `token_mean_kl_${lanes}`,
    inputs: ["logp", "refLogp", "mask"],
    outputShape: [1],
    workgroupSize: lanes,
    workgroups: 1,
    uniforms: { count: ["i32", count], one: ["f32", 1] },
    code: () => `
${treeSumWgsl(lanes)}

  fn k3Masked(i : i32) -> f32 {
    let d = f32(refLogp[i]) - f32(logp[i]);
    // each step · 1 from a uniform, as tfjs's kernels each write theirs: a compiler may otherwise
    // rewrite the chain (lavapipe's does: exp(d) − d − 1 came out a last bit off)
    let one = uniforms.one;
    let e = exp(d) * one;
    let shifted = (e - d) * one;
    let k3 = (shifted - 1.0) * one;
    return k3 * f32(mask[i]);
  }

  fn main(index : i32) {
    let count = uniforms.count;
    var s = 0.0;
    var t = 0.0;
    for (var i = index; i < count; i = i + ${lanes}) {
      s = s + k3Masked(i);
      t = t + f32(mask[i]);
    }
    let masked = treeSum(s, uniforms.count);
    let tokens = treeSum(t, uniforms.count);
    if (index == 0) {
      let isNaN = (bitcast<u32>(tokens) & 0x7fffffffu) > 0x7f800000u;
      let denominator = select(max(tokens, 1.0), tokens, isNaN);
      result[0] = masked / denominator;
    }
  }`,
  }, [logp, refLogp, mask]);
  const scalar = tf.reshape(out, []) as tf.Scalar; // the same buffer
  out.dispose();
  return scalar;
}
