/**
 * Running a hand-written WGSL program on tfjs's webgpu backend: the one runner of every program of
 * ours, the `webgpu` kernel set's (`webgpu.ts`), AdamW's and the gradient norm's
 * (`adamw_webgpu.ts`, `norm_webgpu.ts`), the gated clipping (`gated_scale.ts`), the
 * counter-based generator (`philox.ts`) and the device draw (`rl/sample_device.ts`). The program
 * is given to the backend's own `runWebGPUProgram`, so it takes the backend's buffers as they
 * are, its output is an ordinary
 * tensor of the backend, and its dispatch goes into the same compute pass, pipeline cache and
 * submit batching as tfjs's kernels (tfjs-backend-webgpu 4.22, `backend_webgpu.js`).
 *
 * Why: on webgpu each kernel costs the host about 100 µs (a bind group, a uniform buffer, the
 * encoding: docs/tfjs.md, "WebGPU host costs") whatever it computes, and the operations the model
 * is written in are each 6 to 21 tfjs kernels forward and backward; one program each way is one
 * dispatch.
 *
 * The WGSL a program writes is the body of tfjs's shader: tfjs declares the output as `result`
 * (`array<f32>` or `array<i32>`), each input by its name as a plain array of its buffer's type (a
 * bool or int32 tensor's is `array<i32>`, whatever its dtype says: tfjs's `Cast` of a bool to
 * float32 may share the bool's buffer; `f32(x[i])` reads either), and the `uniforms`
 * struct, which holds tfjs's own fields (the shapes) and then the program's (`uniforms.<name>`).
 * The program defines `fn main(index : i32)`, called once per invocation with its flat index; with
 * `workgroupSize` w, workgroup `index / w` runs lanes `localId.x` = 0 … w − 1.
 *
 * Pitfalls: a program binds at most {@linkcode MAX_FUSED_INPUTS} inputs (WebGPU's default of 8
 * storage buffers per stage, the output included); names must avoid WGSL's reserved words
 * (`target`, `filter`, …) and tfjs's own (`result`, `uniforms`, `index`); a program must read one
 * of `uniforms`' fields at least (tfjs binds the uniform buffer whatever the shader reads, and a
 * layout made from a shader that reads none has no such binding: the bind group does not match and
 * the dispatch is dropped); and a program whose WGSL
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
export type Uniform = ["i32" | "u32" | "f32", number];

/** A fused WGSL program: its code, its output and how many invocations run it. */
export interface FusedProgram {
  /**
   * Names the WGSL: programs with the same name must have the same code, inputs and uniforms (the
   * pipelines' key, and what `runFused` remembers of a program by its name).
   */
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
  /**
   * WGSL defining `fn main(index : i32)` (and whatever it calls, and workgroup arrays), or a
   * function that makes it: called only when the pipeline is compiled, not at every dispatch.
   */
  code: string | (() => string);
  /**
   * Components per element of the inputs' and the output's WGSL arrays (4: `array<vec4<f32>>`,
   * whose element i is values 4i … 4i + 3; the sizes must be multiples of 4). @default 1 each
   */
  components?: { inputs: readonly number[]; output: number };
  /**
   * The caller runs this same object again, unchanged (a plan cached by shape): what tfjs reads
   * of it is built at its first run and kept with it, not at every dispatch. @default false
   */
  reused?: boolean;
}

/**
 * Whether the active backend can run WGSL programs (it is tfjs's `webgpu`).
 *
 * @example
 * ```ts
 * if (wgslAvailable()) runFused(program, [x]);
 * ```
 */
export function wgslAvailable(): boolean {
  return tf.getBackend() === "webgpu";
}

/** Whether the programs written for a CPU adapter run (`useCpuAdapterPrograms`). */
let cpuAdapterActive = false;

/**
 * Whether the webgpu programs written for a CPU adapter (lavapipe, SwiftShader) run where a
 * program has two forms: an invocation per row instead of a workgroup per row, for the attention
 * (`attention_lanes.ts`) and for `webgpu.ts`'s row programs (RMSNorm, the masked softmax and the
 * log-softmax over rows narrower than 4,096). `useBackend("webgpu")` sets it from the adapter.
 */
export function cpuAdapterPrograms(): boolean {
  return cpuAdapterActive;
}

/**
 * Chooses the programs for a CPU adapter (true) or a GPU (false) where a program has two forms.
 *
 * @example
 * ```ts
 * useCpuAdapterPrograms(false); // a GPU's programs, on whatever adapter (tests run both on lavapipe)
 * ```
 */
export function useCpuAdapterPrograms(on: boolean): void {
  cpuAdapterActive = on;
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
  variableComponents?: number[];
  outputComponent?: number;
  getUserCode(): string;
}

/** The webgpu backend's method that runs a program (`backend_webgpu.js`). */
interface WebgpuBackend {
  runWebGPUProgram(
    program: WebgpuProgram,
    inputs: tf.TensorInfo[],
    dtype: string,
    uniforms?: { type: "int32" | "uint32" | "float32"; data: number[] }[],
    output?: tf.TensorInfo,
  ): tf.TensorInfo;
  makeTensorInfo(shape: number[], dtype: tf.DataType): tf.TensorInfo;
}

const UNIFORM_TYPES = { i32: "int32", u32: "uint32", f32: "float32" } as const;

/**
 * Runs `program` on `inputs` on the webgpu backend (the active one) and returns its output, a tensor
 * tracked as a kernel's is (in the caller's `tf.tidy`, disposed as any other). Dispatches once.
 * With `into`, the program writes into that tensor's buffer instead (its `result` is that buffer,
 * whatever `outputShape` says; a tensor of {@linkcode emptyTensor}'s that nothing has read yet:
 * tfjs keeps what it read on the CPU and would not see later writes) and `into` is returned.
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
export function runFused(
  program: FusedProgram,
  inputs: readonly tf.Tensor[],
  into?: tf.Tensor,
): tf.Tensor {
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
  const dtype = program.dtype ?? "float32";
  if (into && into.dtype !== dtype) {
    throw new RangeError(
      `Cannot run '${program.name}' into a ${into.dtype} tensor: it writes ${dtype}`,
    );
  }
  const info = runFusedInfo(program, inputs, into);
  return into ?? tf.engine().makeTensorFromTensorInfo(info);
}

/**
 * {@linkcode runFused} for a kernel's own `kernelFunc`: takes and returns the backend's tensor
 * infos, which the engine makes into a tensor (a kernel that returned a tensor would be counted
 * twice). The inputs' count is the caller's to check.
 *
 * @example
 * ```ts
 * kernelFunc: ({ inputs }) => runFusedInfo(program, [inputs.x!]),
 * ```
 */
export function runFusedInfo(
  program: FusedProgram,
  inputs: readonly tf.TensorInfo[],
  into?: tf.TensorInfo,
): tf.TensorInfo {
  let ready = program.reused ? PREPARED.get(program) : undefined;
  if (!ready) {
    ready = prepare(program);
    if (program.reused) PREPARED.set(program, ready);
  }
  const webgpuProgram: WebgpuProgram = {
    outputShape: [...ready.outputShape], // tfjs gives it to the output's tensor info
    shaderKey: ready.names.shaderKey,
    dispatchLayout: ready.dispatchLayout,
    dispatch: ready.dispatch,
    workgroupSize: ready.workgroupSize,
    variableNames: ready.names.inputs,
    uniforms: ready.names.uniformDecl,
    getUserCode: ready.getUserCode,
  };
  if (ready.components) {
    webgpuProgram.variableComponents = ready.components.inputs as number[]; // tfjs only reads it
    webgpuProgram.outputComponent = ready.components.output;
  }
  return webgpuBackend(program.name).runWebGPUProgram(
    webgpuProgram,
    [...inputs],
    program.dtype ?? "float32",
    ready.values,
    into,
  );
}

/**
 * What tfjs reads of a program, but for the output's shape, which it hands on: tfjs reads these
 * (the backend's `runWebGPUProgram`, and its original on a pipeline not yet compiled) and never
 * writes into them; it replaces `dispatch` where it reshapes one, on the program object of the run.
 */
interface Prepared {
  names: ProgramNames;
  outputShape: readonly number[];
  dispatchLayout: { x: number[] };
  dispatch: [number, number, number];
  workgroupSize: [number, number, number];
  getUserCode: () => string;
  components: FusedProgram["components"];
  values: { type: "int32" | "uint32" | "float32"; data: number[] }[];
}

/** A `reused` program's `Prepared`, by the program. */
const PREPARED = new WeakMap<FusedProgram, Prepared>();

function prepare(program: FusedProgram): Prepared {
  const uniforms = program.uniforms ?? {};
  const names = PROGRAM_NAMES.get(program.name) ?? programNames(program);
  const values = [];
  for (const name of names.uniforms) {
    const [type, value] = uniforms[name]!;
    values.push({ type: UNIFORM_TYPES[type], data: [value] });
  }
  return {
    names,
    outputShape: program.outputShape,
    dispatchLayout: { x: program.outputShape.map((_, i) => i) },
    dispatch: [program.workgroups, 1, 1],
    workgroupSize: [program.workgroupSize, 1, 1],
    getUserCode: () => typeof program.code === "string" ? program.code : program.code(),
    components: program.components,
    values,
  };
}

/** What a program's name fixes: its pipeline's key, inputs and uniforms (see `FusedProgram.name`). */
interface ProgramNames {
  shaderKey: string;
  inputs: string[];
  uniforms: string[];
  uniformDecl: string;
}

/**
 * Per program name, the strings tfjs reads of a program: built once, not at every dispatch (the
 * host's cost per kernel is what the webgpu path is bound by on a GPU).
 */
const PROGRAM_NAMES = new Map<string, ProgramNames>();

function programNames(program: FusedProgram): ProgramNames {
  const uniforms = Object.entries(program.uniforms ?? {});
  const names: ProgramNames = {
    shaderKey: `giftwrap_${program.name}`,
    inputs: [...program.inputs],
    uniforms: uniforms.map(([name]) => name),
    uniformDecl: uniforms.map(([name, [type]]) => `${name} : ${type}, `).join(""),
  };
  PROGRAM_NAMES.set(program.name, names);
  return names;
}

/**
 * A tensor of `shape` whose values are whatever its device buffer held (no upload, no dispatch),
 * for a program to fill ({@linkcode runFused}'s `into`). Owned by the caller's scope.
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

/**
 * WGSL of `fn treeSum(value : f32, count : i32) -> f32` over a workgroup of `lanes` invocations,
 * with its `partial` workgroup array: each lane's value in `partial[lane]`, then the pairwise tree
 * of tfjs-webgpu 4.22's ReduceProgram over min(count, lanes) lanes, so that a program summing as
 * tfjs's `Sum` and `Mean` do gets their bits (rl/kl_webgpu.ts, rl/objectives/gift_webgpu.ts).
 * Every lane of the workgroup must call it (it has barriers).
 */
export function treeSumWgsl(lanes: number): string {
  return `
  var<workgroup> partial : array<f32, ${lanes}>;

  fn treeSum(value : f32, count : i32) -> f32 {
    let lane = localId.x;
    partial[lane] = value;
    workgroupBarrier();
    var size = u32(min(count, ${lanes}));
    loop {
      if (size <= 1u) { break; }
      let pairs = size / 2u;
      let interval = (size - 1u) / 2u + 1u;
      if (lane < pairs) {
        partial[lane] = partial[lane] + partial[lane + interval];
      }
      size = interval;
      workgroupBarrier();
    }
    let total = partial[0];
    workgroupBarrier();
    return total;
  }`;
}

/**
 * WGSL of `fn <name>(count : i32) -> f32`: the pairwise tree of tfjs-webgpu 4.22's ReduceProgram
 * run by one invocation over its own `array` (a `var<private>` of `lanes` floats holding each
 * lane's sum): while n > 1, lane l < ⌊n/2⌋ adds lane l + ⌈n/2⌉, over min(count, lanes) lanes
 * (rl/objectives/group_webgpu.ts, rl/objectives/gift_webgpu.ts).
 */
export function laneTreeWgsl(name: string, array: string, lanes: number): string {
  return `
  fn ${name}(count : i32) -> f32 {
    var size = u32(min(count, ${lanes}));
    loop {
      if (size <= 1u) { break; }
      let pairs = size / 2u;
      let interval = (size - 1u) / 2u + 1u;
      for (var l = 0u; l < pairs; l = l + 1u) {
        ${array}[l] = ${array}[l] + ${array}[l + interval];
      }
      size = interval;
    }
    return ${array}[0];
  }`;
}
