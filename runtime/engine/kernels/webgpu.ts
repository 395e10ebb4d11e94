/**
 * The `webgpu` kernel set: the plain tfjs set (`tfjs.ts`) with the operations the model is written
 * in fused into WGSL programs (`webgpu_program.ts`), one dispatch each way where tfjs's ops took
 * 6 to 22:
 *
 * - RMSNorm: one program forward (a workgroup per row); backward, each row's 1/rms, then dx (a
 *   workgroup per row) and dw (a workgroup per column);
 * - RoPE fused with the split into heads: one program forward, one backward (the transposed
 *   rotation straight back to [B·T, H·hd]);
 * - SwiGLU's elementwise silu(g)·u: one program forward, one per gradient (dg, du); the three
 *   products stay matMuls;
 * - attention's masked, scaled softmax: one program forward (the causal and padding mask made in
 *   the shader: no mask tensor), one backward; q·kᵀ takes the transpose flag;
 * - the log-softmax at each row's target: one program forward (max, log Σ exp and the target's
 *   value, a workgroup per row; nothing of [N, V] is written), one backward (the softmax
 *   recomputed from the logits);
 * - products with transposed operands take tfjs-webgpu's transpose flags (its matmul programs read
 *   either layout) instead of a transpose first: the backward pass of every linear layer and the
 *   unembedding lose a dispatch per product.
 *
 * Why: on webgpu the host spends ~100 µs per kernel whatever it computes (TFJS_NOTES.md, "WebGPU
 * host costs"), and at the sizes trained here the kernels are small: the step is dispatch-bound.
 * AdamW stays the plain ops (`adamWOps`), as does the embedding.
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
} from "./tfjs.ts";
import { type FusedProgram, runFused, type Uniform, workgroupsFor } from "./webgpu_program.ts";

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
 */
function rowProgram(
  name: string,
  inputs: readonly string[],
  outputShape: readonly number[],
  [rows, cols]: [number, number],
  uniforms: Record<string, Uniform>,
  body: string,
  dtype: "float32" | "int32" = "float32",
): FusedProgram {
  const width = rowWorkgroup(cols);
  return {
    name,
    inputs,
    outputShape,
    dtype,
    workgroupSize: width,
    workgroups: rows,
    uniforms: { rows: ["i32", rows], cols: ["i32", cols], ...uniforms },
    code: `${reductions(width)}
    fn main(index : i32) {
      let width = ${width};
      let row = index / width;
      let lane = i32(localId.x);
      let cols = uniforms.cols;
      let valid = row < uniforms.rows;
      ${body}
    }`,
  };
}

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
    code: `${prelude}
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
  const width = rowWorkgroup(rows);
  return runFused({
    name: "rms_norm_dw",
    inputs: ["x", "dy", "inv"],
    outputShape: [d],
    workgroupSize: width,
    workgroups: d,
    uniforms: { rows: ["i32", rows], cols: ["i32", d] },
    code: `${reductions(width)}
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

/**
 * Causal softmax attention with the masked, scaled softmax fused (one program each way) and q·kᵀ
 * through the transpose flag: 3 dispatches forward, where the plain ops take 6.
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

// The set ---------------------------------------------------------------------------------------

/**
 * op(a)·op(b) with tfjs-webgpu's transpose flags: its matmul programs read either layout, so a
 * transposed operand costs no transpose kernel.
 */
function flaggedProduct(
  a: tf.Tensor,
  b: tf.Tensor,
  transposeA: boolean,
  transposeB: boolean,
): tf.Tensor {
  return tf.matMul(a, b, transposeA, transposeB);
}

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
    layout: "[in, out]",
    linear,
    unembed: (x, table) => tf.matMul(x, table as tf.Tensor2D, false, true), // [N, V]
    product: flaggedProduct,
    embed: (table, ids) => gatherRows(table, ids),
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
