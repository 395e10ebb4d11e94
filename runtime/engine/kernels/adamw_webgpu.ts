/**
 * AdamW's update of one parameter on webgpu in one dispatch instead of seventeen, for the
 * optimiser's device path (`DeviceUpdates` in `optim.ts`). The host cost of a dispatch (≈ 60–200 µs
 * with tfjs-webgpu, docs/tfjs.md) is what a train step pays per parameter, so this is most of an
 * update's host time.
 *
 * p, m and v are three variables, and a tfjs-webgpu program has one output, so the one dispatch
 * writes them in place: a compute program of its own binds the variables' own buffers read-write
 * (and the gradient and the step's values read-only) and is recorded into tfjs's command stream as
 * tfjs records its kernels (`recordAndSubmit` in tfjs-backend-webgpu 4.22's `backend_webgpu.js`):
 * into its open compute pass, counted toward its submit batch, the buffers marked as used by the
 * pending commands so that none returns to tfjs's pool before the submit. Its pipelines (one per
 * setting) and bind groups (one per parameter, while the gradient's and the step's buffers are
 * those of the step before) are built once and cached. Writing in place is right only where the
 * variable is the one tensor on its buffer: a clone or a reshape of it (tfjs shares the buffer and
 * counts it) must keep the old values. There, and while tfjs times kernels (`tf.profile`), the
 * update takes three programs through the one runner (`webgpu_program.ts`), one each for the first
 * moment, the second moment and the parameter, whose outputs the variables take.
 *
 * Both compute what the tfjs ops of `adamWOps` (`tfjs.ts`) compute, in the same order, each
 * operation in f32: the gradient gated and clipped (`gated_scale.ts`), m·β₁ + g'·(1−β₁),
 * v·β₂ + g'²·(1−β₂), p − ((m/c₁)/(√(v/c₂) + ε) + p·decay)·lr. The step's values (clip, the applied
 * flag, c₁, c₂, lr) come in one small tensor, `step`; the settings (β₁, β₂, ε, decay) are written
 * into the shader as the bits of their float32 values, one pipeline per setting. A skipped update
 * (flag 0) takes β = 1, 1 − β = 0, lr = 0 and a gradient of 0: p, m and v keep their values.
 *
 * One difference from the op-by-op update may remain: a GPU's shader compiler may contract
 * `a·b + c` into a fused multiply-add, which rounds once where the ops round twice. The programs
 * are deterministic on one machine (a resumed run computes the same bits); whether they equal the
 * ops' bits is a property of the driver, checked on lavapipe by tests/runtime/engine/optim_device_test.ts.
 *
 * @module
 */

import { tf } from "../tf.ts";
import { countDispatch } from "../webgpu_dispatch.ts";
import { runFused, wgslAvailable, workgroupsFor } from "./webgpu_program.ts";

/** Elements per workgroup, as tfjs's own element-wise programs. */
const WORKGROUP = 128;

/** Workgroups a dispatch may take along one axis (WebGPU's default limit). */
const MAX_WORKGROUPS = 65535;

/** The index of each of the step's values in the `step` tensor. */
export const STEP_VALUES = { clip: 0, applied: 1, c1: 2, c2: 3, lr: 4 } as const;

/** An f32 literal with exactly the bits of `value` rounded to float32. */
function f32(value: number): string {
  const bits = new Uint32Array(new Float32Array([value]).buffer)[0]!;
  return `bitcast<f32>(0x${bits.toString(16)}u)`;
}

/** The settings a program is built for (part of its shader's key). */
export interface AdamWSettings {
  b1: number;
  b2: number;
  eps: number;
  decay: number;
}

/** The shader's key of `settings`. */
function settingsKey({ b1, b2, eps, decay }: AdamWSettings): string {
  return [b1, b2, eps, decay].map(f32).join("_").replace(/[^0-9a-z_]/g, "");
}

/**
 * WGSL of the update of element `index`, reading `g`, `m`, `v`, `p` and `step` and writing the
 * new values through `setM`, `setV` and `setP` (statements taking a WGSL expression): the
 * operations of `adamWOps` in their order. `parts` leaves out what a program does not write.
 */
function updateCode(settings: AdamWSettings, parts: { m: boolean; v: boolean; p: boolean }, set: {
  m: (value: string) => string;
  v: (value: string) => string;
  p: (value: string) => string;
}): string {
  const { b1, b2, eps, decay } = settings;
  const { clip, applied, c1, c2, lr } = STEP_VALUES;
  const lines = [`let ok = step[${applied}] > 0.0;`];
  if (parts.m || parts.v) {
    lines.push(`var grad = 0.0;`, `if (ok) { grad = g[index] * step[${clip}]; }`);
  }
  if (parts.m) {
    lines.push(
      `let mKept = m[index] * select(1.0, ${f32(b1)}, ok);`,
      `let mAdded = grad * select(0.0, ${f32(1 - b1)}, ok);`,
      `let mNew = mKept + mAdded;`,
      set.m("mNew"),
    );
  }
  if (parts.v) {
    lines.push(
      `let vKept = v[index] * select(1.0, ${f32(b2)}, ok);`,
      `let square = grad * grad;`,
      `let vAdded = square * select(0.0, ${f32(1 - b2)}, ok);`,
      `let vNew = vKept + vAdded;`,
      set.v("vNew"),
    );
  }
  if (parts.p) {
    lines.push(
      `let param = p[index];`,
      `let mHat = ${parts.m ? "mNew" : "m[index]"} / step[${c1}];`,
      `let vHat = ${parts.v ? "vNew" : "v[index]"} / step[${c2}];`,
      `let root = sqrt(vHat);`,
      `let denominator = root + ${f32(eps)};`,
      `var update = mHat / denominator;`,
      ...(decay > 0 ? [`let decayed = param * ${f32(decay)};`, `update = update + decayed;`] : []),
      `let scaled = update * select(0.0, step[${lr}], ok);`,
      set.p("param - scaled"),
    );
  }
  return lines.map((line) => `      ${line}`).join("\n");
}

/** One of the three programs of the update out of place: the new m, v or p as its output. */
function partProgram(part: "m" | "v" | "p", size: number, settings: AdamWSettings) {
  const write = (value: string) => `result[index] = ${value};`;
  const none = () => "";
  return {
    name: `adamw_${part}_${settingsKey(settings)}`,
    inputs: part === "p" ? ["p", "m", "v", "step"] : ["g", part, "step"],
    workgroupSize: WORKGROUP,
    workgroups: workgroupsFor(size, WORKGROUP),
    uniforms: { count: ["i32", size] as ["i32", number] },
    code: () => `
    fn main(index : i32) {
      if (index < uniforms.count) {
${
      updateCode(settings, { m: part === "m", v: part === "v", p: part === "p" }, {
        m: part === "m" ? write : none,
        v: part === "v" ? write : none,
        p: write,
      })
    }
      }
    }`,
  };
}

/** The WGSL of the in-place update: p, m and v read-write, g and the step's values read-only. */
function inPlaceShader(settings: AdamWSettings): string {
  const write = (name: string) => (value: string) => `${name}[index] = ${value};`;
  return `
  @group(0) @binding(0) var<storage, read_write> p : array<f32>;
  @group(0) @binding(1) var<storage, read_write> m : array<f32>;
  @group(0) @binding(2) var<storage, read_write> v : array<f32>;
  @group(0) @binding(3) var<storage, read> g : array<f32>;
  @group(0) @binding(4) var<storage, read> step : array<f32>;

  @compute @workgroup_size(${WORKGROUP})
  fn main(@builtin(global_invocation_id) id : vec3<u32>,
          @builtin(num_workgroups) groups : vec3<u32>) {
    let index = id.y * groups.x * ${WORKGROUP}u + id.x;
    if (index < arrayLength(&p)) {
${
    updateCode(settings, { m: true, v: true, p: true }, {
      m: write("m"),
      v: write("v"),
      p: write("p"),
    })
  }
    }
  }`;
}

/** What tfjs-backend-webgpu 4.22 keeps of a tensor's data (`tensorMap`'s values). */
interface TensorData {
  dtype: string;
  refCount: number;
  values: unknown;
  resource: unknown;
}

/** What the in-place update uses of tfjs-backend-webgpu 4.22's backend (`backend_webgpu.js`). */
interface WebgpuBackend {
  device: GPUDevice;
  tensorMap: { get(dataId: object): TensorData | undefined };
  uploadToGPU(dataId: object): void;
  ensureCommandEncoderReady(): void;
  endComputePassEncoder(): void;
  submitQueue(): void;
  commandEncoder: GPUCommandEncoder | null;
  computePassEncoder: GPUComputePassEncoder | null;
  dispatchCountInPass: number;
  commandQueueOwnedIds: WeakSet<object>;
  /** Set while tfjs times its kernels (`tf.profile`, `tf.time`). */
  activeTimers: unknown[] | null | undefined;
}

/** A device's layout of the in-place program's bindings and its pipelines, by settings. */
interface DevicePrograms {
  layout: GPUBindGroupLayout;
  /**
   * By the settings as numbers: a train step asks once per parameter, and `settingsKey` (float32
   * bits, strings, a regex) cost about a microsecond of the step's host time per dispatch on
   * lavapipe. Settings that round to the same float32s compile one program twice, harmlessly.
   */
  pipelines: Map<string, GPUComputePipeline>;
}

const programs = new WeakMap<GPUDevice, DevicePrograms>();

/** A parameter's bind group, for as long as the buffers it binds are the same. */
interface CachedGroup {
  buffers: GPUBuffer[];
  bytes: number;
  group: GPUBindGroup;
}

/** By the parameter's buffer. */
const groups = new WeakMap<GPUBuffer, CachedGroup>();

function devicePrograms(device: GPUDevice): DevicePrograms {
  let held = programs.get(device);
  if (!held) {
    const storage = (type: GPUBufferBindingType) => ({
      visibility: GPUShaderStage.COMPUTE,
      buffer: { type },
    });
    const layout = device.createBindGroupLayout({
      entries: [
        { binding: 0, ...storage("storage") },
        { binding: 1, ...storage("storage") },
        { binding: 2, ...storage("storage") },
        { binding: 3, ...storage("read-only-storage") },
        { binding: 4, ...storage("read-only-storage") },
      ],
    });
    held = { layout, pipelines: new Map() };
    programs.set(device, held);
  }
  return held;
}

function pipelineFor(device: GPUDevice, settings: AdamWSettings): GPUComputePipeline {
  const { layout, pipelines } = devicePrograms(device);
  const { b1, b2, eps, decay } = settings;
  const key = `${b1} ${b2} ${eps} ${decay}`;
  let pipeline = pipelines.get(key);
  if (!pipeline) {
    pipeline = device.createComputePipeline({
      layout: device.createPipelineLayout({ bindGroupLayouts: [layout] }),
      compute: {
        module: device.createShaderModule({ code: inPlaceShader(settings) }),
        entryPoint: "main",
      },
    });
    pipelines.set(key, pipeline);
  }
  return pipeline;
}

function groupFor(device: GPUDevice, buffers: GPUBuffer[], bytes: number): GPUBindGroup {
  const held = groups.get(buffers[0]!);
  if (held && held.bytes === bytes && held.buffers.every((b, i) => b === buffers[i])) {
    return held.group;
  }
  const sizes = [bytes, bytes, bytes, bytes, Object.keys(STEP_VALUES).length * 4];
  const group = device.createBindGroup({
    layout: devicePrograms(device).layout,
    entries: buffers.map((buffer, i) => ({
      binding: i,
      resource: { buffer, offset: 0, size: sizes[i]! },
    })),
  });
  groups.set(buffers[0]!, { buffers, bytes, group });
  return group;
}

/**
 * The update of `p`, `m` and `v` written in place in one dispatch, or false (nothing done) where
 * it may not be: a variable's buffer shared with another tensor, a buffer not float32, tfjs timing
 * its kernels.
 */
function updateInPlace(
  p: tf.Variable,
  g: tf.Tensor,
  m: tf.Variable,
  v: tf.Variable,
  step: tf.Tensor1D,
  settings: AdamWSettings,
): boolean {
  const backend = tf.backend() as unknown as WebgpuBackend;
  if (backend.activeTimers || g.size !== p.size || step.size < 5) return false;
  const ids = [p, m, v, g, step].map((t) => t.dataId as object);
  if (new Set(ids).size !== ids.length) return false;
  const data = ids.map((id) => backend.tensorMap.get(id));
  for (let i = 0; i < data.length; i++) {
    const held = data[i];
    if (!held || held.dtype !== "float32") return false;
    if (i < 3 && held.refCount !== 1) return false; // another tensor sees this buffer
  }
  for (const id of ids) backend.uploadToGPU(id);
  const buffers = data.map((held) => held!.resource);
  if (!buffers.every((b) => b instanceof GPUBuffer)) return false;
  // what tfjs read back earlier and keeps on the CPU is stale once the buffer is written
  for (const held of data.slice(0, 3)) held!.values = null;
  const { device } = backend;
  const pipeline = pipelineFor(device, settings);
  const group = groupFor(device, buffers as GPUBuffer[], p.size * 4);
  const workgroups = workgroupsFor(p.size, WORKGROUP);
  const x = Math.min(workgroups, MAX_WORKGROUPS);
  backend.ensureCommandEncoderReady();
  if (!backend.computePassEncoder) {
    backend.computePassEncoder = backend.commandEncoder!.beginComputePass({});
  }
  const pass = backend.computePassEncoder;
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, group);
  pass.dispatchWorkgroups(x, Math.ceil(workgroups / x));
  for (const id of ids) backend.commandQueueOwnedIds.add(id);
  countDispatch(backend); // the submit rule of tfjs's kernels (webgpu_dispatch.ts)
  return true;
}

/** Whether the fused update runs here: on webgpu. */
export function fusedAdamWAvailable(): boolean {
  return wgslAvailable();
}

/**
 * One AdamW update of `p`, `m` and `v` with gradient `g`, gated and clipped: in place in one
 * dispatch where the variables' buffers are theirs alone, else three programs whose outputs they
 * take (`assign`); `step` [5] (or longer) holds the update's values at `STEP_VALUES` (clip,
 * applied 1 or 0, c₁, c₂, lr). Only where `fusedAdamWAvailable()`. Call inside `tf.tidy`.
 *
 * @example
 * ```ts
 * tf.tidy(() => fusedAdamW(p, g, m, v, step, { b1: 0.9, b2: 0.999, eps: 1e-8, decay: 0 }));
 * ```
 */
export function fusedAdamW(
  p: tf.Variable,
  g: tf.Tensor,
  m: tf.Variable,
  v: tf.Variable,
  step: tf.Tensor1D,
  settings: AdamWSettings,
): void {
  if (updateInPlace(p, g, m, v, step, settings)) return;
  const run = (part: "m" | "v" | "p", inputs: tf.Tensor[]) =>
    runFused({ ...partProgram(part, p.size, settings), outputShape: p.shape }, inputs);
  m.assign(run("m", [g, m, step]));
  v.assign(run("v", [g, v, step]));
  p.assign(run("p", [p, m, v, step]));
}

/** Where the step's values put the count of non-finite updates in a row after this one. */
export const IN_ROW_VALUE = 5;

/** What an update's checks read: see {@linkcode adamWStepValues}. */
export interface StepInputs {
  /** The update's loss and gradient norm, scalars. */
  loss: tf.Tensor;
  norm: tf.Tensor;
  /** The schedule's tables of learning rates and bias corrections, [rows]. */
  lr: tf.Tensor1D;
  c1: tf.Tensor1D;
  c2: tf.Tensor1D;
  /** The table's row, int32 [1]. */
  index: tf.Tensor;
  /** maxNorm of the clipping; 0: none. */
  clipGradNorm: number;
  /** Non-finite updates in a row before this one (a scalar) and the limit; null: no limit. */
  faults: { before: tf.Tensor; maxInRow: number } | null;
}

/**
 * An update's checks and values on the device in one dispatch instead of 11 to 16 of tfjs's ops:
 * float32 [6], the `step` of {@linkcode fusedAdamW} at `STEP_VALUES` (clip, applied 1 or 0, c₁,
 * c₂, lr) and, at {@linkcode IN_ROW_VALUE}, the non-finite updates in a row after this one (0
 * without `faults`). The same float32 operations as the ops of `DeviceUpdates` (`optim.ts`):
 * applied = loss and norm finite (and before < maxInRow); clip = min(maxNorm / (norm + 1e-6), 1)
 * (NaN where norm is, as tfjs's `Minimum`) or 1; the tables' values at `index`; (before + 1) ·
 * (1 − applied). Webgpu only.
 *
 * @example
 * ```ts
 * const step = adamWStepValues({ loss, norm, lr, c1, c2, index, clipGradNorm: 1, faults: null });
 * ```
 */
export function adamWStepValues(inputs: StepInputs): tf.Tensor1D {
  const { loss, norm, lr, c1, c2, index, clipGradNorm, faults } = inputs;
  const { clip, applied, c1: C1, c2: C2, lr: LR } = STEP_VALUES;
  const tensors = [loss, norm, lr, c1, c2, index, ...(faults ? [faults.before] : [])];
  const names = ["loss", "norm", "lrs", "c1s", "c2s", "scheduleRow", ...(faults ? ["before"] : [])];
  const finite = (x: string) => `((bitcast<u32>(${x}) & 0x7f800000u) != 0x7f800000u)`;
  return runFused({
    name: `adamw_step_values_${clipGradNorm > 0 ? "clip" : "noclip"}_${faults ? "faults" : "free"}`,
    inputs: names,
    outputShape: [IN_ROW_VALUE + 1],
    workgroupSize: 1,
    workgroups: 1,
    uniforms: {
      count: ["i32", 1],
      maxNorm: ["f32", clipGradNorm],
      maxInRow: ["f32", faults?.maxInRow ?? 0],
    },
    code: () => `
  fn main(index : i32) {
    if (index >= uniforms.count) {
      return;
    }
    let l = f32(loss[0]);
    let n = f32(norm[0]);
    var ok = ${finite("l")} && ${finite("n")};
    ${faults ? "let earlier = f32(before[0]);\n    ok = ok && earlier < uniforms.maxInRow;" : ""}
    let applied = select(0.0, 1.0, ok);
    var scale = 1.0;
    ${
      clipGradNorm > 0
        ? `let shifted = n + ${f32(1e-6)};
    let ratio = uniforms.maxNorm / shifted;
    scale = select(min(ratio, 1.0), ratio, (bitcast<u32>(ratio) & 0x7fffffffu) > 0x7f800000u);`
        : ""
    }
    let at = scheduleRow[0];
    result[${clip}] = scale;
    result[${applied}] = applied;
    result[${C1}] = f32(c1s[at]);
    result[${C2}] = f32(c2s[at]);
    result[${LR}] = f32(lrs[at]);
    ${
      faults
        ? `let next = earlier + 1.0;
    let rest = 1.0 - applied;
    result[${IN_ROW_VALUE}] = next * rest;`
        : `result[${IN_ROW_VALUE}] = 0.0;`
    }
  }`,
  }, tensors) as tf.Tensor1D;
}

/**
 * The schedule's row after the update whose values `step` holds ({@linkcode adamWStepValues}):
 * `index` + 1 where it applied, else `index`; int32 [1], in one dispatch. Webgpu only.
 *
 * @example
 * ```ts
 * schedule.index.assign(adamWNextRow(schedule.index, step));
 * ```
 */
export function adamWNextRow(index: tf.Tensor, step: tf.Tensor1D): tf.Tensor {
  return runFused({
    name: "adamw_next_row",
    inputs: ["scheduleRow", "values"],
    outputShape: [1],
    dtype: "int32",
    workgroupSize: 1,
    workgroups: 1,
    uniforms: { count: ["i32", 1] },
    code: () => `
  fn main(index : i32) {
    if (index >= uniforms.count) {
      return;
    }
    result[0] = scheduleRow[0] + select(0, 1, f32(values[${STEP_VALUES.applied}]) > 0.0);
  }`,
  }, [index, step]);
}
