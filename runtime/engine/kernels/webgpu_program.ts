/**
 * Running a hand-written WGSL program on tfjs's webgpu backend, for the `webgpu` kernel set
 * (`webgpu.ts`) and any other fused kernel: the program is given to the backend's own
 * `runWebGPUProgram`, so it takes the backend's buffers as they are, its output is an ordinary
 * tensor of the backend, and its dispatch goes into the same compute pass, pipeline cache and
 * submit batching as tfjs's kernels (tfjs-backend-webgpu 4.22, `backend_webgpu.js`).
 *
 * Why: on webgpu each kernel costs the host about 100 µs (a bind group, a uniform buffer, the
 * encoding: docs/tfjs.md, "WebGPU host costs") whatever it computes, and the operations the model
 * is written in are each 6 to 21 tfjs kernels forward and backward; one program each way is one
 * dispatch.
 *
 * The WGSL a program writes is the body of tfjs's shader: tfjs declares the output as `result`
 * (`array<f32>` or `array<i32>`), each input by its name as a plain array, and the `uniforms`
 * struct, which holds tfjs's own fields (the shapes) and then the program's (`uniforms.<name>`).
 * The program defines `fn main(index : i32)`, called once per invocation with its flat index; with
 * `workgroupSize` w, workgroup `index / w` runs lanes `localId.x` = 0 … w − 1.
 *
 * Pitfalls: a program binds at most {@linkcode MAX_FUSED_INPUTS} inputs (WebGPU's default of 8
 * storage buffers per stage, the output included); names must avoid WGSL's reserved words
 * (`target`, `filter`, …) and tfjs's own (`result`, `uniforms`, `index`); and a program whose WGSL
 * does not compile throws nothing: tfjs's pipeline is invalid, and the submit it is part of
 * computes nothing (reads return zeros), so each program is checked against a reference
 * (tests/runtime/engine/kernels/webgpu_test.ts).
 *
 * @module
 */

import { tf } from "../tf.ts";

/** Inputs a program may bind: WebGPU's default of 8 storage buffers per stage, less the output. */
export const MAX_FUSED_INPUTS = 7;

/** A program's own uniform: its WGSL type and value. */
export type Uniform = ["i32" | "f32", number];

/** A fused WGSL program: its code, its output and how many invocations run it. */
export interface FusedProgram {
  /** Names the WGSL: programs with the same name must have the same code (the pipelines' key). */
  name: string;
  /** The inputs' names in the WGSL, in the order of `runFused`'s tensors. */
  inputs: readonly string[];
  /** The output's shape. */
  outputShape: readonly number[];
  /** The output's dtype. @default "float32" */
  dtype?: "float32" | "int32";
  /** Invocations per workgroup (a power of two up to 256 everywhere WebGPU runs). */
  workgroupSize: number;
  /** Workgroups to run (along x; tfjs spreads more than 65,535 over y and z). */
  workgroups: number;
  /** The program's uniforms, read in the WGSL as `uniforms.<name>`. @default {} */
  uniforms?: Record<string, Uniform>;
  /** WGSL defining `fn main(index : i32)` (and whatever it calls, and workgroup arrays). */
  code: string;
}

/** Workgroups of `size` invocations that cover `count` invocations, at least one. */
export function workgroupsFor(count: number, size: number): number {
  return Math.max(1, Math.ceil(count / size));
}

/** What tfjs-backend-webgpu's `runWebGPUProgram` reads of a program (webgpu_program.ts there). */
interface WebgpuProgram {
  outputShape: number[];
  shaderKey: string;
  dispatchLayout: { x: number[] };
  dispatch: [number, number, number];
  workgroupSize: [number, number, number];
  variableNames: string[];
  uniforms: string;
  getUserCode(): string;
}

/** The webgpu backend's method that runs a program (`backend_webgpu.js`). */
interface WebgpuBackend {
  runWebGPUProgram(
    program: WebgpuProgram,
    inputs: tf.TensorInfo[],
    dtype: string,
    uniforms?: { type: "int32" | "float32"; data: number[] }[],
  ): tf.TensorInfo;
}

/**
 * Runs `program` on `inputs` on the webgpu backend (the active one) and returns its output, a tensor
 * tracked as a kernel's is (in the caller's `tf.tidy`, disposed as any other). Dispatches once.
 *
 * @example
 * ```ts
 * const doubled = runFused({
 *   name: "double",
 *   inputs: ["x"],
 *   outputShape: x.shape,
 *   workgroupSize: 64,
 *   workgroups: workgroupsFor(x.size, 64),
 *   uniforms: { count: ["i32", x.size] },
 *   code: `fn main(index : i32) { if (index < uniforms.count) { result[index] = 2.0 * x[index]; } }`,
 * }, [x]);
 * ```
 */
export function runFused(program: FusedProgram, inputs: readonly tf.Tensor[]): tf.Tensor {
  if (inputs.length !== program.inputs.length) {
    throw new Error(
      `Cannot run '${program.name}' as it reads ${program.inputs.length} inputs: ` +
        `current count is ${inputs.length}`,
    );
  }
  if (inputs.length > MAX_FUSED_INPUTS) {
    throw new Error(
      `Cannot run '${program.name}' as a program binds at most ${MAX_FUSED_INPUTS} inputs: ` +
        `current count is ${inputs.length}`,
    );
  }
  const uniforms = Object.entries(program.uniforms ?? {});
  const outputShape = [...program.outputShape];
  const webgpuProgram: WebgpuProgram = {
    outputShape,
    shaderKey: `giftwrap_${program.name}`,
    dispatchLayout: { x: outputShape.map((_, i) => i) },
    dispatch: [program.workgroups, 1, 1],
    workgroupSize: [program.workgroupSize, 1, 1],
    variableNames: [...program.inputs],
    uniforms: uniforms.map(([name, [type]]) => `${name} : ${type}, `).join(""),
    getUserCode: () => program.code,
  };
  const backend = tf.backend() as unknown as WebgpuBackend;
  const info = backend.runWebGPUProgram(
    webgpuProgram,
    inputs as tf.Tensor[],
    program.dtype ?? "float32",
    uniforms.map(([, [type, value]]) => ({
      type: type === "i32" ? "int32" : "float32",
      data: [value],
    })),
  );
  return tf.engine().makeTensorFromTensorInfo(info);
}
