/**
 * TensorFlow.js backends: loading them, and patching the gaps measured under Deno (TFJS_NOTES.md).
 *
 * - `wasm` (SIMD, one thread) is the CPU default. Its `matMul` with `transposeA`/`transposeB` runs
 *   at 1–2 GFLOP/s against ~27 without, and tfjs's own matmul gradient uses exactly those flags,
 *   so every backward pass would crawl: this module re-registers the `BatchMatMul` gradient with
 *   explicit `tf.transpose` calls followed by plain products (same math, ~6× faster end to end).
 * - `cpu` is tfjs's plain JavaScript backend: slow, and the reference for exactness tests.
 * - `webgpu` is Deno's native WebGPU (a GPU, or lavapipe on a CPU).
 * - `tensorflow` is `@tensorflow/tfjs-node-gpu` or `@tensorflow/tfjs-node`, imported only when
 *   asked for. Their install step downloads libtensorflow, which fails without network access to
 *   Google's storage, so its absence is an ordinary, clearly reported condition.
 *
 * Gradients are registered only by the `@tensorflow/tfjs` union package under Deno, so everything
 * in `runtime/` imports tfjs from here.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { existsSync } from "node:fs";
import { pathToFileURL } from "node:url";
import type { BackendName } from "../../dsl/plan.ts";
import {
  BLAS_MIN_FLOPS,
  blasRunsMatMul,
  loadBlas,
  registerBlasMatMul,
  unregisterBlasMatMul,
} from "./blas.ts";
import { registerSharingKernels } from "./kernels/share.ts";
import { nativeTensorflow, nodeModules } from "./native.ts";
import { freeDuringBackprop } from "./tape.ts";

export { tf };
export type { BackendName };

/**
 * A backend that cannot run here; its message is one line meant for the user.
 *
 * @example
 * ```ts
 * try {
 *   await useBackend("webgpu");
 * } catch (e) {
 *   if (e instanceof BackendUnavailableError) await useBackend("wasm");
 * }
 * ```
 */
export class BackendUnavailableError extends Error {
  constructor(readonly backend: BackendName, message: string) {
    super(message);
    this.name = "BackendUnavailableError";
  }
}

/** The last two axes of `x` swapped (a plain transpose, fast on every backend). */
export function swapLastAxes(x: tf.Tensor): tf.Tensor {
  const perm = [...Array(x.rank).keys()];
  perm[x.rank - 1] = x.rank - 2;
  perm[x.rank - 2] = x.rank - 1;
  return tf.transpose(x, perm);
}

/**
 * One-hot rows as float32. On wasm, `tf.oneHot(…, "float32")` returns int32 bits labelled float32
 * (1 reads as 1.4e-45), so the int32 result is cast instead.
 */
export function oneHotFloat(indices: tf.Tensor, depth: number): tf.Tensor {
  return tf.cast(tf.oneHot(indices as tf.Tensor1D, depth), "float32");
}

/**
 * `a · b` with optional transposes, computed where it is fast: OpenBLAS (when it runs this
 * backend's products, and the product is big enough to go there) takes the transpose flags itself;
 * wasm's own kernel is ~15× slower with them, so there the operand is transposed first.
 */
function product(a: tf.Tensor, b: tf.Tensor, transposeA: boolean, transposeB: boolean): tf.Tensor {
  const rankA = a.rank;
  const rankB = b.rank;
  const M = a.shape[transposeA ? rankA - 1 : rankA - 2]!;
  const K = a.shape[transposeA ? rankA - 2 : rankA - 1]!;
  const N = b.shape[transposeB ? rankB - 2 : rankB - 1]!;
  if (blasRunsMatMul(tf.getBackend()) && M * N * K >= BLAS_MIN_FLOPS) {
    return tf.matMul(a, b, transposeA, transposeB);
  }
  return tf.matMul(transposeA ? swapLastAxes(a) : a, transposeB ? swapLastAxes(b) : b);
}

/**
 * tfjs's `BatchMatMul` gradient (tfjs-core `gradients/BatchMatMul_grad.ts`), every transposed
 * product through {@linkcode product}. Identical math on every backend.
 */
function registerMatMulGradient(): void {
  tf.registerGradient({
    kernelName: tf.BatchMatMul,
    inputsToSave: ["a", "b"],
    gradFunc: (dy, saved, attrs) => {
      const [a, b] = saved as [tf.Tensor, tf.Tensor];
      const dY = dy as tf.Tensor;
      const { transposeA, transposeB } = attrs as unknown as {
        transposeA: boolean;
        transposeB: boolean;
      };
      if (!transposeA && !transposeB) {
        return { a: () => product(dY, b, false, true), b: () => product(a, dY, true, false) };
      }
      if (!transposeA && transposeB) {
        return { a: () => product(dY, b, false, false), b: () => product(dY, a, true, false) };
      }
      if (transposeA && !transposeB) {
        return { a: () => product(b, dY, false, true), b: () => product(a, dY, false, false) };
      }
      return { a: () => product(b, dY, true, true), b: () => product(dY, a, true, true) };
    },
  });
}

registerMatMulGradient();

/** What `useBackend()` set up. */
export interface BackendInfo {
  name: BackendName;
  /**
   * One line for the console, e.g. `wasm (SIMD, 1 thread) · matmul: OpenBLAS, 2 threads`.
   */
  description: string;
  /** Where matrix products run: the backend's own kernel, or OpenBLAS (and why not). */
  matmul: { blas: string | null; reason: string };
}

/** Options of `useBackend()`. */
export interface UseBackendOptions {
  /**
   * Run `wasm` and `cpu` matrix products through OpenBLAS when it loads (`runtime/engine/blas.ts`); the
   * environment variable `GIFTWRAP_BLAS=0` turns it off too. @default true
   */
  blas?: boolean;
}

/** Whether GIFTWRAP_BLAS=0 asks for no BLAS (read without prompting for the permission). */
function blasTurnedOff(): boolean {
  const env = Deno.permissions.querySync({ name: "env", variable: "GIFTWRAP_BLAS" });
  return env.state === "granted" && Deno.env.get("GIFTWRAP_BLAS") === "0";
}

async function setupWasm(): Promise<string> {
  const wasm = await import("@tensorflow/tfjs-backend-wasm");
  const dist = `${nodeModules()}@tensorflow/tfjs-backend-wasm/dist/`;
  if (!existsSync(`${dist}tfjs-backend-wasm-simd.wasm`)) {
    throw new BackendUnavailableError(
      "wasm",
      `backend 'wasm' needs ${dist}tfjs-backend-wasm-simd.wasm, which is missing; ` +
        "run `deno install` in the project directory (deno.json sets nodeModulesDir)",
    );
  }
  wasm.setWasmPaths(pathToFileURL(dist).href);
  return "wasm (SIMD, 1 thread)";
}

async function setupWebgpu(): Promise<string> {
  type Adapter = { info?: { description?: string } };
  const gpu = (navigator as { gpu?: { requestAdapter(): Promise<Adapter | null> } }).gpu;
  const adapter = gpu ? await gpu.requestAdapter() : null;
  if (!adapter) {
    throw new BackendUnavailableError(
      "webgpu",
      "backend 'webgpu' needs a WebGPU adapter, and navigator.gpu offers none here " +
        "(on a machine without a GPU, Debian's mesa-vulkan-drivers provides a CPU one)",
    );
  }
  await import("@tensorflow/tfjs-backend-webgpu");
  chainWebgpuAddN();
  // the adapter's own name ("llvmpipe (LLVM 15.0.6, 256 bits)" for lavapipe, the GPU's otherwise)
  const name = adapter.info?.description;
  return `webgpu (Deno's WebGPU${name ? `: ${name}` : ""})`;
}

/** Inputs webgpu's AddN can bind: with its output, WebGPU's default 8 storage buffers a stage. */
const ADDN_INPUTS = 7;

/**
 * webgpu's `AddN` binds every input as a storage buffer: from 8 inputs on its pipeline exceeds
 * WebGPU's default limit and fails, and the kernel returns whatever its output buffer held, with
 * no error. This re-registers it to add at most 7 at a time (tests/runtime/engine/webgpu_test.ts).
 */
function chainWebgpuAddN(): void {
  const kernel = tf.getKernel("AddN", "webgpu");
  if (!kernel || (kernel as { chained?: boolean }).chained) return;
  const addN = kernel.kernelFunc;
  tf.unregisterKernel("AddN", "webgpu");
  tf.registerKernel({
    kernelName: "AddN",
    backendName: "webgpu",
    chained: true,
    kernelFunc: ({ inputs, backend }) => {
      const add = (tensors: tf.TensorInfo[]) =>
        addN({ inputs: tensors as unknown as tf.NamedTensorInfoMap, backend }) as tf.TensorInfo;
      let rest = inputs as unknown as tf.TensorInfo[];
      const partials: tf.TensorInfo[] = [];
      while (rest.length > ADDN_INPUTS) {
        const part = add(rest.slice(0, ADDN_INPUTS));
        partials.push(part);
        rest = [part, ...rest.slice(ADDN_INPUTS)];
      }
      const sum = add(rest);
      // the partial sums are queued for the kernels that read them: webgpu frees them after those
      const gpu = backend as { disposeData(dataId: object): void };
      for (const p of partials) gpu.disposeData(p.dataId);
      return sum;
    },
  } as tf.KernelConfig);
}

async function setupTensorflow(): Promise<string> {
  const found = nativeTensorflow();
  if ("package" in found) {
    // tfjs-node's dist calls util.isNullOrUndefined, which Deno's node:util lacks.
    const util = await import("node:util") as unknown as Record<string, unknown>;
    util.isNullOrUndefined ??= (x: unknown) => x === null || x === undefined;
    await import(pathToFileURL(`${found.dir}dist/index.js`).href);
    return `tensorflow (${found.package}, libtensorflow)`;
  }
  throw new BackendUnavailableError(
    "tensorflow",
    `backend 'tensorflow' needs the native library libtensorflow from @tensorflow/tfjs-node-gpu ` +
      `or @tensorflow/tfjs-node (${
        found.tried.join("; ")
      }); their install step downloads it from ` +
      "Google's storage (TFJS_NODE_CDN_STORAGE selects a mirror), or use --backend wasm",
  );
}

/**
 * Makes `name` the active tfjs backend, loading it first when needed.
 *
 * @throws {BackendUnavailableError} when the backend cannot run here (one line, for the user).
 * @example
 * ```ts
 * const { description } = await useBackend("wasm"); // "wasm (SIMD, 1 thread)"
 * ```
 */
export async function useBackend(
  name: BackendName,
  options: UseBackendOptions = {},
): Promise<BackendInfo> {
  freeDuringBackprop(); // every backend: the backward pass frees as it goes (tape.ts)
  let description: string;
  switch (name) {
    case "cpu":
      description = "cpu (tfjs JavaScript kernels)";
      break;
    case "wasm":
      description = await setupWasm();
      break;
    case "webgpu":
      description = await setupWebgpu();
      break;
    case "tensorflow":
      description = await setupTensorflow();
      break;
  }
  const ok = await tf.setBackend(name);
  if (!ok) {
    throw new BackendUnavailableError(name, `backend '${name}' failed to initialise in tfjs`);
  }
  await tf.ready();
  if (name === "cpu") {
    // The cpu backend advertises tfjs-node on its first write; here that is the tensorflow backend.
    (tf.backend() as unknown as { firstUse: boolean }).firstUse = false;
  }
  if (name === "wasm") registerSharingKernels(); // clones and same-dtype casts without a copy
  const matmul = useBlas(name, options.blas ?? true);
  if (matmul.blas) description += ` · matmul: ${matmul.blas}`;
  return { name, description, matmul };
}

/** Registers (or removes) the OpenBLAS matmul of `name` as asked and as possible. */
function useBlas(name: BackendName, wanted: boolean): BackendInfo["matmul"] {
  if (name !== "wasm" && name !== "cpu") {
    return { blas: null, reason: `the ${name} backend runs its own matmul` };
  }
  if (!wanted || blasTurnedOff()) {
    unregisterBlasMatMul(name);
    return { blas: null, reason: wanted ? "GIFTWRAP_BLAS=0" : "turned off" };
  }
  const probe = loadBlas();
  if (!probe.ok) return { blas: null, reason: probe.reason };
  registerBlasMatMul(name, probe.blas);
  const threads = probe.blas.threads === 1 ? "1 thread" : `${probe.blas.threads} threads`;
  return {
    blas: `OpenBLAS ${probe.blas.core}, ${threads}`,
    reason: `${probe.blas.library} loaded`,
  };
}
