/**
 * GIFT's loss (`gift.ts`) on webgpu: the loss and each of its three metrics in one dispatch of one
 * program, its gradient w.r.t. `logp` in one, instead of 31 of tfjs's kernels (each ≈ 100 µs of
 * the host's: docs/tfjs.md, "WebGPU host costs"; a front-door step: 211 → 185 dispatches).
 *
 * Same bits as the ops on tfjs-webgpu 4.22 (on lavapipe: tests/runtime/rl/objectives/
 * gift_webgpu_test.ts): each value replays the kernels in their order, each operation in f32. The
 * implicit reward u_i = Σ_t mask·(logp − refLogp) is summed over its row as tfjs's `ReduceProgram`
 * sums one (lane k of 64 adds elements k, k + 64, … to 0, then the lanes pairwise in its tree:
 * while n > 1, lane l < ⌊n/2⌋ adds lane l + ⌈n/2⌉, n = ⌈n/2⌉); the group statistics of the
 * rewards and of u are `group_webgpu.ts`'s (about the group's first value); Â and ũ are
 * standardised as `standardize()`'s ops do it.
 *
 * The forward program runs one workgroup of 64 lanes and writes one of the loss,
 * `implicitReward`, `implicitStd` and `advantageAbs`, as a uniform selects (one pipeline, four
 * dispatches): each a `Mean` as tfjs's `ReduceProgram` takes it, lane k adding rows (or groups) k,
 * k + 64, …, each row's (Â_i − β_c·ũ_i)², u_i or |Â_i| computed with its group's statistics.
 *
 * The backward program runs one workgroup a row: its first lane recomputes the row's group
 * statistics, Â_i and ũ_i, and the coefficient ∂L/∂u_i = −(dy/B · 2(Â_i − β_c·ũ_i))·β_c / (s_g + ε)
 * in the order tfjs's gradients of `mean`, `square`, `sub`, `mul` and `div` take it, and the lanes
 * write it times the mask: ∂L/∂logp[i,t]. With a group of one, ũ = u·0 and the coefficient is
 * 0. Only `logp` is differentiated: `refLogp`, `mask` and `rewards` are constants of the program
 * (the reference, a rollout's `oldLogp` or a frozen model's, carries no gradient; the ops would
 * give it −∂L/∂logp). Each step of a chain is multiplied by a uniform 1, as `kl_webgpu.ts` does,
 * so that a shader compiler does not rewrite it (or contract it into a fused multiply-add, which
 * a compiler other than lavapipe's may still do where the ops round twice).
 *
 * @module
 */

import { tf } from "../../engine/tf.ts";
import {
  laneTreeWgsl,
  runFused,
  treeSumWgsl,
  type Uniform,
  wgslAvailable,
} from "../../engine/kernels/webgpu_program.ts";

/** tfjs's `ReduceProgram`'s lanes for rows shorter than 4,096, and the forward's lanes. */
const LANES = 64;

/** What the forward program writes (its `which` uniform). */
const OUTPUTS = { loss: 0, implicitReward: 1, implicitStd: 2, advantageAbs: 3 } as const;

/**
 * Whether a GIFT loss on `logp` [B, T] in groups of `groupSize` takes the fused programs here: on
 * webgpu, with rows (T), groups and batches shorter than 4,096 (tfjs's reductions change there).
 */
export function giftOnDevice(shape: readonly number[], groupSize: number): boolean {
  const [rows = 0, tokens = 0] = shape;
  return wgslAvailable() && rows > 0 && rows < 4096 && tokens > 0 && tokens < 4096 &&
    Number.isInteger(groupSize) && groupSize >= 1 && groupSize < 4096 && rows % groupSize === 0;
}

/** WGSL shared by both programs: the implicit reward of a row, group statistics, Â and ũ. */
const COMMON = `
  var<private> rowLanes : array<f32, ${LANES}>;
  var<private> groupLanes : array<f32, ${LANES}>;

  // tfjs's ReduceProgram's tree over lanes' sums: while n > 1, lane l < ⌊n/2⌋ adds lane l + ⌈n/2⌉
${laneTreeWgsl("rowTree", "rowLanes", LANES)}

${laneTreeWgsl("groupTree", "groupLanes", LANES)}

  // u_i = Σ_t (logp − refLogp)·mask over row i, summed as tfjs sums a row
  fn implicitReward(i : i32) -> f32 {
    let tokens = uniforms.tokens;
    let base = i * tokens;
    for (var k = 0; k < min(tokens, ${LANES}); k = k + 1) {
      var s = 0.0;
      for (var t = k; t < tokens; t = t + ${LANES}) {
        let d = (f32(logp[base + t]) - f32(refLogp[base + t])) * uniforms.one;
        let masked = d * f32(mask[base + t]);
        s = s + masked;
      }
      rowLanes[k] = s;
    }
    return rowTree(tokens);
  }

  // the rewards (kind 0) or the implicit rewards (kind 1) of row i
  fn valueOf(kind : i32, i : i32) -> f32 {
    if (kind == 0) { return f32(rewards[i]); }
    return implicitReward(i);
  }

  // group_webgpu.ts's groupMean: x₀ + Mean(x − x₀)
  fn groupMean(kind : i32, base : i32, size : i32) -> f32 {
    let anchor = valueOf(kind, base);
    for (var k = 0; k < min(size, ${LANES}); k = k + 1) {
      var s = 0.0;
      for (var j = k; j < size; j = j + ${LANES}) {
        let deviation = valueOf(kind, base + j) - anchor;
        s = s + deviation;
      }
      groupLanes[k] = s;
    }
    let mean = groupTree(size) / f32(size);
    return anchor + mean;
  }

  // group_webgpu.ts's groupStd: √(Sum((x − mean)²) / (G − 1))
  fn groupStd(kind : i32, base : i32, size : i32, mean : f32) -> f32 {
    for (var k = 0; k < min(size, ${LANES}); k = k + 1) {
      var s = 0.0;
      for (var j = k; j < size; j = j + ${LANES}) {
        let deviation = valueOf(kind, base + j) - mean;
        let square = deviation * deviation;
        s = s + square;
      }
      groupLanes[k] = s;
    }
    let sum = groupTree(size);
    return sqrt(sum / f32(size - 1));
  }

  // standardize(): (x − mean) / (std + ε)
  fn standardized(x : f32, mean : f32, spread : f32) -> f32 {
    let deviation = (x - mean) * uniforms.one;
    let scale = (spread + uniforms.epsilon) * uniforms.one;
    return deviation / scale;
  }`;

/** The forward program's WGSL: one workgroup, one of the four values, as tfjs's `Mean` takes it. */
const FORWARD = `${COMMON}
${treeSumWgsl(LANES)}

  // row i's (Â_i − β_c·ũ_i)², u_i and |Â_i|, its group's statistics recomputed
  fn rowValues(i : i32) -> vec3<f32> {
    let one = uniforms.one;
    let size = uniforms.size;
    let r = f32(rewards[i]);
    let u = implicitReward(i);
    var advantage = r; // a group of one: Â = r, ũ = u·0
    var tilde = u * 0.0;
    if (size > 1) {
      let base = (i / size) * size;
      let rewardMean = groupMean(0, base, size);
      advantage = standardized(r, rewardMean, groupStd(0, base, size, rewardMean));
      let uMean = groupMean(1, base, size);
      tilde = standardized(u, uMean, groupStd(1, base, size, uMean));
    }
    let difference = (advantage - tilde * uniforms.betaC * one) * one;
    return vec3<f32>(difference * one * difference, u, abs(advantage));
  }

  fn main(index : i32) {
    let which = uniforms.which;
    let size = uniforms.size;
    let groups = uniforms.rows / size;
    var s = 0.0;
    var count = uniforms.rows;
    if (which == 2) { // the mean over groups of std_g u (0 for groups of one)
      count = groups;
      if (size > 1) {
        for (var g = index; g < groups; g = g + ${LANES}) {
          let base = g * size;
          s = s + groupStd(1, base, size, groupMean(1, base, size));
        }
      }
    } else { // a mean over rows of (Â − β_c·ũ)², u or |Â|
      let component = select(select(2, 1, which == 1), 0, which == 0);
      for (var i = index; i < uniforms.rows; i = i + ${LANES}) {
        s = s + rowValues(i)[component];
      }
    }
    let total = treeSum(s, count);
    if (index == 0) {
      result[0] = total / f32(count);
    }
  }`;

/** The backward program's WGSL: one workgroup a row, ∂L/∂logp of its tokens. */
const BACKWARD = `${COMMON}
  var<workgroup> coefficient : f32;

  fn main(index : i32) {
    let one = uniforms.one;
    let tokens = uniforms.tokens;
    let size = uniforms.size;
    let lane = i32(localId.x);
    let row = index / ${LANES};
    if (lane == 0) {
      let base = (row / size) * size;
      let scale = f32(dy[0]) / f32(uniforms.rows); // Mean's gradient
      if (size == 1) {
        let r = f32(rewards[row]);
        let u = implicitReward(row);
        let tilde = u * 0.0;
        let difference = (r - tilde * uniforms.betaC * one) * one;
        let dDifference = scale * ((difference * 2.0) * one); // Square's
        let dTilde = (-dDifference * uniforms.betaC) * one; // Sub's, Mul's
        coefficient = dTilde * 0.0; // u·0
      } else {
        let rewardMean = groupMean(0, base, size);
        let rewardStd = groupStd(0, base, size, rewardMean);
        let uMean = groupMean(1, base, size);
        let uStd = groupStd(1, base, size, uMean);
        let advantage = standardized(f32(rewards[row]), rewardMean, rewardStd);
        let tilde = standardized(implicitReward(row), uMean, uStd);
        let difference = (advantage - tilde * uniforms.betaC * one) * one;
        let dDifference = scale * ((difference * 2.0) * one); // Square's
        let dTilde = (-dDifference * uniforms.betaC) * one; // Sub's, Mul's
        coefficient = dTilde / ((uStd + uniforms.epsilon) * one); // Div's
      }
    }
    workgroupBarrier();
    let c = coefficient;
    for (var t = lane; t < tokens; t = t + ${LANES}) {
      result[row * tokens + t] = c * f32(mask[row * tokens + t]); // Sum's, Mul's
    }
  }`;

/** The constants of one GIFT loss: what its programs read besides `logp`. */
interface GiftConstants {
  refLogp: tf.Tensor2D;
  mask: tf.Tensor2D;
  rewards: tf.Tensor1D;
  groupSize: number;
  betaC: number;
  epsilon: number;
}

function uniformsOf(logp: tf.Tensor, c: GiftConstants): Record<string, Uniform> {
  const [rows = 0, tokens = 0] = logp.shape;
  return {
    rows: ["i32", rows],
    tokens: ["i32", tokens],
    size: ["i32", c.groupSize],
    epsilon: ["f32", c.epsilon],
    betaC: ["f32", c.betaC],
    one: ["f32", 1],
  };
}

function forward(logp: tf.Tensor2D, c: GiftConstants, which: keyof typeof OUTPUTS): tf.Scalar {
  const out = runFused({
    name: "gift_forward",
    inputs: ["logp", "refLogp", "mask", "rewards"],
    outputShape: [1],
    workgroupSize: LANES,
    workgroups: 1,
    uniforms: { ...uniformsOf(logp, c), which: ["i32", OUTPUTS[which]] },
    code: FORWARD,
  }, [logp, c.refLogp, c.mask, c.rewards]);
  const scalar = tf.reshape(out, []) as tf.Scalar; // the same buffer
  out.dispose();
  return scalar;
}

function backward(dy: tf.Tensor, logp: tf.Tensor2D, c: GiftConstants): tf.Tensor2D {
  return runFused({
    name: "gift_backward",
    inputs: ["dy", "logp", "refLogp", "mask", "rewards"],
    outputShape: logp.shape,
    workgroupSize: LANES,
    workgroups: logp.shape[0],
    uniforms: uniformsOf(logp, c),
    code: BACKWARD,
  }, [dy, logp, c.refLogp, c.mask, c.rewards]) as tf.Tensor2D;
}

/**
 * GIFT's loss and metrics (`gift.ts`) of `logp` [B, T] against the constants `c`, in four
 * dispatches, and the loss's gradient w.r.t. `logp` in one. Only where {@linkcode giftOnDevice};
 * the batch's shapes are checked by the caller (`checkBatch`).
 *
 * @example
 * ```ts
 * const { loss, metrics } = giftLossOnDevice(logp, { refLogp, mask, rewards, groupSize: 8,
 *   betaC: 1, epsilon: 1e-6 });
 * ```
 */
export function giftLossOnDevice(
  logp: tf.Tensor2D,
  c: GiftConstants,
): { loss: tf.Scalar; metrics: Record<string, tf.Scalar> } {
  const differentiable = tf.customGrad(
    ((lp: tf.Tensor2D, save: tf.GradSaveFunc) => {
      save([lp]);
      return {
        value: forward(lp, c, "loss"),
        gradFunc: (dy: tf.Tensor, [saved]: tf.Tensor[]) => backward(dy, saved as tf.Tensor2D, c),
      };
    }) as unknown as Parameters<typeof tf.customGrad>[0],
  );
  const loss = differentiable(logp) as tf.Scalar;
  const metrics = {
    implicitReward: forward(logp, c, "implicitReward"),
    implicitStd: forward(logp, c, "implicitStd"),
    advantageAbs: forward(logp, c, "advantageAbs"),
  };
  return { loss, metrics };
}
