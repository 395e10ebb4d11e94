/**
 * Running a WGSL compute program of our own on tfjs's webgpu backend, as its own kernels run:
 * through `runWebGPUProgram` (tfjs-backend-webgpu 4.22), which compiles the program once per
 * shader key, binds its inputs and output as storage buffers, writes its uniforms and queues the
 * dispatch with tfjs's other work, so the result is an ordinary tensor that later ops read on the
 * device without a round trip through JavaScript. For what tfjs's ops cannot say: unsigned 32-bit
 * integer arithmetic (a counter-based generator, `philox.ts`) or a draw per row that walks its own
 * cumulative sum (`rl/sample_device.ts`).
 *
 * tfjs writes the program's header (`webgpu_program.js` `makeShader`): a `Uniforms` struct with
 * NaN, Infinity, each input's and the output's shape and strides, then the program's own
 * `uniforms` fields; `result` (the output, `array<i32>` or `array<f32>`) at binding 0; each input
 * by its `variableNames` name at the next bindings; the private `localId`, `workgroupId`, … of the
 * invocation; and a `_start` entry that calls the program's `fn main(index : i32)` with the flat
 * global index (when the dispatch is flat, as every program here is).
 *
 * @module
 */

import { tf } from "../tf.ts";

/** A program as tfjs-backend-webgpu's `WebGPUProgram` takes it (the fields used here). */
export interface WgslProgram {
  /** The output tensor's shape. */
  outputShape: number[];
  /** Names the compiled pipeline (tfjs adds the inputs' ranks and dtypes). */
  shaderKey: string;
  /** Which output axes the dispatch's x spans: all of them, `{ x: [0, …, rank − 1] }`. */
  dispatchLayout: { x: number[] };
  /** Workgroups along x, y, z. */
  dispatch: [number, number, number];
  /** Invocations per workgroup. */
  workgroupSize: [number, number, number];
  /** The inputs' names in WGSL, in the order they are passed. */
  variableNames: string[];
  /** The program's own uniform fields, WGSL struct members each ending with a comma. */
  uniforms?: string;
  /** The body: at least `fn main(index : i32) { … }`. */
  getUserCode(): string;
}

/** A program's own uniform value, in the order of its `uniforms` fields. */
export interface WgslUniform {
  type: "int32" | "uint32" | "float32";
  data: number[];
}

/** What this module needs of tfjs-backend-webgpu's backend object. */
interface WebgpuBackend {
  runWebGPUProgram(
    program: WgslProgram,
    inputs: tf.TensorInfo[],
    outputDtype: tf.DataType,
    programDefinedUniform?: WgslUniform[],
    output?: tf.TensorInfo,
  ): tf.TensorInfo;
  makeTensorInfo(shape: number[], dtype: tf.DataType): tf.TensorInfo;
}

/**
 * Whether the active backend can run WGSL programs (it is tfjs's `webgpu`).
 *
 * @example
 * ```ts
 * if (wgslAvailable()) runWgsl(program, [x], "float32");
 * ```
 */
export function wgslAvailable(): boolean {
  return tf.getBackend() === "webgpu";
}

/**
 * Runs `program` on `inputs` (tensors of the webgpu backend) with its own uniform values, and
 * returns its output as a tensor of `dtype` owned by the caller's scope (freed by an enclosing
 * `tf.tidy`, like any op's). With `into`, the program writes into that tensor's buffer instead (a
 * tensor of {@linkcode emptyTensor}'s that nothing has read yet: tfjs keeps what it read on the CPU
 * and would not see later writes) and `into` is returned. Nothing is read back.
 *
 * @example
 * ```ts
 * const doubled = runWgsl({
 *   outputShape: [n], shaderKey: "double", dispatchLayout: { x: [0] },
 *   dispatch: [Math.ceil(n / 64), 1, 1], workgroupSize: [64, 1, 1], variableNames: ["x"],
 *   uniforms: "count : i32,",
 *   getUserCode: () => `fn main(index : i32) {
 *     if (index < uniforms.count) { result[index] = 2.0 * x[index]; }
 *   }`,
 * }, [x], "float32", [{ type: "int32", data: [n] }]);
 * ```
 */
export function runWgsl(
  program: WgslProgram,
  inputs: tf.Tensor[],
  dtype: tf.DataType,
  uniforms: WgslUniform[] = [],
  into?: tf.Tensor,
): tf.Tensor {
  const backend = webgpuBackend(program.shaderKey);
  if (into) {
    if (into.dtype !== dtype) {
      throw new RangeError(
        `Cannot run the WGSL program '${program.shaderKey}' into a ${into.dtype} tensor: it writes ${dtype}`,
      );
    }
    backend.runWebGPUProgram(program, inputs, dtype, uniforms, into);
    return into;
  }
  const info = backend.runWebGPUProgram(program, inputs, dtype, uniforms);
  return tf.engine().makeTensorFromTensorInfo(info);
}

/**
 * A tensor of `shape` whose values are whatever its device buffer held (no upload, no dispatch),
 * for a program to fill ({@linkcode runWgsl}'s `into`). Owned by the caller's scope.
 *
 * @example
 * ```ts
 * const out = emptyTensor([steps, 3, rows], "int32");
 * ```
 */
export function emptyTensor(shape: number[], dtype: tf.DataType): tf.Tensor {
  const backend = webgpuBackend("emptyTensor");
  return tf.engine().makeTensorFromTensorInfo(backend.makeTensorInfo(shape, dtype));
}

function webgpuBackend(what: string): WebgpuBackend {
  if (!wgslAvailable()) {
    throw new Error(
      `Cannot run '${what}' as it needs the webgpu backend: the active one is ${tf.getBackend()}`,
    );
  }
  return tf.backend() as unknown as WebgpuBackend;
}
