/**
 * webgpu's `BatchMatMul` on a CPU adapter (lavapipe, SwiftShader): block WGSL programs in place of
 * tfjs's tiled one.
 *
 * Why: on lavapipe (Mesa's CPU Vulkan driver, "llvmpipe (LLVM 15.0.6, 256 bits)") 92% of a webgpu
 * train step's kernel time was tfjs-webgpu's `BatchMatMul`, whose `MatMulPackedProgram` stages tiles
 * in workgroup memory between barriers: on a GPU that saves memory traffic, on a CPU driver every
 * barrier is a thread synchronisation. Lavapipe runs a workgroup's invocations 8 at a time in SIMD
 * lanes, and each load from a storage buffer is a loop over those lanes, a scalar load each: what
 * costs is the number of loads, not the FMAs. So each invocation computes a block of the output
 * from registers, with no shared memory and as few, as wide loads as the block allows:
 *
 * - the tile program (k and n multiples of 4, and m where A is transposed): 16 rows × 16 columns,
 *   64 vec4 accumulators, reading vec4s along k or along n (whichever way a side lies, so either
 *   transpose flag costs nothing). Measured on lavapipe (AMD EPYC, 2 cores, median of 3) on the
 *   front door's six training products: 22–28 GFLOP/s, against 7–11 for the row-block program
 *   below, 2–3.8× faster; the front-door train step 521 ms instead of 988.
 * - the row-block program (the rest with n a multiple of 4): R rows × 4 columns, R vec4
 *   accumulators, scalar loads. Against tfjs's program (Intel Xeon, 2 cores): [1280,128]·[128,352]
 *   91 ms vs 303 ms, and 1.5–3× on the model's other products.
 *
 * Both add the products over k in order with `fma`, one accumulator per output, as tfjs's program
 * does on these shapes: the same bits (tests/runtime/engine/kernels/matmul_webgpu_test.ts). On a
 * real GPU tfjs's tiled program is surely the better one, so these run only where the adapter is a
 * CPU one; GIFTWRAP_WEBGPU_MATMUL=rows|tfjs forces either way.
 *
 * They take float32 products whose batch dimensions are equal on both sides (or one side has a
 * batch of 1); any other product, or one whose column count is not a multiple of 4, runs tfjs's
 * kernel. Rows and columns past a multiple of the block read clamped ones and write nothing.
 *
 * @module
 */

import { tf } from "../tf.ts";
import { type FusedProgram, runFusedInfo, workgroupsFor } from "./webgpu_program.ts";

/** Invocations per workgroup (64 and 16 measured alike on lavapipe: 3,028 and 3,055 ms a step). */
const WORKGROUP = 64;

/**
 * The tile program's rows, column quads (vec4s) and workgroup. Measured on lavapipe (2 cores,
 * AMD EPYC; microbench of the front door's six training products, [1280,128]·[128,352] …
 * [352,1280]·[1280,128]): 16 rows × 16 columns ran at 22–28 GFLOP/s in workgroups of 8 or 16,
 * where the row-block program ran at 7–11; 8 × 8 at 15–21, 32 × 16 and 16 × 32 at 17–25.
 */
const TILE_ROWS = 16;
const TILE_QUADS = 4;
const TILE_WORKGROUP = 16;

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

/**
 * Whether `tf.matMul(a, b, transposeA, transposeB)` runs the tile program, reading a transposed
 * side as it lies: the programs are registered and the product is one the tile program takes.
 * Where it does, a transposed copy first is a dispatch and a pass over memory for nothing (the
 * sums are the same, in the same order).
 *
 * @example
 * ```ts
 * const dw = tileProduct(x, dy, true, false) ? tf.matMul(x, dy, true, false) : …;
 * ```
 */
export function tileProduct(
  a: tf.TensorInfo,
  b: tf.TensorInfo,
  transposeA: boolean,
  transposeB: boolean,
): boolean {
  if (!rowBlockInstalled()) return false;
  const shape = productShape(a, b, transposeA, transposeB);
  return shape !== null && tileTakes(shape.m, shape.k, shape.n, transposeA);
}

function rowBlockKernel(fallback: KernelFunc): KernelFunc {
  return (args) => {
    const { a, b } = args.inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
    const { transposeA, transposeB } = args.attrs as { transposeA?: boolean; transposeB?: boolean };
    const plan = cachedPlan(a, b, transposeA ?? false, transposeB ?? false);
    return plan ? runFusedInfo(plan, [a, b]) : fallback(args);
  };
}

/** A product's sizes and batches, as the programs here read them. */
interface ProductShape {
  m: number;
  k: number;
  n: number;
  batchA: number;
  batchB: number;
  /** The output's batch dimensions. */
  outer: number[];
}

/**
 * The sizes of `a · b` (either side transposed), or null when the programs here do not take it:
 * not float32, fewer than 2 dimensions, sizes that do not match or are 0, n not a multiple of 4,
 * or batch dimensions neither equal nor 1 on one side.
 */
function productShape(
  a: tf.TensorInfo,
  b: tf.TensorInfo,
  transposeA: boolean,
  transposeB: boolean,
): ProductShape | null {
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
  return { m, k, n, batchA, batchB, outer: same || bOnce ? outerA : outerB };
}

/**
 * The plans made, by the products' shapes, dtypes and flags, at most {@linkcode MAX_PLANS} (then
 * forgotten all at once). A train step runs the same products at every step, and making a plan
 * (its sizes, names and uniforms) took about 2 KB and 2 µs a product; a plan found here is also
 * run as the same object (`reused`), so that `runFusedInfo` builds what tfjs reads of it once.
 */
const PLANS = new Map<string, FusedProgram | null>();
const MAX_PLANS = 1024;

function cachedPlan(
  a: tf.TensorInfo,
  b: tf.TensorInfo,
  transposeA: boolean,
  transposeB: boolean,
): FusedProgram | null {
  const key = `${a.dtype} ${a.shape} ${b.dtype} ${b.shape} ${transposeA} ${transposeB}`;
  let plan = PLANS.get(key);
  if (plan === undefined) {
    if (PLANS.size >= MAX_PLANS) PLANS.clear();
    plan = rowBlockPlan(a, b, transposeA, transposeB);
    if (plan) plan.reused = true;
    PLANS.set(key, plan);
  }
  return plan;
}

/** The program for `a · b`, or null when tfjs's kernel should run it. */
function rowBlockPlan(
  a: tf.TensorInfo,
  b: tf.TensorInfo,
  transposeA: boolean,
  transposeB: boolean,
): FusedProgram | null {
  const shape = productShape(a, b, transposeA, transposeB);
  if (!shape) return null;
  const { m, k, n, batchA, batchB, outer } = shape;
  const batch = Math.max(batchA, batchB);
  const tile = tileTakes(m, k, n, transposeA);
  // the tile's rows (at least 4 where A is read by row quads) or the row blocks'
  const rows = tile ? Math.max(rowsPer(m, TILE_ROWS), transposeA ? 4 : 1) : rowsPer(m, MAX_ROWS);
  const blocks = batch * Math.ceil(m / rows) *
    (tile ? Math.ceil(n / 4 / TILE_QUADS) : n / 4);
  const workgroupSize = tile ? TILE_WORKGROUP : WORKGROUP;
  const flags = `${transposeA ? "_ta" : ""}${transposeB ? "_tb" : ""}`;
  return {
    name: `matmul_${tile ? "tile" : "rows"}${rows}${flags}`,
    inputs: ["A", "B"],
    outputShape: [...outer, m, n],
    workgroupSize,
    workgroups: workgroupsFor(blocks, workgroupSize),
    uniforms: {
      m: ["i32", m],
      k: ["i32", k],
      n: ["i32", n],
      blocks: ["i32", blocks],
      strideA: ["i32", batchA === 1 ? 0 : m * k],
      strideB: ["i32", batchB === 1 ? 0 : k * n],
    },
    ...(tile ? { components: { inputs: [4, 4], output: 4 } } : {}),
    code: tile
      ? () => tileCode(rows, transposeA, transposeB)
      : () => rowBlockCode(rows, transposeA, transposeB),
  };
}

/**
 * Whether the tile program takes an m × k · k × n product: k and n multiples of 4 (its loads are
 * vec4s along k or n), and m too where A is transposed (its loads run along A's rows then).
 */
function tileTakes(m: number, k: number, n: number, transposeA: boolean): boolean {
  return k % 4 === 0 && n % 4 === 0 && (!transposeA || m % 4 === 0);
}

/** Rows an invocation computes: `most`, or the power of two covering a smaller `m` (less waste). */
function rowsPer(m: number, most: number): number {
  let rows = 1;
  while (rows < m && rows < most) rows *= 2;
  return rows;
}

/**
 * The tile program's block: batch `bi`, rows r0 … r0 + R − 1, columns 4·q0 … 4·q0 + 15 (four
 * vec4 column quads). Each step of its loop reads 4 values of k: per row a vec4 of A along k (or,
 * transposed, per k a vec4 of 4 rows), per k and quad a vec4 of B along n (or, transposed, per
 * column a vec4 along k), then adds them into R × 4 vec4 accumulators, each as
 * `fma(a[i][k], b[k][c], acc)` over k = 0, 1, … in order: the row-block program's sums, and
 * tfjs's. Rows and quads past the edge read clamped ones and write nothing.
 */
function tileCode(rows: number, transposeA: boolean, transposeB: boolean): string {
  const rs = Array.from({ length: rows }, (_, r) => r);
  const qs = Array.from({ length: TILE_QUADS }, (_, q) => q);
  const ds = [0, 1, 2, 3];
  const lane = "xyzw";
  const lines: string[] = [];
  const add = (line: string) => lines.push(line);
  add(`fn main(index : i32) {
      if (index >= uniforms.blocks) { return; }
      let m = uniforms.m; let k4 = uniforms.k / 4; let n4 = uniforms.n / 4;
      let quadBlocks = (n4 + ${TILE_QUADS - 1}) / ${TILE_QUADS};
      let perBatch = ((m + ${rows - 1}) / ${rows}) * quadBlocks;
      let bi = index / perBatch;
      let within = index % perBatch;
      let r0 = (within / quadBlocks) * ${rows};
      let q0 = (within % quadBlocks) * ${TILE_QUADS};
      let aBase = bi * (uniforms.strideA / 4);
      let bBase = bi * (uniforms.strideB / 4);`);
  if (transposeA) {
    // A is [k, m]: row quad g of the block is vec4 (r0 + 4g) / 4 of each of A's rows
    add(`let m4 = m / 4;`);
    for (let g = 0; g < rows / 4; g++) add(`let ag${g} = aBase + min(r0 / 4 + ${g}, m4 - 1);`);
  } else {
    for (const r of rs) add(`let ar${r} = aBase + min(r0 + ${r}, m - 1) * k4;`);
  }
  if (transposeB) {
    // B is [n, k]: column 4·q + j is row 4·q + j of B, read along k
    for (const q of qs) {
      for (const j of ds) {
        add(`let bc${q}_${j} = bBase + min(4 * (q0 + ${q}) + ${j}, 4 * n4 - 1) * k4;`);
      }
    }
  } else {
    for (const q of qs) add(`let bq${q} = bBase + min(q0 + ${q}, n4 - 1);`);
  }
  for (const r of rs) for (const q of qs) add(`var acc${r}_${q} = vec4<f32>(0.0);`);
  add(`for (var k = 0; k < k4; k++) {`);
  // b${d}_${q}: B[4k + d][4(q0 + q) … + 3]
  if (transposeB) {
    for (const q of qs) for (const j of ds) add(`let bt${q}_${j} = B[bc${q}_${j} + k];`);
    for (const d of ds) {
      for (const q of qs) {
        add(`let b${d}_${q} = vec4<f32>(${ds.map((j) => `bt${q}_${j}.${lane[d]}`).join(", ")});`);
      }
    }
  } else {
    for (const d of ds) {
      for (const q of qs) add(`let b${d}_${q} = B[bq${q} + (4 * k + ${d}) * n4];`);
    }
  }
  // a(r, d): A[r0 + r][4k + d]
  const aAt = (r: number, d: number) =>
    transposeA ? `at${d}_${r >> 2}.${lane[r & 3]}` : `a${r}.${lane[d]}`;
  if (transposeA) {
    for (const d of ds) {
      for (let g = 0; g < rows / 4; g++) add(`let at${d}_${g} = A[ag${g} + (4 * k + ${d}) * m4];`);
    }
  } else {
    for (const r of rs) add(`let a${r} = A[ar${r} + k];`);
  }
  for (const r of rs) {
    for (const q of qs) {
      for (const d of ds) {
        add(`acc${r}_${q} = fma(vec4<f32>(${aAt(r, d)}), b${d}_${q}, acc${r}_${q});`);
      }
    }
  }
  add(`}`);
  for (const r of rs) {
    for (const q of qs) {
      add(
        `if (r0 + ${r} < m && q0 + ${q} < n4) { ` +
          `result[(bi * m + r0 + ${r}) * n4 + q0 + ${q}] = acc${r}_${q}; }`,
      );
    }
  }
  add(`}`);
  return lines.join("\n      ");
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
