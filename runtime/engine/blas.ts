/**
 * Matrix products through a system BLAS (OpenBLAS's `cblas_sgemm`, called with Deno's FFI), for
 * the `wasm` and `cpu` backends. tfjs's wasm `matMul` runs on one thread and slows to a crawl
 * with a transposed operand, and its cpu one is plain JavaScript; OpenBLAS uses every core and
 * handles transposes itself (bench/RESULTS.md, "kernel choices"). Everything else stays on the backend: this replaces only the `BatchMatMul` kernel, and
 * only where the library loads and the process may use FFI (`--allow-ffi`); anywhere else the
 * backend runs as it was.
 *
 * The operands are read where the backend keeps them, without a copy: inside the wasm module's
 * memory (a pointer to the heap plus each tensor's offset) or in the cpu backend's typed arrays.
 * Products too small to repay the call (under {@linkcode BLAS_MIN_FLOPS}) use the backend's own
 * kernel, as do non-float32 ones.
 *
 * @module
 */

import { swapLastAxes, tf } from "./tf.ts";

/**
 * Products of matrices with fewer multiply-adds than this each run on the backend's own kernel:
 * a call into the library costs more than it saves on attention's many tiny per-head products.
 */
export const BLAS_MIN_FLOPS = 64 * 64 * 64;

/** Library names tried, in order. */
const LIBRARIES = [
  "libopenblas.so.0",
  "libopenblas.so",
  "libopenblas.0.dylib",
  "libopenblas.dylib",
];

const CBLAS_ROW_MAJOR = 101;
const CBLAS_NO_TRANS = 111;
const CBLAS_TRANS = 112;

const SYMBOLS = {
  cblas_sgemm: {
    parameters: [
      "i32", // order
      "i32", // transA
      "i32", // transB
      "i32", // M
      "i32", // N
      "i32", // K
      "f32", // alpha
      "pointer", // A
      "i32", // lda
      "pointer", // B
      "i32", // ldb
      "f32", // beta
      "pointer", // C
      "i32", // ldc
    ],
    result: "void",
  },
  openblas_get_num_threads: { parameters: [], result: "i32" },
  openblas_set_num_threads: { parameters: ["i32"], result: "void" },
  openblas_get_corename: { parameters: [], result: "pointer" },
} as const;

/**
 * OpenBLAS picks its kernels from the CPU's family and model; under a hypervisor that reports a
 * generic "Intel Xeon Processor" it falls back to Prescott (SSE3), several times slower than the
 * kernels the CPU can run (bench/RESULTS.md, "kernel choices"). Unless the user chose (OPENBLAS_CORETYPE), choose from the
 * instruction sets the CPU reports as usable, before the library loads and reads the variable.
 * The CPU is asked through glibc's `__x86_get_cpuid_feature_leaf` (2.33+): Deno refuses
 * `/proc/cpuinfo` without `--allow-all`. Anywhere else OpenBLAS chooses alone.
 */
function chooseCoreType(): void {
  const env = Deno.permissions.querySync({ name: "env", variable: "OPENBLAS_CORETYPE" });
  if (env.state !== "granted" || Deno.env.get("OPENBLAS_CORETYPE")) return;
  let libc;
  try {
    libc = Deno.dlopen("libc.so.6", {
      __x86_get_cpuid_feature_leaf: { parameters: ["u32"], result: "pointer" },
    });
  } catch {
    return; // not glibc 2.33+ on x86-64
  }
  try {
    // struct cpuid_feature { cpuid[4]; active[4] } (eax, ebx, ecx, edx): leaf 0 is CPUID 1,
    // leaf 1 is CPUID 7; "active" holds what the CPU and the OS both enable.
    const active = (leaf: number, register: number) => {
      const p = libc.symbols.__x86_get_cpuid_feature_leaf(leaf);
      return p ? new Deno.UnsafePointerView(p).getUint32(16 + 4 * register) : 0;
    };
    const bit = (word: number, n: number) => ((word >>> n) & 1) === 1;
    const ecx1 = active(0, 2);
    const ebx7 = active(1, 1);
    const avx512 = [16, 17, 30, 31].every((n) => bit(ebx7, n)); // F, DQ, BW, VL
    const avx2 = bit(ebx7, 5) && bit(ecx1, 12); // AVX2, FMA
    const core = avx512 ? "SkylakeX" : avx2 ? "Haswell" : null;
    if (core) Deno.env.set("OPENBLAS_CORETYPE", core);
  } finally {
    libc.close();
  }
}

/** A loaded BLAS. */
export interface Blas {
  /** The library file that loaded. */
  library: string;
  threads: number;
  /** The CPU kernels OpenBLAS chose, e.g. `SkylakeX`. */
  core: string;
  sgemm: Deno.DynamicLibrary<typeof SYMBOLS>["symbols"]["cblas_sgemm"];
  /**
   * Sets the threads the next products use (`threads` is the library's own number, which
   * {@linkcode Blas.threads} keeps). Results do not depend on it: a product's rows and columns are
   * split between threads, never its sums.
   */
  setThreads(threads: number): void;
}

/** Why no BLAS is used, or the one that is. */
export type BlasProbe = { ok: true; blas: Blas } | { ok: false; reason: string };

let probed: BlasProbe | null = null;

/**
 * Loads OpenBLAS, once: the library, or why not (no FFI permission, or none of `libraries`
 * loads). Never prompts for the permission.
 *
 * @example
 * ```ts
 * const probe = loadBlas();
 * console.log(probe.ok ? `${probe.blas.library}, ${probe.blas.threads} threads` : probe.reason);
 * ```
 */
export function loadBlas(libraries: readonly string[] = LIBRARIES): BlasProbe {
  if (libraries === LIBRARIES && probed) return probed;
  const probe = probeBlas(libraries);
  if (libraries === LIBRARIES) probed = probe;
  return probe;
}

function probeBlas(libraries: readonly string[]): BlasProbe {
  if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") {
    return { ok: false, reason: "no FFI permission (--allow-ffi)" };
  }
  chooseCoreType();
  for (const library of libraries) {
    try {
      const lib = Deno.dlopen(library, SYMBOLS);
      const threads = lib.symbols.openblas_get_num_threads();
      const name = lib.symbols.openblas_get_corename();
      const core = name ? new Deno.UnsafePointerView(name).getCString() : "unknown";
      const setThreads = (n: number) => lib.symbols.openblas_set_num_threads(n);
      return {
        ok: true,
        blas: { library, threads, core, sgemm: lib.symbols.cblas_sgemm, setThreads },
      };
    } catch {
      // not this one
    }
  }
  return {
    ok: false,
    reason: `no OpenBLAS library loads (tried ${libraries.join(", ")}; Debian: apt-get install ` +
      "libopenblas0-pthread)",
  };
}

/** The kernels `registerBlasMatMul` replaced, by backend, to put back. */
const replaced = new Map<string, tf.KernelConfig>();

/** Puts `backendName`'s own `BatchMatMul` kernel back (nothing when it was not replaced). */
export function unregisterBlasMatMul(backendName: "wasm" | "cpu"): void {
  const original = replaced.get(backendName);
  if (!original) return;
  tf.unregisterKernel(tf.BatchMatMul, backendName);
  tf.registerKernel(original);
  replaced.delete(backendName);
}

/**
 * op(a) · op(b) where OpenBLAS runs the backend's products (the `BatchMatMul` gradient of the
 * `wasm` and `cpu` kernel sets): products big enough to go there (`BLAS_MIN_FLOPS`) keep their
 * transpose flags, which OpenBLAS takes for free; smaller ones run on the backend's own kernel,
 * with each transposed operand transposed first (wasm's kernel is far slower with the flags).
 */
export function blasProduct(
  a: tf.Tensor,
  b: tf.Tensor,
  transposeA: boolean,
  transposeB: boolean,
): tf.Tensor {
  const M = a.shape[transposeA ? a.rank - 1 : a.rank - 2]!;
  const K = a.shape[transposeA ? a.rank - 2 : a.rank - 1]!;
  const N = b.shape[transposeB ? b.rank - 2 : b.rank - 1]!;
  if (M * N * K >= BLAS_MIN_FLOPS) return tf.matMul(a, b, transposeA, transposeB);
  return tf.matMul(transposeA ? swapLastAxes(a) : a, transposeB ? swapLastAxes(b) : b);
}

/** A backend's view of a tensor's float32 data, as a pointer the BLAS can read or write. */
type Locate = (backend: unknown, dataId: object) => Deno.PointerValue;

/** A tensor of a wasm backend lives in the module's memory, at its offset. */
function wasmPointer(backend: unknown, dataId: object): Deno.PointerValue {
  const b = backend as {
    wasm: { HEAPF32: Float32Array };
    dataIdMap: { get(id: object): { memoryOffset: number } };
  };
  // The heap's view changes when the memory grows: take it afresh on every call.
  const base = Deno.UnsafePointer.of(b.wasm.HEAPF32);
  return Deno.UnsafePointer.offset(base!, b.dataIdMap.get(dataId).memoryOffset);
}

/** A tensor of the cpu backend is a typed array. */
function cpuPointer(backend: unknown, dataId: object): Deno.PointerValue {
  const b = backend as { data: { get(id: object): { values: Float32Array } } };
  return Deno.UnsafePointer.of(b.data.get(dataId).values);
}

interface MatMulAttrs {
  transposeA: boolean;
  transposeB: boolean;
}

/**
 * Replaces `backendName`'s `BatchMatMul` kernel by one that calls `blas` (the original kept for
 * small and non-float32 products). Call once per backend, after it is registered.
 */
export function registerBlasMatMul(backendName: "wasm" | "cpu", blas: Blas): void {
  if (replaced.has(backendName)) return;
  const original = tf.getKernel(tf.BatchMatMul, backendName);
  if (!original) throw new Error(`no BatchMatMul kernel registered for '${backendName}'`);
  const locate: Locate = backendName === "wasm" ? wasmPointer : cpuPointer;
  replaced.set(backendName, original);
  tf.unregisterKernel(tf.BatchMatMul, backendName);
  const kernel: tf.KernelConfig = {
    kernelName: tf.BatchMatMul,
    backendName,
    ...(original.setupFunc ? { setupFunc: original.setupFunc } : {}),
    ...(original.disposeFunc ? { disposeFunc: original.disposeFunc } : {}),
    kernelFunc: (args) => {
      const { a, b } = args.inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
      const { transposeA, transposeB } = args.attrs as unknown as MatMulAttrs;
      const rankA = a.shape.length;
      const rankB = b.shape.length;
      const M = a.shape[transposeA ? rankA - 1 : rankA - 2]!;
      const K = a.shape[transposeA ? rankA - 2 : rankA - 1]!;
      const N = b.shape[transposeB ? rankB - 2 : rankB - 1]!;
      const batchA = a.shape.slice(0, -2).reduce((x, y) => x * y, 1);
      const batchB = b.shape.slice(0, -2).reduce((x, y) => x * y, 1);
      const batch = Math.max(batchA, batchB);
      const simple = (batchA === batchB || batchA === 1 || batchB === 1) &&
        b.shape[transposeB ? rankB - 1 : rankB - 2] === K;
      if (
        a.dtype !== "float32" || b.dtype !== "float32" || !simple ||
        M * N * K < BLAS_MIN_FLOPS
      ) {
        return original.kernelFunc(args);
      }
      const backend = args.backend as tf.KernelBackend & {
        makeOutput?: (shape: number[], dtype: "float32") => tf.TensorInfo;
      };
      const outerDims = tf.broadcast_util.assertAndGetBroadcastShape(
        a.shape.slice(0, -2),
        b.shape.slice(0, -2),
      );
      const outShape = [...outerDims, M, N];
      // The output: in the wasm heap (allocated by the backend), or a fresh typed array on cpu.
      let out: tf.TensorInfo;
      let cpuValues: Float32Array | null = null;
      if (backendName === "wasm") {
        out = backend.makeOutput!(outShape, "float32");
      } else {
        cpuValues = new Float32Array(batch * M * N);
        out = { dataId: {}, shape: outShape, dtype: "float32" };
      }
      const pa = locate(backend, a.dataId);
      const pb = locate(backend, b.dataId);
      const pc = cpuValues ? Deno.UnsafePointer.of(cpuValues) : locate(backend, out.dataId);
      const lda = transposeA ? M : K;
      const ldb = transposeB ? K : N;
      for (let i = 0; i < batch; i++) {
        const at = batchA === 1 ? 0 : i * M * K * 4;
        const bt = batchB === 1 ? 0 : i * K * N * 4;
        blas.sgemm(
          CBLAS_ROW_MAJOR,
          transposeA ? CBLAS_TRANS : CBLAS_NO_TRANS,
          transposeB ? CBLAS_TRANS : CBLAS_NO_TRANS,
          M,
          N,
          K,
          1,
          Deno.UnsafePointer.offset(pa!, at),
          lda,
          Deno.UnsafePointer.offset(pb!, bt),
          ldb,
          0,
          Deno.UnsafePointer.offset(pc!, i * M * N * 4),
          N,
        );
      }
      if (cpuValues) {
        return (backend as unknown as {
          makeTensorInfo(shape: number[], dtype: "float32", values: Float32Array): tf.TensorInfo;
        }).makeTensorInfo(outShape, "float32", cpuValues);
      }
      return out;
    },
  };
  tf.registerKernel(kernel);
}
