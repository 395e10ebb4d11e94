/**
 * Setting a TensorFlow.js backend up: loading it, choosing its kernel set, and every patch of tfjs
 * the runtime makes, each measured under Deno (docs/tfjs.md). `useBackend()` is the one place
 * that does any of it; nothing else asks which backend runs.
 *
 * - `wasm` (SIMD, one thread) is the CPU default, with the `wasm` kernel set (`kernels/wasm.ts`).
 *   Its `matMul` with `transposeA`/`transposeB` is an order of magnitude slower than without, and
 *   tfjs's own matmul gradient uses exactly those flags, so every backward pass would crawl: the
 *   `BatchMatMul` gradient is re-registered to compute its products with the kernel set's
 *   `product` (same math; docs/tfjs.md).
 * - `cpu` is tfjs's plain JavaScript backend: slow, and the reference for exactness tests; the
 *   `cpu` kernel set.
 * - `webgpu` is Deno's native WebGPU (a GPU, or lavapipe on a CPU), with the `webgpu` kernel set
 *   (`kernels/webgpu.ts`: fused WGSL programs, one dispatch where tfjs's ops take several), its
 *   `AddN` repaired (`chainWebgpuAddN`), constants and tables cached on the device
 *   (`kernels/constants.ts`) so that a train step uploads only its batch, and each kernel's
 *   uniforms and bind group cached and its submits batched (`webgpu_dispatch.ts`), so that a
 *   dispatch costs the host a fraction of tfjs's set-up. On a CPU adapter (lavapipe, SwiftShader)
 *   the products run as row blocks instead of tfjs's tiled program (`kernels/matmul_webgpu.ts`;
 *   GIFTWRAP_WEBGPU_MATMUL=rows|tfjs forces either).
 * - `tensorflow` is `@tensorflow/tfjs-node-gpu` or `@tensorflow/tfjs-node`, imported only when
 *   asked for, with the plain tfjs set. Their install step downloads libtensorflow, which fails
 *   without network access to Google's storage, so its absence is an ordinary, clearly reported
 *   condition.
 *
 * On `wasm` and `cpu`, OpenBLAS runs the matrix products when it loads (`blas.ts`), and the
 * backend's description says where they run, with how to install it when it is missing. Every
 * backend frees memory during the backward pass (`tape.ts`), and wasm's `Identity` and `Cast`
 * share memory instead of copying (`kernels/share.ts`).
 *
 * Everything in `runtime/` imports tfjs from `tf.ts` (re-exported here).
 *
 * @module
 */

import { existsSync } from "node:fs";
import { pathToFileURL } from "node:url";
import type { BackendName } from "../../dsl/plan.ts";
import { type Blas, loadBlas, registerBlasMatMul, unregisterBlasMatMul } from "./blas.ts";
import { cacheDeviceConstants } from "./kernels/constants.ts";
import { cpuKernels } from "./kernels/cpu.ts";
import {
  type AdapterFacts,
  cpuAdapter,
  installRowBlockMatMul,
  rowBlockWanted,
  uninstallRowBlockMatMul,
} from "./kernels/matmul_webgpu.ts";
import { useCpuAdapterPrograms } from "./kernels/webgpu_program.ts";
import { registerDeviceGradients } from "./kernels/gradients.ts";
import { registerSharingKernels } from "./kernels/share.ts";
import { tfjsKernels } from "./kernels/tfjs.ts";
import type { KernelSet } from "./kernels/types.ts";
import { wasmKernels } from "./kernels/wasm.ts";
import { webgpuKernels } from "./kernels/webgpu.ts";
import { nativeTensorflow, nodeModules } from "./native.ts";
import { freeDuringBackprop } from "./tape.ts";
import { tf } from "./tf.ts";
import { installWebgpuDispatch, uninstallWebgpuDispatch } from "./webgpu_dispatch.ts";
import { installHostSlice } from "./kernels/slice_webgpu.ts";

export { tf };
export type { BackendName, KernelSet };

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

/**
 * tfjs's `BatchMatMul` gradient (tfjs-core `gradients/BatchMatMul_grad.ts`), every transposed
 * product through the kernel set's `product`. Identical math on every backend; registered again by
 * each `useBackend()` for the set it chose.
 */
function registerMatMulGradient(kernels: KernelSet): void {
  const product = kernels.product;
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

/**
 * What `useBackend()` set up: the backend, its one-line description and its kernel set.
 *
 * @example
 * ```ts
 * const info: BackendInfo = await useBackend("cpu");
 * console.log(info.description); // "cpu (tfjs JavaScript kernels) · matmul: OpenBLAS …"
 * ```
 */
export interface BackendInfo {
  name: BackendName;
  /**
   * One line for the console, e.g. `wasm (SIMD, 1 thread) · matmul: OpenBLAS SkylakeX, 2 threads`;
   * on `wasm` and `cpu` without OpenBLAS it says that tfjs's kernels run the products, and how to
   * install OpenBLAS when it is missing.
   */
  description: string;
  /** Where matrix products run: the backend's own kernel, or OpenBLAS (and why not). */
  matmul: { blas: string | null; reason: string };
  /** The backend's fused operations, for the model, the optimiser and the sampler. */
  kernels: KernelSet;
}

/** Options of `useBackend()`. */
export interface UseBackendOptions {
  /**
   * Run `wasm` and `cpu` matrix products through OpenBLAS when it loads (`runtime/engine/blas.ts`); the
   * environment variable `GIFTWRAP_BLAS=0` turns it off too. @default true
   */
  blas?: boolean;
  /**
   * The OpenBLAS library files to try, in order (a name the loader searches for, or a path).
   * @default ["libopenblas.so.0", "libopenblas.so", "libopenblas.0.dylib", "libopenblas.dylib"]
   */
  blasLibraries?: readonly string[];
  /**
   * On `webgpu`, cache each kernel's uniforms and bind group and batch its submits
   * (`runtime/engine/webgpu_dispatch.ts`); the same bits either way. The environment variable
   * `GIFTWRAP_WEBGPU_DISPATCH=0` turns it off too. @default true
   */
  webgpuDispatch?: boolean;
}

/** Whether the environment variable `name` is "0" (read without prompting for the permission). */
function turnedOff(name: string): boolean {
  const env = Deno.permissions.querySync({ name: "env", variable: name });
  return env.state === "granted" && Deno.env.get(name) === "0";
}

/** Whether GIFTWRAP_BLAS=0 asks for no BLAS. */
function blasTurnedOff(): boolean {
  return turnedOff("GIFTWRAP_BLAS");
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

/** Whether the last webgpu set-up found a CPU adapter (lavapipe, SwiftShader): `matmul_webgpu.ts`. */
let webgpuOnCpu = false;

async function setupWebgpu(): Promise<string> {
  const gpu = (navigator as { gpu?: { requestAdapter(): Promise<AdapterFacts | null> } }).gpu;
  const adapter = gpu ? await gpu.requestAdapter() : null;
  if (!adapter) {
    throw new BackendUnavailableError(
      "webgpu",
      "backend 'webgpu' needs a WebGPU adapter, and navigator.gpu offers none here " +
        "(on a machine without a GPU, Debian's mesa-vulkan-drivers provides a CPU one)",
    );
  }
  await import("@tensorflow/tfjs-backend-webgpu");
  webgpuOnCpu = cpuAdapter(adapter);
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
      `or @tensorflow/tfjs-node (${found.tried.join("; ")}); install one with ` +
      "`deno add --allow-scripts=npm:@tensorflow/tfjs-node npm:@tensorflow/tfjs-node` " +
      "(tfjs-node-gpu for CUDA), whose install step downloads libtensorflow from Google's storage " +
      "(TFJS_NODE_CDN_STORAGE selects a mirror), or use --backend wasm",
  );
}

/**
 * Makes `name` the active tfjs backend, loading it first when needed, and chooses its kernel set.
 * Every patch of tfjs the runtime makes is installed here: the `BatchMatMul` kernel through
 * OpenBLAS (wasm, cpu), the `BatchMatMul` gradient through the kernel set's products, the backward
 * pass that frees as it goes, wasm's sharing `Identity` and `Cast`, and webgpu's `AddN`, dispatch
 * caches and, on a CPU adapter, row-block products (`kernels/matmul_webgpu.ts`).
 *
 * @throws {BackendUnavailableError} when the backend cannot run here (one line, for the user).
 * @example
 * ```ts
 * const { description, kernels } = await useBackend("wasm"); // "wasm (SIMD, 1 thread) · matmul: …"
 * const logp = tf.tidy(() => tokenLogProbs(kernels, params, config, ids, 7));
 * ```
 */
export async function useBackend(
  name: BackendName,
  options: UseBackendOptions = {},
): Promise<BackendInfo> {
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
  const { matmul, blas, note } = useBlas(name, options);
  const kernels = name === "wasm"
    ? wasmKernels(tf.backend(), blas)
    : name === "cpu"
    ? cpuKernels(blas)
    : name === "webgpu"
    ? webgpuKernels()
    : tfjsKernels();
  registerMatMulGradient(kernels);
  freeDuringBackprop(); // every backend: the backward pass frees as it goes (tape.ts)
  if (name === "wasm") registerSharingKernels(); // clones and same-dtype casts without a copy
  if (name === "webgpu") {
    chainWebgpuAddN();
    installHostSlice(); // a batch's ids sliced on the CPU a row at a time (slice_webgpu.ts)
    useCpuAdapterPrograms(webgpuOnCpu); // attention an invocation per row on lavapipe
    // a CPU driver runs tfjs's tiled products slowly: row blocks instead (matmul_webgpu.ts)
    if (rowBlockWanted(webgpuOnCpu)) {
      installRowBlockMatMul();
      description += " · matmul: row blocks (CPU adapter)";
    } else {
      uninstallRowBlockMatMul();
    }
    const dispatch = options.webgpuDispatch ?? !turnedOff("GIFTWRAP_WEBGPU_DISPATCH");
    if (dispatch) {
      const done = installWebgpuDispatch(tf.backend());
      if (!done.installed) description += ` · dispatch: tfjs's own (${done.reason})`;
    } else {
      uninstallWebgpuDispatch();
    }
  }
  registerDeviceGradients(); // every backend: tfjs's gradients without CPU-made constants
  cacheDeviceConstants(name === "webgpu"); // constants and tables stay on the device (constants.ts)
  if (note) description += ` · ${note}`;
  return { name, description, matmul, kernels };
}

/** How to install OpenBLAS, for the line saying that tfjs's kernels run the products instead. */
const INSTALL_OPENBLAS =
  "sudo apt-get install libopenblas0-pthread, or your distribution's openblas package";

/**
 * Registers (or removes) the OpenBLAS matmul of `name` as asked and as possible: where products
 * run (`matmul`), the library when it runs them, and the description's note on it (empty on a
 * backend that runs its own products).
 */
function useBlas(
  name: BackendName,
  options: UseBackendOptions,
): { matmul: BackendInfo["matmul"]; blas: Blas | null; note: string } {
  if (name !== "wasm" && name !== "cpu") {
    const reason = `the ${name} backend runs its own matmul`;
    return { matmul: { blas: null, reason }, blas: null, note: "" };
  }
  const fallback = "matmul: tfjs's kernels";
  const wanted = options.blas ?? true;
  if (!wanted || blasTurnedOff()) {
    unregisterBlasMatMul(name);
    const reason = wanted ? "GIFTWRAP_BLAS=0" : "turned off";
    const why = wanted ? "GIFTWRAP_BLAS=0 turns OpenBLAS off" : "OpenBLAS turned off";
    return { matmul: { blas: null, reason }, blas: null, note: `${fallback} (${why})` };
  }
  const probe = options.blasLibraries ? loadBlas(options.blasLibraries) : loadBlas();
  if (!probe.ok) {
    unregisterBlasMatMul(name);
    const why = probe.reason.startsWith("no FFI permission")
      ? "OpenBLAS needs --allow-ffi"
      : `OpenBLAS not found; install it: ${INSTALL_OPENBLAS}`;
    return {
      matmul: { blas: null, reason: probe.reason },
      blas: null,
      note: `${fallback}, several times slower (${why})`,
    };
  }
  registerBlasMatMul(name, probe.blas);
  const threads = probe.blas.threads === 1 ? "1 thread" : `${probe.blas.threads} threads`;
  return {
    matmul: {
      blas: `OpenBLAS ${probe.blas.core}, ${threads}`,
      reason: `${probe.blas.library} loaded`,
    },
    blas: probe.blas,
    note: `matmul: OpenBLAS ${probe.blas.core}, ${threads}`,
  };
}
