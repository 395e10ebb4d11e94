/**
 * The group statistics of `group.ts` (`groupMean`, `groupStd`) on webgpu in one dispatch each, for
 * statistics taken as constants (no gradient flows into them: `standardize`'s
 * `constantStatistics`, a metric of `stopGradient(u)`). The ops take 4 dispatches for a mean and
 * 9 for a std, each ≈ 100 µs of the host's (docs/tfjs.md, "WebGPU host costs"), and the backward
 * pass walks those ops of a detached input too (their gradients are zeroed at `stopGradient`, not
 * skipped). A program's output is no node of the tape: nothing flows back through it. A GIFT
 * step's two standardisations and std took 64 dispatches more than this way (a front-door step:
 * 292 → 228).
 *
 * Same bits as the ops on tfjs-webgpu 4.22: one invocation per group replays what its kernels do,
 * in their order, each operation in f32: the deviations from the group's first value, their
 * `Mean` as tfjs's `ReduceProgram` sums a row (lane k of 64 adds elements k, k + 64, … to 0, then
 * the lanes pairwise in its tree: while n > 1, lane l < ⌊n/2⌋ adds lane l + ⌈n/2⌉, n = ⌈n/2⌉),
 * divided by G, plus the first value; for the std, the squared deviations from that mean summed so,
 * divided by G − 1 and the root taken. Rows of 4,096 or more take a wider workgroup in tfjs, so
 * there the ops run ({@linkcode groupStatisticsOnDevice}). As for AdamW's programs
 * (`engine/kernels/adamw_webgpu.ts`), a shader compiler that contracts `s + d·d` into a fused
 * multiply-add would round once where the ops round twice (and a compiler may rewrite a chain:
 * `kl_webgpu.ts`); on lavapipe the bits are the ops' (tests/runtime/rl/objectives/
 * group_webgpu_test.ts).
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import {
  laneTreeWgsl,
  runFused,
  wgslAvailable,
  workgroupsFor,
} from "../../engine/kernels/webgpu_program.ts";

/** tfjs's `ReduceProgram`'s lanes for rows shorter than 4,096. */
const REDUCE_LANES = 64;

/** Groups (invocations) per workgroup. */
const WORKGROUP = 64;

const CODE = `
  var<private> lanes : array<f32, ${REDUCE_LANES}>;

  // tfjs's ReduceProgram's tree over the lanes' sums (lanes[0 … min(count, 64) − 1])
${laneTreeWgsl("reduceLanes", "lanes", REDUCE_LANES)}

  // groupMean: x₀ + Mean(x − x₀)
  fn groupMean(base : i32, size : i32) -> f32 {
    let anchor = f32(x[base]);
    for (var k = 0; k < min(size, ${REDUCE_LANES}); k = k + 1) {
      var s = 0.0;
      for (var j = k; j < size; j = j + ${REDUCE_LANES}) {
        let deviation = f32(x[base + j]) - anchor;
        s = s + deviation;
      }
      lanes[k] = s;
    }
    let mean = reduceLanes(size) / f32(size);
    return anchor + mean;
  }

  // groupStd: √(Sum((x − mean)²) / (G − 1))
  fn groupStd(base : i32, size : i32) -> f32 {
    let mean = groupMean(base, size);
    for (var k = 0; k < min(size, ${REDUCE_LANES}); k = k + 1) {
      var s = 0.0;
      for (var j = k; j < size; j = j + ${REDUCE_LANES}) {
        let deviation = f32(x[base + j]) - mean;
        let square = deviation * deviation;
        s = s + square;
      }
      lanes[k] = s;
    }
    let sum = reduceLanes(size);
    return sqrt(sum / f32(size - 1));
  }`;

/**
 * Whether groups of `groupSize` take the fused statistics here: on webgpu, for groups of 2 to
 * 4,095 (a group of one has no std; longer rows change tfjs's reduction).
 */
export function groupStatisticsOnDevice(groupSize: number): boolean {
  return wgslAvailable() && groupSize >= 2 && groupSize < 4096;
}

function run(statistic: "mean" | "std", x: tf.Tensor1D, groupSize: number): tf.Tensor1D {
  if (x.dtype !== "float32" || x.size % groupSize !== 0) {
    throw new RangeError(
      `Cannot take group statistics of a ${x.dtype} [${x.shape}] tensor: it must be float32 of whole groups of ${groupSize}`,
    );
  }
  const groups = x.size / groupSize;
  const call = statistic === "mean" ? "groupMean" : "groupStd";
  return runFused({
    name: `group_${statistic}`,
    inputs: ["x"],
    outputShape: [groups],
    workgroupSize: WORKGROUP,
    workgroups: workgroupsFor(groups, WORKGROUP),
    uniforms: { groups: ["i32", groups], size: ["i32", groupSize] },
    code: () =>
      `${CODE}
  fn main(index : i32) {
    if (index < uniforms.groups) {
      result[index] = ${call}(index * uniforms.size, uniforms.size);
    }
  }`,
  }, [x]) as tf.Tensor1D;
}

/**
 * `groupMean(x, groupSize)`'s values in one dispatch, as a constant (no gradient flows back to
 * `x`). Only where {@linkcode groupStatisticsOnDevice}.
 *
 * @example
 * ```ts
 * const mean = groupMeanOnDevice(rewards, 8); // [B / 8]
 * ```
 */
export function groupMeanOnDevice(x: tf.Tensor1D, groupSize: number): tf.Tensor1D {
  return run("mean", x, groupSize);
}

/**
 * `groupStd(x, groupSize)`'s values in one dispatch, as a constant (no gradient flows back to
 * `x`). Only where {@linkcode groupStatisticsOnDevice}.
 *
 * @example
 * ```ts
 * const std = groupStdOnDevice(rewards, 8); // [B / 8]
 * ```
 */
export function groupStdOnDevice(x: tf.Tensor1D, groupSize: number): tf.Tensor1D {
  return run("std", x, groupSize);
}
