/**
 * The global L2 norm of many tensors (the optimiser's gradient norm, `globalNorm` in `optim.ts`)
 * on webgpu in a few dispatches: one program per 7 tensors (WebGPU's default of 8 storage buffers
 * a stage, the output included) writes partial sums of squares, a workgroup's each, into one
 * buffer, and one program sums those and takes the root. The ops' way is a square and a sum per
 * tensor and a chain of adds: three dispatches per tensor, ≈ 60 of a front-door train step's, each
 * ≈ 100 µs of the host's (docs/tfjs.md, "WebGPU host costs").
 *
 * The summation order is fixed by the tensors' shapes alone, so the norm is deterministic (a
 * resumed run computes the same bits): lane l of workgroup w of a group adds the squares of
 * elements w·256 + l, then every 256·W further, of each tensor in turn; each workgroup adds its
 * lanes in a fixed tree; the last program adds the partial sums, lane l those at l, l + 256, …,
 * then a tree again. Every addition is float32, as the ops', but in another order: the norm
 * differs from the chain of `tf.sum`s within float32 rounding (tests/runtime/engine/kernels/
 * norm_webgpu_test.ts holds both to a float64 reference). A NaN or an infinity anywhere gives a
 * norm that is not finite, as the ops'.
 *
 * @module
 */

import { tf } from "../tf.ts";
import {
  emptyTensor,
  MAX_FUSED_INPUTS,
  runFused,
  type Uniform,
  workgroupsFor,
} from "./webgpu_program.ts";

/** Lanes of each workgroup. */
const LANES = 256;

/** Workgroups a group's program takes at most: partial sums per group. */
const MAX_WORKGROUPS = 64;

/** Elements a lane adds at least before another workgroup is taken. */
const PER_LANE = 16;

/** WGSL of a workgroup's sum of `value` (every lane gets it), its lanes in a fixed tree. */
const REDUCE = `
  var<workgroup> partial : array<f32, ${LANES}>;
  fn reduceSum(value : f32) -> f32 {
    let lane = localId.x;
    partial[lane] = value;
    workgroupBarrier();
    for (var s = ${LANES / 2}u; s > 0u; s = s >> 1u) {
      if (lane < s) { partial[lane] = partial[lane] + partial[lane + s]; }
      workgroupBarrier();
    }
    return partial[0];
  }`;

/**
 * The global L2 norm of `tensors` (float32, on the webgpu backend, at least one), a scalar owned by
 * the caller's scope: ⌈n / 7⌉ + 1 dispatches for n tensors.
 *
 * @example
 * ```ts
 * const norm = sumOfSquaresNorm(Object.values(grads)); // √Σ g²
 * ```
 */
export function sumOfSquaresNorm(tensors: readonly tf.Tensor[]): tf.Scalar {
  if (tensors.length === 0) {
    throw new RangeError("Cannot take the norm of no tensors: at least one is needed");
  }
  return tf.tidy(() => {
    const groups: tf.Tensor[][] = [];
    for (let i = 0; i < tensors.length; i += MAX_FUSED_INPUTS) {
      groups.push(tensors.slice(i, i + MAX_FUSED_INPUTS));
    }
    const widths = groups.map((group) => {
      const total = group.reduce((sum, t) => sum + t.size, 0);
      return Math.min(MAX_WORKGROUPS, workgroupsFor(total, LANES * PER_LANE));
    });
    const partials = emptyTensor([widths.reduce((a, b) => a + b, 0)], "float32");
    let offset = 0;
    groups.forEach((group, g) => {
      const names = group.map((_, i) => `x${i}`);
      const sizes: Record<string, Uniform> = Object.fromEntries(
        group.map((t, i) => [`n${i}`, ["i32", t.size]]),
      );
      const loops = names.map((name, i) => `
      for (var i = index; i < uniforms.n${i}; i = i + stride) {
        let x = ${name}[i];
        sum = sum + x * x;
      }`).join("");
      runFused(
        {
          name: `sum_of_squares_${group.length}`,
          inputs: names,
          outputShape: partials.shape,
          workgroupSize: LANES,
          workgroups: widths[g]!,
          uniforms: { ...sizes, offset: ["i32", offset], stride: ["i32", widths[g]! * LANES] },
          code: () =>
            `${REDUCE}
    fn main(index : i32) {
      let stride = uniforms.stride;
      var sum = 0.0;${loops}
      let total = reduceSum(sum);
      if (localId.x == 0u) {
        result[uniforms.offset + index / ${LANES}] = total;
      }
    }`,
        },
        group.map((t) => checked(t)),
        partials,
      );
      offset += widths[g]!;
    });
    const norm = runFused({
      name: "sum_of_squares_root",
      inputs: ["partials"],
      outputShape: [1],
      workgroupSize: LANES,
      workgroups: 1,
      uniforms: { count: ["i32", offset] },
      code: () =>
        `${REDUCE}
    fn main(index : i32) {
      var sum = 0.0;
      for (var i = index; i < uniforms.count; i = i + ${LANES}) {
        sum = sum + partials[i];
      }
      let total = reduceSum(sum);
      if (index == 0) {
        result[0] = sqrt(total);
      }
    }`,
    }, [partials]);
    return tf.reshape(norm, []) as tf.Scalar;
  });
}

function checked(t: tf.Tensor): tf.Tensor {
  if (t.dtype !== "float32") {
    throw new RangeError(`Cannot take the norm of a ${t.dtype} tensor: it must be float32`);
  }
  return t;
}
