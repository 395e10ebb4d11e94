/**
 * The webgpu kernel set's fused attention for a CPU adapter (lavapipe, SwiftShader): one
 * invocation per row, no workgroup memory, no barriers. The same five programs as `webgpu.ts`'s
 * (forward; then per query row its max, log-sum and dO·O; dq; dk; dv), the same masks and the same
 * softmax recomputed in each, with each row's work in one invocation instead of a workgroup of 64.
 *
 * Why: `webgpu.ts`'s programs give a query row a workgroup of 64 lanes, one per key of a tile,
 * combined through workgroup memory between barriers. On a GPU that keeps every lane busy. On a
 * CPU driver a workgroup's lanes run 8 at a time in SIMD and every barrier is a switch between
 * them; with the front door's 11 keys 53 of the 64 lanes idle. Measured on lavapipe (2 cores, AMD
 * EPYC), the front door's train step spent 254 of its 498 ms of kernel time in those five programs,
 * and 22 ms in these (`bench/webgpu_programs.ts`).
 *
 * Each invocation keeps its row's vectors (q, or k and v, and its accumulators) in vec4 registers,
 * unrolled over the head's width (`hd / 4` of them, fixed per program), and reads the other side's
 * rows one key (or query) at a time as vec4s: on lavapipe each load is a loop over the SIMD lanes,
 * so the fewer and wider the loads, the faster. Heads must be a multiple of 4 wide.
 *
 * Float32 throughout; dot products add their vec4s' `dot`s in order, so the sums are those of the
 * plain ops to float32 rounding, not bit for bit (tests/runtime/engine/kernels/webgpu_test.ts
 * checks both sets of programs against the plain ops).
 *
 * @module
 */

import { tf } from "../tf.ts";
import { type FusedProgram, runFused, type Uniform, workgroupsFor } from "./webgpu_program.ts";

/** Invocations per workgroup: rows are independent, so any size; 16 keeps 2 cores' queues full. */
const LANES = 16;

/** Whether these programs take heads `hd` wide (vec4 loads along the head). */
export function laneAttentionTakes(hd: number): boolean {
  return hd % 4 === 0;
}

/** `[0, 1, …, count − 1]`. */
function range(count: number): number[] {
  return Array.from({ length: count }, (_, i) => i);
}

/**
 * The uniforms of the fused attention's programs (these and `webgpu.ts`'s) for q [B, H, T, hd]
 * over S keys and `rows` rows.
 */
export function attentionUniforms(
  q: tf.Tensor,
  keys: number,
  rows: number,
): Record<string, Uniform> {
  const [, heads, time, hd] = q.shape as [number, number, number, number];
  return {
    rows: ["i32", rows],
    heads: ["i32", heads],
    time: ["i32", time],
    keys: ["i32", keys],
    hd: ["i32", hd],
    scale: ["f32", 1 / Math.sqrt(hd)],
  };
}

/** What differs between the programs here; `perRow` adds the rest. */
type RowProgram = Pick<FusedProgram, "name" | "inputs" | "outputShape" | "components" | "code">;

/** `program` run an invocation per row, `rows` rows, with the attention's uniforms. */
function perRow(q: tf.Tensor, keys: number, rows: number, program: RowProgram): FusedProgram {
  return {
    ...program,
    workgroupSize: LANES,
    workgroups: workgroupsFor(rows, LANES),
    uniforms: attentionUniforms(q, keys, rows),
  };
}

/** WGSL: whether key s is hidden from query t (after it, or in its row's left padding). */
const MASKED = `
  fn masked(s : i32, t : i32, first : i32) -> bool {
    return s > uniforms.keys - uniforms.time + t || s < first;
  }`;

/**
 * WGSL: `masked`, and `score<h4>(q0, …, kAt, s, t, first)`, the masked and scaled score of query
 * row vectors q0 … q{h4−1} against the key at vec4 offset `kAt`.
 */
function scoreWgsl(h4: number): string {
  const qs = range(h4).map((j) => `q${j}`);
  return `${MASKED}
  fn score${h4}(${qs.map((q) => `${q} : vec4<f32>`).join(", ")}, kAt : i32,
      s : i32, t : i32, first : i32) -> f32 {
    let dots = ${qs.map((q, j) => `dot(${q}, k[kAt + ${j}])`).join(" + ")};
    return dots * uniforms.scale + select(0.0, -1e9, masked(s, t, first));
  }`;
}

/**
 * WGSL heading a program run per query row: `row`, `t`, `bh`, `first`, and the keys it reads,
 * `lo` … `hi` − 1: those it sees (`first` … S − T + t) when it sees one, else all of them. A hidden
 * key's weight exp(score − m) is exactly 0 beside a seen one (its score is −1e9 off), so leaving
 * it out changes no sum; a row that sees none gives its hidden keys equal weight, as the
 * workgroup programs and the plain ops do.
 */
const QUERY_ROW = `
  if (index >= uniforms.rows) { return; }
  let row = index;
  let t = row % uniforms.time;
  let bh = row / uniforms.time;
  let first = pad[bh / uniforms.heads];
  let last = uniforms.keys - uniforms.time + t;
  let sees = first <= last;
  let lo = select(0, first, sees);
  let hi = select(uniforms.keys, last + 1, sees);`;

/** `let <name><j> = <array>[<at> + j];` for j < h4. */
function loadRow(h4: number, name: string, array: string, at: string): string {
  return range(h4).map((j) => `let ${name}${j} = ${array}[${at} + ${j}];`).join("\n  ");
}

/** The vec4 components of inputs q, k, v, dO, and of stats and pad (scalars). */
const VEC4_INPUTS = [4, 4, 4, 4, 1, 1];

/**
 * softmax(q·kᵀ·scale + mask)·v, an invocation per query row: the keys in order, the softmax
 * online (running max and sum, the output rescaled as the max grows).
 */
export function laneAttentionForward(
  q: tf.Tensor4D,
  k: tf.Tensor4D,
  v: tf.Tensor4D,
  pad: tf.Tensor,
): tf.Tensor4D {
  const [batch, heads, time, hd] = q.shape;
  const rows = batch * heads * time;
  const h4 = hd / 4;
  const js = range(h4);
  return runFused(
    perRow(q, k.shape[2], rows, {
      name: `attention_lanes_${h4}`,
      inputs: ["q", "k", "v", "pad"],
      outputShape: q.shape,
      components: { inputs: [4, 4, 4, 1], output: 4 },
      code: () =>
        `${scoreWgsl(h4)}
    fn main(index : i32) {
      ${QUERY_ROW}
      let kBase = bh * uniforms.keys * ${h4};
      ${loadRow(h4, "q", "q", `row * ${h4}`)}
      ${js.map((j) => `var acc${j} = vec4<f32>(0.0);`).join("\n      ")}
      var m = -3.402823e+38;
      var sum = 0.0;
      for (var s = lo; s < hi; s++) {
        let kAt = kBase + s * ${h4};
        let x = score${h4}(${js.map((j) => `q${j}`).join(", ")}, kAt, s, t, first);
        let next = max(m, x);
        let rescale = exp(m - next);
        let p = exp(x - next);
        sum = sum * rescale + p;
        ${js.map((j) => `acc${j} = acc${j} * rescale + p * v[kAt + ${j}];`).join("\n        ")}
        m = next;
      }
      ${js.map((j) => `result[row * ${h4} + ${j}] = acc${j} / sum;`).join("\n      ")}
    }`,
    }),
    [q, k, v, pad],
  ) as tf.Tensor4D;
}

/**
 * Per query row, the max m of its scores, ℓ = log Σ exp(score − m) and D = dO·O: [B·H·T, 3]. The
 * sum is online, as the forward's. m and ℓ stay apart (see `webgpu.ts`'s `attentionStats`).
 */
export function laneAttentionStats(
  q: tf.Tensor4D,
  k: tf.Tensor4D,
  out: tf.Tensor,
  dOut: tf.Tensor,
  pad: tf.Tensor,
): tf.Tensor {
  const [batch, heads, time, hd] = q.shape;
  const rows = batch * heads * time;
  const h4 = hd / 4;
  const js = range(h4);
  return runFused(
    perRow(q, k.shape[2], rows, {
      name: `attention_lanes_stats_${h4}`,
      inputs: ["q", "k", "o", "dO", "pad"],
      outputShape: [rows, 3],
      components: { inputs: [4, 4, 4, 4, 1], output: 1 },
      code: () =>
        `${scoreWgsl(h4)}
    fn main(index : i32) {
      ${QUERY_ROW}
      let kBase = bh * uniforms.keys * ${h4};
      ${loadRow(h4, "q", "q", `row * ${h4}`)}
      var m = -3.402823e+38;
      var sum = 0.0;
      for (var s = lo; s < hi; s++) {
        let x = score${h4}(${js.map((j) => `q${j}`).join(", ")}, kBase + s * ${h4}, s, t, first);
        let next = max(m, x);
        sum = sum * exp(m - next) + exp(x - next);
        m = next;
      }
      let d = ${js.map((j) => `dot(dO[row * ${h4} + ${j}], o[row * ${h4} + ${j}])`).join(" + ")};
      result[row * 3] = m;
      result[row * 3 + 1] = log(sum);
      result[row * 3 + 2] = d;
    }`,
    }),
    [q, k, out, dOut, pad],
  );
}

/** dq = scale·Σ_s dS·k_s per query row, dS = P·(dP − D), P = exp((score − m) − ℓ), dP = dO·v_s. */
export function laneAttentionDq(
  [q, k, v, dOut, stats, pad]: tf.Tensor[],
  keys: number,
): tf.Tensor {
  const [batch, heads, time, hd] = q!.shape as [number, number, number, number];
  const rows = batch * heads * time;
  const h4 = hd / 4;
  const js = range(h4);
  return runFused(
    perRow(q!, keys, rows, {
      name: `attention_lanes_dq_${h4}`,
      inputs: ["q", "k", "v", "dO", "stats", "pad"],
      outputShape: q!.shape,
      components: { inputs: VEC4_INPUTS, output: 4 },
      code: () =>
        `${scoreWgsl(h4)}
    fn main(index : i32) {
      ${QUERY_ROW}
      let kBase = bh * uniforms.keys * ${h4};
      ${loadRow(h4, "q", "q", `row * ${h4}`)}
      ${loadRow(h4, "g", "dO", `row * ${h4}`)}
      let m = stats[row * 3];
      let logSum = stats[row * 3 + 1];
      let d = stats[row * 3 + 2];
      ${js.map((j) => `var acc${j} = vec4<f32>(0.0);`).join("\n      ")}
      for (var s = lo; s < hi; s++) {
        let kAt = kBase + s * ${h4};
        let p = exp((score${h4}(${
          js.map((j) => `q${j}`).join(", ")
        }, kAt, s, t, first) - m) - logSum);
        let dp = ${js.map((j) => `dot(g${j}, v[kAt + ${j}])`).join(" + ")};
        let ds = p * (dp - d);
        ${js.map((j) => `acc${j} += ds * k[kAt + ${j}];`).join("\n        ")}
      }
      ${js.map((j) => `result[row * ${h4} + ${j}] = acc${j} * uniforms.scale;`).join("\n      ")}
    }`,
    }),
    [q!, k!, v!, dOut!, stats!, pad!],
  );
}

/**
 * dk = scale·Σ_t dS·q_t (`part` 0) or dv = Σ_t P·dO_t (`part` 1) per key row (b, h, s), the queries
 * in order.
 */
export function laneAttentionDkv(
  [q, k, v, dOut, stats, pad]: tf.Tensor[],
  part: 0 | 1,
): tf.Tensor {
  const [batch, heads, keys, hd] = k!.shape as [number, number, number, number];
  const rows = batch * heads * keys;
  const h4 = hd / 4;
  const js = range(h4);
  const dots = js.map((j) => `dot(q[qAt + ${j}], k${j})`).join(" + ");
  return runFused(
    perRow(q!, keys, rows, {
      name: `attention_lanes_d${part === 0 ? "k" : "v"}_${h4}`,
      // dv's program reads no v: a binding the shader does not read is not in its layout
      inputs: part === 0 ? ["q", "k", "v", "dO", "stats", "pad"] : ["q", "k", "dO", "stats", "pad"],
      outputShape: k!.shape,
      components: { inputs: part === 0 ? VEC4_INPUTS : [4, 4, 4, 1, 1], output: 4 },
      code: () =>
        `${MASKED}
    fn main(index : i32) {
      if (index >= uniforms.rows) { return; }
      let row = index;
      let s = row % uniforms.keys;
      let bh = row / uniforms.keys;
      let first = pad[bh / uniforms.heads];
      let qBase = bh * uniforms.time * ${h4};
      ${loadRow(h4, "k", "k", `row * ${h4}`)}
      ${part === 0 ? loadRow(h4, "v", "v", `row * ${h4}`) : ""}
      ${js.map((j) => `var acc${j} = vec4<f32>(0.0);`).join("\n      ")}
      // the queries that see key s (t ≥ s − (S − T), when s is past the padding), after those
      // that see no key at all (t < first − (S − T)), which weigh every key: see QUERY_ROW
      let blind = max(first - (uniforms.keys - uniforms.time), 0);
      let seeing = select(uniforms.time, max(s - (uniforms.keys - uniforms.time), blind), s >= first);
      var t = 0;
      loop {
        if (t >= blind && t < seeing) { t = seeing; }
        if (t >= uniforms.time) { break; }
        let qAt = qBase + t * ${h4};
        let at = (bh * uniforms.time + t) * 3;
        let x = (${dots}) * uniforms.scale + select(0.0, -1e9, masked(s, t, first));
        let p = exp((x - stats[at]) - stats[at + 1]);
        ${
          part === 0
            ? `let dp = ${js.map((j) => `dot(dO[qAt + ${j}], v${j})`).join(" + ")};
        let w = p * (dp - stats[at + 2]);
        ${js.map((j) => `acc${j} += w * q[qAt + ${j}];`).join("\n        ")}`
            : js.map((j) => `acc${j} += p * dO[qAt + ${j}];`).join("\n        ")
        }
        continuing { t = t + 1; }
      }
      ${
          js.map((j) =>
            `result[row * ${h4} + ${j}] = acc${j}${part === 0 ? " * uniforms.scale" : ""};`
          )
            .join("\n      ")
        }
    }`,
    }),
    part === 0 ? [q!, k!, v!, dOut!, stats!, pad!] : [q!, k!, dOut!, stats!, pad!],
  );
}
