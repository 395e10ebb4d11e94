/**
 * webgpu's `BatchMatMul` on a CPU adapter (lavapipe, SwiftShader): a row-block WGSL program in
 * place of tfjs's tiled one.
 *
 * Why: on lavapipe (Mesa's CPU Vulkan driver, "llvmpipe (LLVM 15.0.6, 256 bits)") 92% of a webgpu
 * train step's kernel time is tfjs-webgpu's `BatchMatMul`, whose `MatMulPackedProgram` stages tiles
 * in workgroup memory between barriers: on a GPU that saves memory traffic, on a CPU driver every
 * barrier is a thread synchronisation. Here each invocation computes R rows × 4 columns of the
 * output (R vec4 accumulators, one `fma` per k in order, no shared memory). Measured on lavapipe
 * (2 cores, median of 5), R = 16 against tfjs: [1280,128]·[128,352] 91 ms vs 303 ms, and 1.5–3×
 * on the model's other products ([128,1280]·[1280,352], [1280,352]·[352,128], [1280,128]·[128,128]),
 * with the same bits as tfjs's program on those shapes (both add the products over k in order
 * with `fma`); R = 32 is faster still. The bench's front-door train step (128 rows) takes 3.0 s
 * instead of 5.3 s. On a real GPU tfjs's tiled program is surely the better one, so the program runs
 * only where the adapter is a CPU one; GIFTWRAP_WEBGPU_MATMUL=rows|tfjs forces either.
 *
 * It takes float32 products, either transpose flag set or not, whose column count is a multiple of 4 and
 * whose batch dimensions are equal on both sides (or one side has a batch of 1); any other product
 * runs tfjs's kernel. Rows past a multiple of R read a clamped row and write nothing.
 *
 * @module
 */

import { tf } from "../tf.ts";
import { type FusedProgram, runFusedInfo, workgroupsFor } from "./webgpu_program.ts";

/** Invocations per workgroup (64 and 16 measured alike on lavapipe: 3,028 and 3,055 ms a step). */
const WORKGROUP = 64;

/**
 * Rows an invocation computes at most. The front-door step on lavapipe (median of 5): 8 rows
 * 3,628 ms, 16 rows 3,310, 32 rows 3,028, 64 rows 3,279 (tfjs's program: 5,340).
 */
const MAX_ROWS = 32;

/** Adapter descriptions of CPU drivers: Mesa's lavapipe (llvmpipe) and Google's SwiftShader. */
const CPU_ADAPTER = /llvmpipe|lavapipe|swiftshader/i;

/** What a WebGPU adapter says of itself (Deno's `GPUAdapter`, the fields read here). */
export interface AdapterFacts {
  /** `adapter.info`'s strings. */
  info?: { description?: string; device?: string; vendor?: string; architecture?: string };
  /** Whether the browser offers a software adapter (`adapter.isFallbackAdapter`). */
  isFallbackAdapter?: boolean;
}

/**
 * Whether an adapter runs on the CPU: a fallback adapter, or one whose info names lavapipe,
 * llvmpipe or SwiftShader.
 *
 * @example
 * ```ts
 * cpuAdapter({ info: { description: "llvmpipe (LLVM 15.0.6, 256 bits)" } }); // true
 * ```
 */
export function cpuAdapter(adapter: AdapterFacts): boolean {
  if (adapter.isFallbackAdapter) return true;
  const info = adapter.info ?? {};
  return [info.description, info.device, info.vendor, info.architecture]
    .some((s) => s !== undefined && CPU_ADAPTER.test(s));
}

/**
 * Whether the row-block products should run: GIFTWRAP_WEBGPU_MATMUL=rows or =tfjs decides, else
 * whether the adapter is a CPU one.
 *
 * @example
 * ```ts
 * if (rowBlockWanted(cpuAdapter(adapter))) installRowBlockMatMul();
 * ```
 */
export function rowBlockWanted(onCpu: boolean): boolean {
  const variable = "GIFTWRAP_WEBGPU_MATMUL";
  const env = Deno.permissions.querySync({ name: "env", variable });
  const value = env.state === "granted" ? Deno.env.get(variable) : undefined;
  if (value === "rows") return true;
  if (value === "tfjs") return false;
  return onCpu;
}

type KernelFunc = tf.KernelConfig["kernelFunc"];

/** tfjs's own `BatchMatMul` for webgpu, kept while ours is registered. */
let original: tf.KernelConfig | null = null;

/**
 * Registers the row-block `BatchMatMul` on webgpu, tfjs's kernel kept for the products it does not
 * take. Does nothing when installed already.
 *
 * @example
 * ```ts
 * installRowBlockMatMul();
 * const c = tf.matMul(a, b); // the row-block program when a, b are float32 and c has 4k columns
 * ```
 */
export function installRowBlockMatMul(): void {
  if (original) return;
  const kernel = tf.getKernel(tf.BatchMatMul, "webgpu");
  if (!kernel) return;
  original = kernel;
  const fallback = kernel.kernelFunc;
  tf.unregisterKernel(tf.BatchMatMul, "webgpu");
  tf.registerKernel({ ...kernel, kernelFunc: rowBlockKernel(fallback) });
}

/**
 * Registers tfjs's own `BatchMatMul` on webgpu again. Does nothing when ours is not installed.
 *
 * @example
 * ```ts
 * uninstallRowBlockMatMul(); // tfjs's tiled program for every product
 * ```
 */
export function uninstallRowBlockMatMul(): void {
  if (!original) return;
  tf.unregisterKernel(tf.BatchMatMul, "webgpu");
  tf.registerKernel(original);
  original = null;
}

/** Whether the row-block `BatchMatMul` is registered. */
export function rowBlockInstalled(): boolean {
  return original !== null;
}

function rowBlockKernel(fallback: KernelFunc): KernelFunc {
  return (args) => {
    const { a, b } = args.inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
    const { transposeA, transposeB } = args.attrs as { transposeA?: boolean; transposeB?: boolean };
    const plan = rowBlockPlan(a, b, transposeA ?? false, transposeB ?? false);
    return plan ? runFusedInfo(plan, [a, b]) : fallback(args);
  };
}

/** The program for `a · b`, or null when tfjs's kernel should run it. */
function rowBlockPlan(
  a: tf.TensorInfo,
  b: tf.TensorInfo,
  transposeA: boolean,
  transposeB: boolean,
): FusedProgram | null {
  if (a.dtype !== "float32" || b.dtype !== "float32") return null;
  if (a.shape.length < 2 || b.shape.length < 2) return null;
  const [a0, a1] = a.shape.slice(-2) as [number, number];
  const [b0, b1] = b.shape.slice(-2) as [number, number];
  const [m, k] = transposeA ? [a1, a0] : [a0, a1];
  const [kb, n] = transposeB ? [b1, b0] : [b0, b1];
  if (k !== kb || n % 4 !== 0 || m === 0 || n === 0 || k === 0) return null;
  const outerA = a.shape.slice(0, -2);
  const outerB = b.shape.slice(0, -2);
  const batchA = outerA.reduce((x, y) => x * y, 1);
  const batchB = outerB.reduce((x, y) => x * y, 1);
  const same = outerA.length === outerB.length && outerA.every((d, i) => d === outerB[i]);
  // a batch of 1 on one side is read again for each of the other's (tfjs broadcasts it so)
  const aOnce = batchA === 1 && outerA.length <= outerB.length;
  const bOnce = batchB === 1 && outerB.length <= outerA.length;
  if (!same && !aOnce && !bOnce) return null;
  const outer = same || bOnce ? outerA : outerB;
  const batch = Math.max(batchA, batchB);
  const rows = rowsPer(m);
  const blocks = batch * Math.ceil(m / rows) * (n / 4);
  return {
    name: `matmul_rows${rows}${transposeA ? "_ta" : ""}${transposeB ? "_tb" : ""}`,
    inputs: ["A", "B"],
    outputShape: [...outer, m, n],
    workgroupSize: WORKGROUP,
    workgroups: workgroupsFor(blocks, WORKGROUP),
    uniforms: {
      m: ["i32", m],
      k: ["i32", k],
      n: ["i32", n],
      blocks: ["i32", blocks],
      strideA: ["i32", batchA === 1 ? 0 : m * k],
      strideB: ["i32", batchB === 1 ? 0 : k * n],
    },
    code: () => rowBlockCode(rows, transposeA, transposeB),
  };
}

/** Rows an invocation computes: `MAX_ROWS`, or the power of two covering a smaller `m` (less waste). */
function rowsPer(m: number): number {
  let rows = 1;
  while (rows < m && rows < MAX_ROWS) rows *= 2;
  return rows;
}

/**
 * An invocation's block: batch `bi`, rows r0 … r0 + R − 1, columns c0 … c0 + 3. Row i's sum is
 * `fma(a[i][k], b[k][c], acc)` over k = 0, 1, …, as tfjs's program adds them.
 */
function rowBlockCode(rows: number, transposeA: boolean, transposeB: boolean): string {
  const rs = Array.from({ length: rows }, (_, r) => r);
  // a[i][k] is A[ar_i + k] (or A[ar_i + k·m] transposed); b[k][c0 + j] is B[bo + j] (or B[bo + j·k])
  const aAt = (r: number) => transposeA ? `A[ar${r} + k * m]` : `A[ar${r} + k]`;
  const bRow = transposeB ? "bBase + k" : "bBase + k * n";
  const bAt = (j: number) => transposeB ? `B[bo + ${j} * kk]` : `B[bo + ${j}]`;
  return `
    fn main(index : i32) {
      if (index >= uniforms.blocks) { return; }
      let m = uniforms.m; let kk = uniforms.k; let n = uniforms.n;
      let c4 = n / 4;
      let perBatch = ((m + ${rows - 1}) / ${rows}) * c4;
      let bi = index / perBatch;
      let within = index % perBatch;
      let r0 = (within / c4) * ${rows};
      let c0 = (within % c4) * 4;
      let aBase = bi * uniforms.strideA;
      let bBase = bi * uniforms.strideB + c0${transposeB ? " * kk" : ""};
      let oBase = bi * m * n + c0;
      ${rs.map((r) => `var acc${r} = vec4<f32>(0.0);`).join("\n      ")}
      ${
    rs.map((r) => `let ar${r} = aBase + min(r0 + ${r}, m - 1)${transposeA ? "" : " * kk"};`)
      .join("\n      ")
  }
      for (var k = 0; k < kk; k++) {
        let bo = ${bRow};
        let bk = vec4<f32>(${bAt(0)}, ${bAt(1)}, ${bAt(2)}, ${bAt(3)});
        ${rs.map((r) => `acc${r} = fma(vec4<f32>(${aAt(r)}), bk, acc${r});`).join("\n        ")}
      }
      ${
    rs.map((r) =>
      `if (r0 + ${r} < m) { let o = oBase + (r0 + ${r}) * n; ` +
      `result[o] = acc${r}.x; result[o + 1] = acc${r}.y; ` +
      `result[o + 2] = acc${r}.z; result[o + 3] = acc${r}.w; }`
    ).join("\n      ")
  }
    }`;
}
