/**
 * The `webgpu` kernel set: the plain tfjs set (`tfjs.ts`) with the operations the model is written
 * in fused into WGSL programs (`webgpu_program.ts`), one dispatch each way where tfjs's ops took
 * 6 to 21:
 *
 * - RMSNorm: one program forward (a workgroup per row); backward, each row's 1/rms, then dx (a
 *   workgroup per row) and dw (a workgroup per column); on a CPU adapter an invocation per row or
 *   column instead (`rowProgram`), as for the other row programs;
 * - RoPE fused with the split into heads: one program forward, one backward (the transposed
 *   rotation straight back to [B·T, H·hd]);
 * - SwiGLU's elementwise silu(g)·u: one program forward, one per gradient (dg, du); the three
 *   products stay matMuls;
 * - attention: one program forward, a workgroup per query row over tiles of 64 keys with the
 *   softmax online (no [T, S] tensor, the causal and padding mask made in the shader), four
 *   backward (each row's softmax statistics, then dq, dk and dv); on a CPU adapter the same five
 *   programs an invocation per row (`attention_lanes.ts`); heads wider than 256 take
 *   q·kᵀ with the transpose flag and a fused masked softmax (one program each way) instead;
 * - the log-softmax at each row's target: one program forward (max, log Σ exp and the target's
 *   value, a workgroup per row; nothing of [N, V] is written), one backward (the softmax
 *   recomputed from the logits);
 * - the unembedding is one product with the transpose flag (no transposed copy of the table).
 *   The backward pass's products keep the plain set's transpose first where tfjs's programs run
 *   them: with the flags a front-door step is 29 dispatches fewer, but tfjs's matmul then leaves
 *   its vec4 path (`transposeB`), and on lavapipe the step took up to twice the wall time. Where
 *   our tile program runs them (a CPU adapter: `matmul_webgpu.ts`), it reads either side
 *   transposed at no cost, and the flags go to it (`webgpuProduct`).
 * - the embedding is `gather` forward, its gradient one program (a sum of the rows at each id).
 *
 * Why: on webgpu the host spends ~100 µs per kernel whatever it computes (docs/tfjs.md, "WebGPU
 * host costs"), and at the sizes trained here the kernels are small: the step is dispatch-bound.
 * AdamW stays the plain ops (`adamWOps`).
 *
 * Float32 throughout, sums in float32 (tree reductions over a workgroup): the results agree with
 * the plain ops to float32 rounding, not bit for bit (tests/runtime/engine/kernels/webgpu_test.ts).
 *
 * @module
 */

import { tf } from "../tf.ts";
import { cachedTensors } from "./constants.ts";
import type { KernelSet, Rotary } from "./types.ts";
import {
  adamWOps,
  gatherRows,
  linear,
  logSoftmaxAt as opsLogSoftmaxAt,
  rotaryShape,
  tfjsDecoder,
  transposedFirst,
} from "./tfjs.ts";
import {
  attentionUniforms,
  laneAttentionDkv,
  laneAttentionDq,
  laneAttentionForward,
  laneAttentionStats,
  laneAttentionTakes,
} from "./attention_lanes.ts";
import { tileProduct } from "./matmul_webgpu.ts";
import {
  cpuAdapterPrograms,
  type FusedProgram,
  runFused,
  type Uniform,
  workgroupsFor,
} from "./webgpu_program.ts";

/** Invocations per workgroup of the elementwise programs. */
const ELEMENTWISE = 64;

/** Values one tensor may index with i32 flat indices in WGSL. */
const MAX_VALUES = 2 ** 31 - 1;

/** The workgroup of a program that reduces rows of `cols` values: wider for long rows. */
function rowWorkgroup(cols: number): number {
  return cols >= 4096 ? 256 : 64;
}

/**
 * WGSL of a workgroup's sum and max of one value per lane (`width` lanes, a power of two): every
 * lane gets the result. Each call must be reached by the whole workgroup (it holds barriers).
 */
function reductions(width: number): string {
  const tree = (op: string) => `
    partial[lane] = value;
    workgroupBarrier();
    for (var s = ${width / 2}u; s > 0u; s = s >> 1u) {
      if (lane < s) { partial[lane] = ${op}; }
      workgroupBarrier();
    }
    let total = partial[0];
    workgroupBarrier();
    return total;`;
  return `
  var<workgroup> partial : array<f32, ${width}>;
  fn reduceSum(value : f32) -> f32 {
    let lane = localId.x;${tree("partial[lane] + partial[lane + s]")}
  }
  fn reduceMax(value : f32) -> f32 {
    let lane = localId.x;${tree("max(partial[lane], partial[lane + s])")}
  }`;
}

/**
 * A program run by one workgroup per row of `rows` rows of `cols` values: its code sees `row`,
 * `lane` (0 … width − 1), `width`, `cols`, `valid` (row < rows: a workgroup past the end still
 * reaches the barriers) and `reduceSum`/`reduceMax`.
 *
 * On a CPU adapter, rows narrower than {@linkcode LANE_ROW_MAX_COLS} run the same body one
 * invocation per row instead, as a workgroup of one lane (`lane` 0, `width` 1, the reductions of
 * the one value). Lavapipe runs a workgroup's lanes 8 at a time in SIMD and each barrier of a
 * workgroup's reduction as a switch between them; a row per invocation has no barrier and no idle
 * lane. The row's sums then run in order instead of as a tree: float32 rounding apart, the same
 * values.
 */
function rowProgram(
  name: string,
  inputs: readonly string[],
  outputShape: readonly number[],
  [rows, cols]: [number, number],
  uniforms: Record<string, Uniform>,
  body: string,
): FusedProgram {
  const lanes = cpuAdapterPrograms() && cols < LANE_ROW_MAX_COLS;
  const width = lanes ? 1 : rowWorkgroup(cols);
  return {
    name: lanes ? `${name}_lanes` : name,
    inputs,
    outputShape,
    workgroupSize: lanes ? LANE_WORKGROUP : width,
    workgroups: lanes ? workgroupsFor(rows, LANE_WORKGROUP) : rows,
    uniforms: { rows: ["i32", rows], cols: ["i32", cols], ...uniforms },
    code: () =>
      `${lanes ? ONE_LANE_REDUCTIONS : reductions(width)}
    fn main(index : i32) {
      let width = ${width};
      let row = ${lanes ? "index" : "index / width"};
      let lane = ${lanes ? "0" : "i32(localId.x)"};
      let cols = uniforms.cols;
      let valid = row < uniforms.rows;
      ${body}
    }`,
  };
}

/**
 * On a CPU adapter, rows narrower than this run an invocation each (`rowProgram`); wider ones
 * (a vocabulary's logits) keep a workgroup each, so that a few rows still spread over the cores.
 */
const LANE_ROW_MAX_COLS = 4096;

/** Invocations per workgroup of the programs run an invocation per row or column. */
const LANE_WORKGROUP = 16;

/** `reductions` of a workgroup of one lane: the one value. */
const ONE_LANE_REDUCTIONS = `
  fn reduceSum(value : f32) -> f32 { return value; }
  fn reduceMax(value : f32) -> f32 { return value; }`;

/** A program with one invocation per output value (`i`, and `count` values in all). */
function elementwise(
  name: string,
  inputs: readonly string[],
  outputShape: readonly number[],
  uniforms: Record<string, Uniform>,
  body: string,
  prelude = "",
): FusedProgram {
  const count = outputShape.reduce((a, b) => a * b, 1);
  return {
    name,
    inputs,
    outputShape,
    workgroupSize: ELEMENTWISE,
    workgroups: workgroupsFor(count, ELEMENTWISE),
    uniforms: { count: ["i32", count], ...uniforms },
    code: () =>
      `${prelude}
    fn main(i : i32) {
      if (i >= uniforms.count) { return; }
      ${body}
    }`,
  };
}

// RMSNorm ---------------------------------------------------------------------------------------

/** x [N, d] / rms(x) · w: a workgroup per row. */
function rmsNormForward(x: tf.Tensor2D, w: tf.Tensor, eps: number): tf.Tensor2D {
  const [rows, d] = x.shape;
  return runFused(
    rowProgram(
      "rms_norm",
      ["x", "w"],
      [rows, d],
      [rows, d],
      { eps: ["f32", eps] },
      `
      let base = row * cols;
      var squares = 0.0;
      if (valid) { for (var c = lane; c < cols; c += width) { let v = x[base + c]; squares += v * v; } }
      let r = inverseSqrt(reduceSum(squares) / f32(cols) + uniforms.eps);
      if (valid) { for (var c = lane; c < cols; c += width) { result[base + c] = x[base + c] * r * w[c]; } }`,
    ),
    [x, w],
  ) as tf.Tensor2D;
}

/** 1 / rms of each row of x [N, d] → [N]. */
function inverseRms(x: tf.Tensor2D, eps: number): tf.Tensor1D {
  const [rows, d] = x.shape;
  return runFused(
    rowProgram(
      "rms_norm_inverse",
      ["x"],
      [rows],
      [rows, d],
      { eps: ["f32", eps] },
      `
      let base = row * cols;
      var squares = 0.0;
      if (valid) { for (var c = lane; c < cols; c += width) { let v = x[base + c]; squares += v * v; } }
      let r = inverseSqrt(reduceSum(squares) / f32(cols) + uniforms.eps);
      if (valid && lane == 0) { result[row] = r; }`,
    ),
    [x],
  ) as tf.Tensor1D;
}

/** RMSNorm's dx = r·w·dy − x·r³·Σ(dy·w·x)/d per row, from r = 1/rms: a workgroup per row. */
function rmsNormDx(x: tf.Tensor, w: tf.Tensor, dy: tf.Tensor, r: tf.Tensor): tf.Tensor {
  const [rows, d] = x.shape as [number, number];
  return runFused(
    rowProgram(
      "rms_norm_dx",
      ["x", "w", "dy", "inv"],
      [rows, d],
      [rows, d],
      {},
      `
      let base = row * cols;
      var dot = 0.0;
      if (valid) { for (var c = lane; c < cols; c += width) { dot += dy[base + c] * w[c] * x[base + c]; } }
      let total = reduceSum(dot);
      if (valid) {
        let r = inv[row];
        let k = r * r * r * total / f32(cols);
        for (var c = lane; c < cols; c += width) {
          result[base + c] = r * w[c] * dy[base + c] - x[base + c] * k;
        }
      }`,
    ),
    [x, w, dy, r],
  );
}

/** RMSNorm's dw = Σ_rows dy·x·r: a workgroup per column, its lanes over the rows. */
function rmsNormDw(x: tf.Tensor, dy: tf.Tensor, r: tf.Tensor): tf.Tensor1D {
  const [rows, d] = x.shape as [number, number];
  if (cpuAdapterPrograms()) {
    // a CPU adapter's: an invocation per column, the rows in order (see `rowProgram`)
    return runFused({
      name: "rms_norm_dw_lanes",
      inputs: ["x", "dy", "inv"],
      outputShape: [d],
      workgroupSize: LANE_WORKGROUP,
      workgroups: workgroupsFor(d, LANE_WORKGROUP),
      uniforms: { rows: ["i32", rows], cols: ["i32", d] },
      code: () => `
      fn main(index : i32) {
        let col = index;
        let cols = uniforms.cols;
        if (col >= cols) { return; }
        var sum = 0.0;
        for (var n = 0; n < uniforms.rows; n++) {
          sum += dy[n * cols + col] * x[n * cols + col] * inv[n];
        }
        result[col] = sum;
      }`,
    }, [x, dy, r]) as tf.Tensor1D;
  }
  const width = rowWorkgroup(rows);
  return runFused({
    name: "rms_norm_dw",
    inputs: ["x", "dy", "inv"],
    outputShape: [d],
    workgroupSize: width,
    workgroups: d,
    uniforms: { rows: ["i32", rows], cols: ["i32", d] },
    code: () =>
      `${reductions(width)}
    fn main(index : i32) {
      let col = index / ${width};
      let lane = i32(localId.x);
      let cols = uniforms.cols;
      let valid = col < cols;
      var sum = 0.0;
      if (valid) {
        for (var n = lane; n < uniforms.rows; n += ${width}) {
          sum += dy[n * cols + col] * x[n * cols + col] * inv[n];
        }
      }
      let total = reduceSum(sum);
      if (valid && lane == 0) { result[col] = total; }
    }`,
  }, [x, dy, r]) as tf.Tensor1D;
}

/**
 * RMSNorm fused for webgpu: one dispatch forward, three backward (1/rms, dx, dw).
 *
 * @example
 * ```ts
 * const y = tf.tidy(() => webgpuRmsNorm(x, w, 1e-5)); // [N, d]
 * ```
 */
export function webgpuRmsNorm(x: tf.Tensor2D, w: tf.Tensor, eps: number): tf.Tensor2D {
  const f = tf.customGrad(
    ((xt: tf.Tensor2D, wt: tf.Tensor1D, save: tf.GradSaveFunc) => {
      save([xt, wt]);
      return {
        value: rmsNormForward(xt, wt, eps),
        gradFunc: (dy: tf.Tensor, [xs, ws]: tf.Tensor[]) => {
          const r = inverseRms(xs as tf.Tensor2D, eps); // [N]
          const dx = rmsNormDx(xs!, ws!, dy, r); // [N, d]
          const dw = rmsNormDw(xs!, dy, r); // [d]
          r.dispose();
          return [dx, tf.reshape(dw, ws!.shape)];
        },
      };
    }) as unknown as Parameters<typeof tf.customGrad>[0],
  );
  return f(x, w) as tf.Tensor2D;
}

// RoPE ------------------------------------------------------------------------------------------

/** The uniforms of a RoPE program on x [B·T, H·hd] with tables of `tableRows` rows. */
function ropeUniforms(
  batch: number,
  time: number,
  heads: number,
  hd: number,
  cos: tf.Tensor,
): Record<string, Uniform> {
  return {
    time: ["i32", time],
    heads: ["i32", heads],
    hd: ["i32", hd],
    perRow: ["i32", cos.rank === 4 && batch > 1 ? 1 : 0], // [B, 1, T, hd] tables: one per row
  };
}

/**
 * x [B·T, H·hd] → [B, H, T, hd] with RoPE in the rotate-half layout, or (`backward`) the transposed
 * rotation of dy [B, H, T, hd] back to [B·T, H·hd]. One dispatch.
 */
function ropeProgram(
  input: tf.Tensor,
  [batch, time, heads, hd]: [number, number, number, number],
  cos: tf.Tensor,
  sin: tf.Tensor,
  backward: boolean,
): tf.Tensor {
  const shape = backward ? [batch * time, heads * hd] : [batch, heads, time, hd];
  // the coordinates of value i: b, h, t, j (its column in the head)
  const coords = backward
    ? `let rowIndex = i / (uniforms.heads * hd); let col = i - rowIndex * uniforms.heads * hd;
       let b = rowIndex / uniforms.time; let t = rowIndex - b * uniforms.time;
       let h = col / hd; let j = col - h * hd;`
    : `let j = i % hd; let t = (i / hd) % uniforms.time; let h = (i / (hd * uniforms.time)) % uniforms.heads;
       let b = i / (hd * uniforms.time * uniforms.heads);`;
  // the value at column c of the same head and position, in the input's layout
  const at = backward
    ? `((b * uniforms.heads + h) * uniforms.time + t) * hd`
    : `(b * uniforms.time + t) * uniforms.heads * hd + h * hd`;
  const rotated = backward
    // dx_j = dy_j·cos_j + (j < half: dy_{j+half}·sin_{j+half}; else −dy_{j−half}·sin_{j−half})
    ? `let p = select(j - half, j + half, j < half);
       let sign = select(-1.0, 1.0, j < half);
       result[i] = v[base + j] * cosTable[table + j] + sign * v[base + p] * sinTable[table + p];`
    // y_j = x_j·cos_j + rotate_half(x)_j·sin_j, rotate_half(x) = [−x₂, x₁]
    : `let p = select(j - half, j + half, j < half);
       let sign = select(1.0, -1.0, j < half);
       result[i] = v[base + j] * cosTable[table + j] + sign * v[base + p] * sinTable[table + j];`;
  return runFused(
    elementwise(
      backward ? "rope_heads_backward" : "rope_heads",
      ["v", "cosTable", "sinTable"],
      shape,
      ropeUniforms(batch, time, heads, hd, cos),
      `let hd = uniforms.hd; let half = hd / 2;
      ${coords}
      let base = ${at};
      let table = (select(0, b, uniforms.perRow == 1) * uniforms.time + t) * hd;
      ${rotated}`,
    ),
    [input, cos, sin],
  );
}

/**
 * A projection x [B·T, H·hd] split into heads with RoPE applied, as one program each way.
 *
 * @example
 * ```ts
 * const q = webgpuRopeHeads(x, 4, ropeTables(config, 0, time, null)); // [B, 4, T, hd]
 * ```
 */
export function webgpuRopeHeads(x: tf.Tensor2D, heads: number, rotary: Rotary): tf.Tensor4D {
  const { batch, time } = rotaryShape(x, rotary);
  const dims: [number, number, number, number] = [batch, time, heads, x.shape[1] / heads];
  const f = tf.customGrad(
    ((xt: tf.Tensor2D, save: tf.GradSaveFunc) => {
      save([rotary.cos, rotary.sin]); // kept for the gradient, after the caller's tidy freed them
      return {
        value: ropeProgram(xt, dims, rotary.cos, rotary.sin, false) as tf.Tensor4D,
        gradFunc: (dy: tf.Tensor, [cos, sin]: tf.Tensor[]) =>
          ropeProgram(dy, dims, cos!, sin!, true),
      };
    }) as unknown as Parameters<typeof tf.customGrad>[0],
  );
  return f(x) as tf.Tensor4D;
}

// SwiGLU ----------------------------------------------------------------------------------------

/** σ(g) as tfjs-webgpu's sigmoid computes it. */
const SIGMOID = `fn sigmoid(a : f32) -> f32 { return 1.0 / (1.0 + exp(-1.0 * a)); }`;

/**
 * silu(g)·u = g·σ(g)·u for g, u [N, F]: one program forward; backward one per gradient,
 * dg = dh·u·σ(g)·(1 + g·(1 − σ(g))) and du = dh·g·σ(g).
 *
 * @example
 * ```ts
 * const h = webgpuGatedSilu(tf.matMul(x, gate), tf.matMul(x, up)); // [N, F]
 * ```
 */
export function webgpuGatedSilu(g: tf.Tensor2D, u: tf.Tensor2D): tf.Tensor2D {
  const f = tf.customGrad(
    ((gt: tf.Tensor2D, ut: tf.Tensor2D, save: tf.GradSaveFunc) => {
      save([gt, ut]);
      const value = runFused(
        elementwise(
          "gated_silu",
          ["g", "u"],
          gt.shape,
          {},
          `
          let a = g[i];
          result[i] = a * sigmoid(a) * u[i];`,
          SIGMOID,
        ),
        [gt, ut],
      );
      return {
        value,
        gradFunc: (dh: tf.Tensor, [gs, us]: tf.Tensor[]) => {
          const part = (which: number) =>
            runFused(
              elementwise(
                "gated_silu_backward",
                ["g", "u", "dh"],
                gt.shape,
                {
                  part: ["i32", which],
                },
                `
                let a = g[i];
                let s = sigmoid(a);
                if (uniforms.part == 0) {
                  result[i] = dh[i] * u[i] * s * (1.0 + a * (1.0 - s));
                } else {
                  result[i] = dh[i] * a * s;
                }`,
                SIGMOID,
              ),
              [gs!, us!, dh],
            );
          return [part(0), part(1)];
        },
      };
    }) as unknown as Parameters<typeof tf.customGrad>[0],
  );
  return f(g, u) as tf.Tensor2D;
}

/** SwiGLU with its elementwise part fused: (silu(x·W_gate) ⊙ x·W_up)·W_down. */
function webgpuSwiGlu(
  x: tf.Tensor2D,
  gate: tf.Tensor,
  up: tf.Tensor,
  down: tf.Tensor,
): tf.Tensor2D {
  return linear(webgpuGatedSilu(linear(x, gate), linear(x, up)), down); // [N, d]
}

// Attention -------------------------------------------------------------------------------------

/** Each row's left padding [B] (int32), zeros without padding, kept on the device. */
function paddingTensor(batch: number, padding: readonly number[] | null): tf.Tensor1D {
  const [pad] = cachedTensors(`attention-padding:${batch}:${padding?.join() ?? "none"}`, () => [
    tf.tensor1d(Int32Array.from({ length: batch }, (_, b) => padding?.[b] ?? 0), "int32"),
  ]);
  return pad as tf.Tensor1D;
}

/**
 * softmax(scores·scale + mask) over the last axis of scores [B, H, T, S], the mask made in the
 * shader: −1e9 on keys after the query (query t is position S − T + t) and on row b's first
 * `padding[b]` keys, as `attentionBias`'s. Backward: scale·P·(dP − Σ P·dP) per row.
 */
function maskedSoftmax(
  scores: tf.Tensor4D,
  padding: readonly number[] | null,
  scale: number,
): tf.Tensor4D {
  const [batch, heads, time, keys] = scores.shape;
  const rows = batch * heads * time;
  const pad = paddingTensor(batch, padding);
  const f = tf.customGrad(
    ((st: tf.Tensor4D, save: tf.GradSaveFunc) => {
      const probs = runFused(
        rowProgram(
          "masked_softmax",
          ["scores", "pad"],
          st.shape,
          [rows, keys],
          {
            time: ["i32", time],
            heads: ["i32", heads],
            scale: ["f32", scale],
          },
          `
          let base = row * cols;
          let t = row % uniforms.time;
          let b = row / (uniforms.time * uniforms.heads);
          let past = cols - uniforms.time;
          var first = 0;
          if (valid) { first = pad[b]; }
          var peak = -3.402823e+38;
          if (valid) {
            for (var c = lane; c < cols; c += width) {
              let bias = select(0.0, -1e9, c > past + t || c < first);
              peak = max(peak, scores[base + c] * uniforms.scale + bias);
            }
          }
          let m = reduceMax(peak);
          var sum = 0.0;
          if (valid) {
            for (var c = lane; c < cols; c += width) {
              let bias = select(0.0, -1e9, c > past + t || c < first);
              sum += exp(scores[base + c] * uniforms.scale + bias - m);
            }
          }
          let total = reduceSum(sum);
          if (valid) {
            for (var c = lane; c < cols; c += width) {
              let bias = select(0.0, -1e9, c > past + t || c < first);
              result[base + c] = exp(scores[base + c] * uniforms.scale + bias - m) / total;
            }
          }`,
        ),
        [st, pad],
      ) as tf.Tensor4D;
      save([probs]);
      return {
        value: probs,
        gradFunc: (dp: tf.Tensor, [p]: tf.Tensor[]) =>
          runFused(
            rowProgram(
              "masked_softmax_backward",
              ["p", "dp"],
              st.shape,
              [rows, keys],
              {
                scale: ["f32", scale],
              },
              `
              let base = row * cols;
              var dot = 0.0;
              if (valid) { for (var c = lane; c < cols; c += width) { dot += p[base + c] * dp[base + c]; } }
              let total = reduceSum(dot);
              if (valid) {
                for (var c = lane; c < cols; c += width) {
                  result[base + c] = p[base + c] * (dp[base + c] - total) * uniforms.scale;
                }
              }`,
            ),
            [p!, dp],
          ),
      };
    }) as unknown as Parameters<typeof tf.customGrad>[0],
  );
  return f(scores) as tf.Tensor4D;
}

/** Lanes of the fused attention's workgroups; each lane holds up to 4 of a head's columns. */
const ATTENTION_LANES = 64;

/** Head widths the fused attention takes: 4 columns per lane. */
const FUSED_ATTENTION_MAX_HD = 4 * ATTENTION_LANES;

/**
 * WGSL shared by the fused attention's programs: the workgroup's tile of one value per lane
 * (`tile`), the mask of key s for query t of row b (`masked`), and the scaled score of query
 * `qAt` and key `kAt` (flat offsets of their rows).
 */
const ATTENTION_COMMON = `
  var<workgroup> tile : array<f32, ${ATTENTION_LANES}>;
  fn masked(s : i32, t : i32, first : i32) -> bool {
    return s > uniforms.keys - uniforms.time + t || s < first;
  }
  fn score(qAt : i32, kAt : i32, s : i32, t : i32, first : i32) -> f32 {
    var dot = 0.0;
    for (var j = 0; j < uniforms.hd; j++) { dot += q[qAt + j] * k[kAt + j]; }
    return dot * uniforms.scale + select(0.0, -1e9, masked(s, t, first));
  }`;

/**
 * The WGSL heading each fused attention program run by a workgroup per query row (b, h, t):
 * `row`, `lane`, `valid`, `t`, `bh` (b·H + h), `first` (the row's first unmasked key) and the
 * flat offsets of its query (`qAt`) and of its head's keys (`kBase`).
 */
const QUERY_ROW = `
  let lane = i32(localId.x);
  let row = index / ${ATTENTION_LANES};
  let valid = row < uniforms.rows;
  let t = row % uniforms.time;
  let bh = row / uniforms.time;
  var first = 0;
  if (valid) { first = pad[bh / uniforms.heads]; }
  let hd = uniforms.hd;
  let qAt = row * hd;
  let kBase = bh * uniforms.keys * hd;`;

/**
 * softmax(q·kᵀ·scale + mask)·v in one program, a workgroup per query row: the keys a tile of 64 at
 * a time, the softmax online (running max and sum, the output rescaled as the max grows), no
 * [T, S] tensor written.
 */
function attentionForward(
  q: tf.Tensor4D,
  k: tf.Tensor4D,
  v: tf.Tensor4D,
  pad: tf.Tensor,
): tf.Tensor4D {
  const [batch, heads, time] = q.shape;
  const rows = batch * heads * time;
  const keys = k.shape[2];
  return runFused({
    name: "attention",
    inputs: ["q", "k", "v", "pad"],
    outputShape: q.shape,
    workgroupSize: ATTENTION_LANES,
    workgroups: rows,
    uniforms: attentionUniforms(q, keys, rows),
    code: () =>
      `${reductions(ATTENTION_LANES)}${ATTENTION_COMMON}
    fn main(index : i32) {
      ${QUERY_ROW}
      var m = -3.402823e+38;
      var sum = 0.0;
      var acc = array<f32, 4>(0.0, 0.0, 0.0, 0.0);
      for (var start = 0; start < uniforms.keys; start += ${ATTENTION_LANES}) {
        let s = start + lane;
        let live = valid && s < uniforms.keys;
        var x = -3.402823e+38;
        if (live) { x = score(qAt, kBase + s * hd, s, t, first); }
        let next = max(m, reduceMax(x));
        var p = 0.0;
        if (live) { p = exp(x - next); }
        tile[lane] = p;
        let rescale = exp(m - next);
        sum = sum * rescale + reduceSum(p);
        let count = min(${ATTENTION_LANES}, uniforms.keys - start);
        for (var r = 0; r < 4; r++) {
          let j = lane + r * ${ATTENTION_LANES};
          if (valid && j < hd) {
            var part = 0.0;
            for (var i = 0; i < count; i++) { part += tile[i] * v[kBase + (start + i) * hd + j]; }
            acc[r] = acc[r] * rescale + part;
          }
        }
        m = next;
        workgroupBarrier();
      }
      for (var r = 0; r < 4; r++) {
        let j = lane + r * ${ATTENTION_LANES};
        if (valid && j < hd) { result[qAt + j] = acc[r] / sum; }
      }
    }`,
  }, [q, k, v, pad]) as tf.Tensor4D;
}

/**
 * Per query row, the max m of its scores, ℓ = log Σ exp(score − m) and D = dO·O (= Σ_s P·dP, the
 * softmax gradient's row term): [B·H·T, 3]. Lanes over keys keep their own running max and sum,
 * then combine. m and ℓ stay apart: a row whose keys are all masked has scores of −1e9, where
 * m + ℓ would round ℓ away (float32's spacing there is 64) and P = exp((score − m) − ℓ) with it.
 */
function attentionStats(
  q: tf.Tensor4D,
  k: tf.Tensor4D,
  out: tf.Tensor,
  dOut: tf.Tensor,
  pad: tf.Tensor,
): tf.Tensor {
  const [batch, heads, time] = q.shape;
  const rows = batch * heads * time;
  return runFused({
    name: "attention_stats",
    inputs: ["q", "k", "o", "dO", "pad"],
    outputShape: [rows, 3],
    workgroupSize: ATTENTION_LANES,
    workgroups: rows,
    uniforms: attentionUniforms(q, k.shape[2], rows),
    code: () =>
      `${reductions(ATTENTION_LANES)}${ATTENTION_COMMON}
    fn main(index : i32) {
      ${QUERY_ROW}
      var m = -3.402823e+38;
      var sum = 0.0;
      var dot = 0.0;
      if (valid) {
        for (var s = lane; s < uniforms.keys; s += ${ATTENTION_LANES}) {
          let x = score(qAt, kBase + s * hd, s, t, first);
          let next = max(m, x);
          sum = sum * exp(m - next) + exp(x - next);
          m = next;
        }
        for (var j = lane; j < hd; j += ${ATTENTION_LANES}) { dot += dO[qAt + j] * o[qAt + j]; }
      }
      let peak = reduceMax(m);
      let total = reduceSum(sum * exp(m - peak));
      let d = reduceSum(dot);
      if (valid && lane == 0) {
        result[row * 3] = peak;
        result[row * 3 + 1] = log(total);
        result[row * 3 + 2] = d;
      }
    }`,
  }, [q, k, out, dOut, pad]);
}

/**
 * dq = scale·Σ_s dS·k_s per query row, dS = P·(dP − D), P = exp((score − m) − ℓ), dP = dO·v_s: the keys a
 * tile of 64 at a time, dS through the workgroup's tile.
 */
function attentionDq(
  [q, k, v, dOut, stats, pad]: tf.Tensor[],
  keys: number,
): tf.Tensor {
  const [batch, heads, time] = q!.shape as [number, number, number, number];
  const rows = batch * heads * time;
  return runFused({
    name: "attention_dq",
    inputs: ["q", "k", "v", "dO", "stats", "pad"],
    outputShape: q!.shape,
    workgroupSize: ATTENTION_LANES,
    workgroups: rows,
    uniforms: attentionUniforms(q as tf.Tensor4D, keys, rows),
    code: () =>
      `${ATTENTION_COMMON}
    fn main(index : i32) {
      ${QUERY_ROW}
      var m = 0.0;
      var logSum = 0.0;
      var d = 0.0;
      if (valid) { m = stats[row * 3]; logSum = stats[row * 3 + 1]; d = stats[row * 3 + 2]; }
      var acc = array<f32, 4>(0.0, 0.0, 0.0, 0.0);
      for (var start = 0; start < uniforms.keys; start += ${ATTENTION_LANES}) {
        let s = start + lane;
        var ds = 0.0;
        if (valid && s < uniforms.keys) {
          let p = exp((score(qAt, kBase + s * hd, s, t, first) - m) - logSum);
          var dp = 0.0;
          for (var j = 0; j < hd; j++) { dp += dO[qAt + j] * v[kBase + s * hd + j]; }
          ds = p * (dp - d);
        }
        tile[lane] = ds;
        workgroupBarrier();
        let count = min(${ATTENTION_LANES}, uniforms.keys - start);
        for (var r = 0; r < 4; r++) {
          let j = lane + r * ${ATTENTION_LANES};
          if (valid && j < hd) {
            for (var i = 0; i < count; i++) { acc[r] += tile[i] * k[kBase + (start + i) * hd + j]; }
          }
        }
        workgroupBarrier();
      }
      for (var r = 0; r < 4; r++) {
        let j = lane + r * ${ATTENTION_LANES};
        if (valid && j < hd) { result[qAt + j] = acc[r] * uniforms.scale; }
      }
    }`,
  }, [q!, k!, v!, dOut!, stats!, pad!]);
}

/**
 * dk = scale·Σ_t dS·q_t (`part` 0) or dv = Σ_t P·dO_t (`part` 1) per key row (b, h, s): the
 * queries a tile of 64 at a time.
 */
function attentionDkv(
  [q, k, v, dOut, stats, pad]: tf.Tensor[],
  part: 0 | 1,
): tf.Tensor {
  const [batch, heads, keys] = k!.shape as [number, number, number, number];
  const rows = batch * heads * keys;
  return runFused({
    name: "attention_dkv",
    inputs: ["q", "k", "v", "dO", "stats", "pad"],
    outputShape: k!.shape,
    workgroupSize: ATTENTION_LANES,
    workgroups: rows,
    uniforms: { ...attentionUniforms(q as tf.Tensor4D, keys, rows), part: ["i32", part] },
    code: () =>
      `${ATTENTION_COMMON}
    fn main(index : i32) {
      let lane = i32(localId.x);
      let row = index / ${ATTENTION_LANES};
      let valid = row < uniforms.rows;
      let s = row % uniforms.keys;
      let bh = row / uniforms.keys;
      var first = 0;
      if (valid) { first = pad[bh / uniforms.heads]; }
      let hd = uniforms.hd;
      let kAt = row * hd;
      let qBase = bh * uniforms.time * hd;
      let statsBase = bh * uniforms.time;
      var acc = array<f32, 4>(0.0, 0.0, 0.0, 0.0);
      for (var start = 0; start < uniforms.time; start += ${ATTENTION_LANES}) {
        let t = start + lane;
        var w = 0.0;
        if (valid && t < uniforms.time) {
          let at = (statsBase + t) * 3;
          let p = exp((score(qBase + t * hd, kAt, s, t, first) - stats[at]) - stats[at + 1]);
          if (uniforms.part == 1) {
            w = p;
          } else {
            var dp = 0.0;
            for (var j = 0; j < hd; j++) { dp += dO[qBase + t * hd + j] * v[kAt + j]; }
            w = p * (dp - stats[at + 2]);
          }
        }
        tile[lane] = w;
        workgroupBarrier();
        let count = min(${ATTENTION_LANES}, uniforms.time - start);
        for (var r = 0; r < 4; r++) {
          let j = lane + r * ${ATTENTION_LANES};
          if (valid && j < hd) {
            for (var i = 0; i < count; i++) {
              let at = qBase + (start + i) * hd + j;
              acc[r] += tile[i] * select(q[at], dO[at], uniforms.part == 1);
            }
          }
        }
        workgroupBarrier();
      }
      let factor = select(uniforms.scale, 1.0, uniforms.part == 1);
      for (var r = 0; r < 4; r++) {
        let j = lane + r * ${ATTENTION_LANES};
        if (valid && j < hd) { result[kAt + j] = acc[r] * factor; }
      }
    }`,
  }, [q!, k!, v!, dOut!, stats!, pad!]);
}

/** The fused attention's five programs: a workgroup per row (a GPU's), or an invocation per row. */
const WORKGROUP_ATTENTION = {
  forward: attentionForward,
  stats: attentionStats,
  dq: attentionDq,
  dkv: attentionDkv,
};
const LANE_ATTENTION: typeof WORKGROUP_ATTENTION = {
  forward: laneAttentionForward,
  stats: laneAttentionStats,
  dq: laneAttentionDq,
  dkv: laneAttentionDkv,
};

/**
 * Causal softmax attention as one WGSL program forward (no [T, S] tensor) and four backward (each
 * row's log-sum and dO·O, then dq, dk and dv, the softmax recomputed in each): heads up to
 * {@linkcode FUSED_ATTENTION_MAX_HD} wide.
 */
function fusedAttention(
  q: tf.Tensor4D,
  k: tf.Tensor4D,
  v: tf.Tensor4D,
  padding: readonly number[] | null,
): tf.Tensor4D {
  const pad = paddingTensor(q.shape[0], padding);
  // on a CPU adapter, an invocation per row (attention_lanes.ts)
  const programs = cpuAdapterPrograms() && laneAttentionTakes(q.shape[3])
    ? LANE_ATTENTION
    : WORKGROUP_ATTENTION;
  const f = tf.customGrad(
    ((qt: tf.Tensor4D, kt: tf.Tensor4D, vt: tf.Tensor4D, save: tf.GradSaveFunc) => {
      const out = programs.forward(qt, kt, vt, pad);
      save([qt, kt, vt, out, pad]);
      return {
        value: out,
        gradFunc: (dOut: tf.Tensor, [qs, ks, vs, o, p]: tf.Tensor[]) => {
          const stats = programs.stats(qs as tf.Tensor4D, ks as tf.Tensor4D, o!, dOut, p!);
          const inputs = [qs!, ks!, vs!, dOut, stats, p!];
          const grads = [programs.dq(inputs, ks!.shape[2]!), programs.dkv(inputs, 0)];
          grads.push(programs.dkv(inputs, 1));
          stats.dispose();
          return grads;
        },
      };
    }) as unknown as Parameters<typeof tf.customGrad>[0],
  );
  return f(q, k, v) as tf.Tensor4D;
}

/**
 * Causal softmax attention: one program forward and four backward (`fusedAttention`) for heads up
 * to 256 wide; wider ones take q·kᵀ with the transpose flag, the fused masked softmax (one program
 * each way) and ·v: 3 dispatches forward. The plain ops take 6 forward and 14 backward.
 *
 * @example
 * ```ts
 * const out = webgpuAttention(q, k, v, [0, 2]); // [B, H, T, hd]
 * ```
 */
export function webgpuAttention(
  q: tf.Tensor4D,
  k: tf.Tensor4D,
  v: tf.Tensor4D,
  padding: readonly number[] | null,
): tf.Tensor4D {
  const hd = q.shape[3];
  if (hd <= FUSED_ATTENTION_MAX_HD) return fusedAttention(q, k, v, padding);
  const scores = tf.matMul(q, k, false, true) as tf.Tensor4D; // [B, H, T, S]
  return tf.matMul(maskedSoftmax(scores, padding, 1 / Math.sqrt(hd)), v); // [B, H, T, hd]
}

// Log-softmax at the targets ------------------------------------------------------------------

/** The WGSL computing a row's max m and log Σ exp(s − m) ℓ of s = x/τ (in `m`, `logSum`). */
const ROW_LOG_SUM = `
  let base = row * cols;
  var peak = -3.402823e+38;
  if (valid) { for (var c = lane; c < cols; c += width) { peak = max(peak, logits[base + c] / uniforms.temperature); } }
  let m = reduceMax(peak);
  var sum = 0.0;
  if (valid) { for (var c = lane; c < cols; c += width) { sum += exp(logits[base + c] / uniforms.temperature - m); } }
  let logSum = log(reduceSum(sum));`;

/**
 * log softmax(logits / τ) [B, C, V] at each row's target `targets` [B, C] (int32) → [B, C]: one
 * program forward, a workgroup per row, writing only the [B, C] values; one backward, writing
 * dy·(1[v = t] − p_v)/τ with the softmax recomputed from the logits.
 *
 * @example
 * ```ts
 * const logp = webgpuLogSoftmaxAt(logits, targets, { temperature: 0.7 }); // [B, C]
 * ```
 */
export function webgpuLogSoftmaxAt(
  logits: tf.Tensor3D,
  targets: tf.Tensor2D,
  options: { temperature?: number } = {},
): tf.Tensor2D {
  const [batch, count, vocab] = logits.shape;
  const rows = batch * count;
  if (rows * vocab > MAX_VALUES) return opsLogSoftmaxAt(logits, targets, options);
  const temperature = options.temperature ?? 1;
  const uniforms: Record<string, Uniform> = { temperature: ["f32", temperature] };
  const f = tf.customGrad(
    ((input: tf.Tensor3D, save: tf.GradSaveFunc) => {
      const x = tf.reshape(input, [rows, vocab]); // [N, V]
      const ids = tf.reshape(targets, [rows]); // [N]
      save([x, ids]);
      const value = runFused(
        rowProgram(
          "log_softmax_at",
          ["logits", "targets"],
          [rows],
          [rows, vocab],
          uniforms,
          `
          ${ROW_LOG_SUM}
          if (valid && lane == 0) {
            result[row] = (logits[base + targets[row]] / uniforms.temperature - m) - logSum;
          }`,
        ),
        [x, ids],
      ); // [N]
      return {
        value: tf.reshape(value, [batch, count]),
        gradFunc: (dy: tf.Tensor, [xs, at]: tf.Tensor[]) => {
          const grad = runFused(
            rowProgram(
              "log_softmax_at_backward",
              ["logits", "targets", "dy"],
              [rows, vocab],
              [rows, vocab],
              uniforms,
              `
              ${ROW_LOG_SUM}
              if (valid) {
                let g = dy[row];
                let wanted = targets[row];
                for (var c = lane; c < cols; c += width) {
                  let p = exp((logits[base + c] / uniforms.temperature - m) - logSum);
                  let away = p * -g;
                  result[base + c] = select(away, g + away, c == wanted) / uniforms.temperature;
                }
              }`,
            ),
            [xs!, at!, tf.reshape(dy, [rows])],
          );
          return tf.reshape(grad, logits.shape);
        },
      };
    }) as unknown as Parameters<typeof tf.customGrad>[0],
  );
  return f(logits) as tf.Tensor2D;
}

// Embedding ---------------------------------------------------------------------------------------

/**
 * Tables whose gradient is summed by the fused program below: `vocab · N` up to this (each of
 * the V·d invocations reads all N ids). Larger ones keep `gather`'s gradient.
 */
export const EMBED_GRADIENT_MAX_WORK = 2 ** 20;

/**
 * The embedding gradient: dE[v, c] = Σ_{n : ids[n] = v} dy[n, c] ([V, d]), one invocation per
 * entry summing the rows in their order (tfjs's `UnsortedSegmentSum` adds them atomically, in
 * any order).
 */
function embeddingGradient(dy: tf.Tensor, ids: tf.Tensor1D, vocab: number): tf.Tensor2D {
  const [rows = 0, width = 0] = dy.shape;
  const count = vocab * width;
  return runFused({
    name: "embedding_gradient",
    inputs: ["dy", "ids"],
    outputShape: [vocab, width],
    workgroupSize: ELEMENTWISE,
    workgroups: workgroupsFor(count, ELEMENTWISE),
    uniforms: { count: ["i32", count], rows: ["i32", rows], width: ["i32", width] },
    code: () => `
  fn main(index : i32) {
    if (index >= uniforms.count) { return; }
    let width = uniforms.width;
    let v = index / width;
    let c = index - v * width;
    var s = 0.0;
    for (var n = 0; n < uniforms.rows; n = n + 1) {
      if (i32(ids[n]) == v) { s = s + f32(dy[n * width + c]); }
    }
    result[index] = s;
  }`,
  }, [dy, ids]) as tf.Tensor2D;
}

/**
 * Embedding lookup on webgpu: `gather`'s one dispatch forward; backward, for tables up to
 * {@linkcode EMBED_GRADIENT_MAX_WORK}, one program instead of tfjs's six (two identity transposes,
 * two transposes, a fill and `UnsortedSegmentSum`). The ids carry no gradient.
 *
 * @example
 * ```ts
 * const x = tf.tidy(() => webgpuEmbed(table, ids, 15)); // [N, d]
 * ```
 */
export function webgpuEmbed(table: tf.Tensor, ids: tf.Tensor1D, vocab: number): tf.Tensor2D {
  if (vocab * ids.size > EMBED_GRADIENT_MAX_WORK || table.shape[0] !== vocab) {
    return gatherRows(table, ids);
  }
  const f = tf.customGrad(
    ((e: tf.Tensor, save: tf.GradSaveFunc) => {
      save([ids]);
      return {
        value: tf.gather(e, ids), // [N, d]
        gradFunc: (dy: tf.Tensor, [rows]: tf.Tensor[]) =>
          embeddingGradient(dy, rows as tf.Tensor1D, vocab),
      };
    }) as unknown as Parameters<typeof tf.customGrad>[0],
  );
  return f(table) as tf.Tensor2D;
}

/**
 * The backward pass's products: with the transpose flags where the tile program takes them (it
 * reads a transposed side as it lies), else each transposed side copied first, for tfjs's vec4
 * programs.
 */
function webgpuProduct(
  a: tf.Tensor,
  b: tf.Tensor,
  transposeA: boolean,
  transposeB: boolean,
): tf.Tensor {
  return tileProduct(a, b, transposeA, transposeB)
    ? tf.matMul(a, b, transposeA, transposeB)
    : transposedFirst(a, b, transposeA, transposeB);
}

// The set ---------------------------------------------------------------------------------------

/**
 * The webgpu kernel set (for the `webgpu` backend, once it is the active backend).
 *
 * @example
 * ```ts
 * const { kernels } = await useBackend("webgpu"); // webgpuKernels()
 * const y = tf.tidy(() => kernels.rmsNorm(x, w, 1e-5)); // [N, d]: one dispatch
 * ```
 */
export function webgpuKernels(): KernelSet {
  const kernels: KernelSet = {
    name: "webgpu",
    blas: false,
    updateOnDevice: true, // a read costs ≥ 10 ms: AdamW's checks stay on the device (optim.ts)
    layout: "[in, out]",
    linear,
    unembed: (x, table) => tf.matMul(x, table as tf.Tensor2D, false, true), // [N, V]
    product: webgpuProduct,
    embed: webgpuEmbed,
    rmsNorm: webgpuRmsNorm,
    ropeHeads: webgpuRopeHeads,
    attention: webgpuAttention,
    swiGlu: webgpuSwiGlu,
    logSoftmaxAt: webgpuLogSoftmaxAt,
    adamW: adamWOps,
    decoder: (params, config, rows, padding) =>
      Promise.resolve(tfjsDecoder(kernels, params, config, rows, padding)),
  };
  return kernels;
}
