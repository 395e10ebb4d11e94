/**
 * AdamW's update of one parameter on webgpu in three dispatches instead of seventeen: one program
 * each for the first moment, the second moment and the parameter (a tfjs-webgpu program has one
 * output, and p, m and v are three variables), for the optimiser's device path
 * (`DeviceUpdates` in `optim.ts`). The host cost of a dispatch (≈ 60–200 µs with tfjs-webgpu,
 * docs/tfjs.md) is what a train step pays per parameter, so this is most of an update's host time.
 *
 * Each program computes what the tfjs ops of `adamWOps` (`tfjs.ts`) compute, in the same order,
 * each operation in f32: the gradient gated and clipped (`gated_scale.ts`), m·β₁ + g'·(1−β₁),
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

/** Elements per workgroup, as tfjs's own element-wise programs. */
const WORKGROUP = 128;

/** The index of each of the step's values in the `step` tensor. */
export const STEP_VALUES = { clip: 0, applied: 1, c1: 2, c2: 3, lr: 4 } as const;

/** An f32 literal with exactly the bits of `value` rounded to float32. */
function f32(value: number): string {
  const bits = new Uint32Array(new Float32Array([value]).buffer)[0]!;
  return `bitcast<f32>(0x${bits.toString(16)}u)`;
}

/** Which of the three programs. */
type Part = "m" | "v" | "p";

/** The settings a program is built for (part of its shader's key). */
interface Settings {
  b1: number;
  b2: number;
  eps: number;
  decay: number;
}

/** A tfjs-webgpu program (the fields `runWebGPUProgram` reads) for one part of the update. */
class AdamWProgram {
  readonly variableNames: string[];
  readonly size = true;
  readonly workgroupSize: [number, number, number] = [WORKGROUP, 1, 1];
  readonly outputShape: number[];
  readonly dispatchLayout: { x: number[] };
  readonly dispatch: [number, number, number];
  readonly shaderKey: string;

  constructor(readonly part: Part, shape: number[], readonly settings: Settings) {
    this.variableNames = part === "p" ? ["p", "m", "v", "step"] : ["g", part, "step"];
    this.outputShape = shape;
    this.dispatchLayout = { x: shape.map((_, i) => i) };
    const size = shape.reduce((a, b) => a * b, 1);
    this.dispatch = [Math.ceil(size / WORKGROUP), 1, 1];
    const { b1, b2, eps, decay } = settings;
    this.shaderKey = `giftwrap_adamw_${part}_${[b1, b2, eps, decay].map(f32).join("_")}`;
  }

  getUserCode(): string {
    const { b1, b2, eps, decay } = this.settings;
    const { clip, applied, c1, c2, lr } = STEP_VALUES;
    const gated = `
          let ok = getStep(${applied}) > 0.0;
          var grad = 0.0;
          if (ok) {
            grad = getGByOutputIndex(index) * getStep(${clip});
          }`;
    const body = {
      m: `${gated}
          let kept = getMByOutputIndex(index) * select(1.0, ${f32(b1)}, ok);
          let added = grad * select(0.0, ${f32(1 - b1)}, ok);
          setOutputAtIndex(index, kept + added);`,
      v: `${gated}
          let kept = getVByOutputIndex(index) * select(1.0, ${f32(b2)}, ok);
          let square = grad * grad;
          let added = square * select(0.0, ${f32(1 - b2)}, ok);
          setOutputAtIndex(index, kept + added);`,
      p: `
          let ok = getStep(${applied}) > 0.0;
          let param = getPByOutputIndex(index);
          let mHat = getMByOutputIndex(index) / getStep(${c1});
          let vHat = getVByOutputIndex(index) / getStep(${c2});
          let root = sqrt(vHat);
          let denominator = root + ${f32(eps)};
          var update = mHat / denominator;
          ${
        decay > 0
          ? `let decayed = param * ${f32(decay)};\n          update = update + decayed;`
          : ""
      }
          let scaled = update * select(0.0, getStep(${lr}), ok);
          setOutputAtIndex(index, param - scaled);`,
    }[this.part];
    return `
      fn main(index : i32) {
        if (index < uniforms.size) {${body}
        }
      }
    `;
  }
}

/** The webgpu backend's side of it that the kernels use. */
interface WebgpuBackend {
  runWebGPUProgram(program: AdamWProgram, inputs: tf.TensorInfo[], dtype: "float32"): tf.TensorInfo;
}

const KERNEL = {
  m: "GiftwrapAdamWFirstMoment",
  v: "GiftwrapAdamWSecondMoment",
  p: "GiftwrapAdamWParam",
};

/**
 * Registers the three programs as webgpu kernels (`useBackend("webgpu")` calls it; again is a
 * no-op).
 *
 * @example
 * ```ts
 * registerWebgpuAdamW();
 * ```
 */
export function registerWebgpuAdamW(): void {
  for (const part of ["m", "v", "p"] as const) {
    if (tf.getKernel(KERNEL[part], "webgpu")) continue;
    tf.registerKernel({
      kernelName: KERNEL[part],
      backendName: "webgpu",
      kernelFunc: ({ inputs, backend, attrs }) => {
        const named = inputs as unknown as Record<string, tf.TensorInfo>;
        const order = part === "p" ? ["p", "m", "v", "step"] : ["g", part, "step"];
        const tensors = order.map((name) => named[name]!);
        const program = new AdamWProgram(
          part,
          [...tensors[0]!.shape],
          attrs as unknown as Settings,
        );
        return (backend as unknown as WebgpuBackend).runWebGPUProgram(program, tensors, "float32");
      },
    });
  }
}

/** Whether the fused update runs here: on webgpu, once `registerWebgpuAdamW()` has run. */
export function fusedAdamWAvailable(): boolean {
  return tf.getBackend() === "webgpu" && tf.getKernel(KERNEL.p, "webgpu") !== undefined;
}

/**
 * One AdamW update of `p`, `m` and `v` (assigned in place) with gradient `g`, gated and clipped,
 * in three dispatches; `step` [5] holds the update's values at `STEP_VALUES` (clip, applied 1 or 0,
 * c₁, c₂, lr). Only where `fusedAdamWAvailable()`. Call inside `tf.tidy`.
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
  settings: Settings,
): void {
  const attrs = settings as unknown as tf.NamedAttrMap;
  const run = (part: Part, inputs: Record<string, tf.Tensor>) =>
    tf.engine().runKernel(KERNEL[part], inputs as tf.NamedTensorMap, attrs) as tf.Tensor;
  m.assign(run("m", { g, m, step }));
  v.assign(run("v", { g, v, step }));
  p.assign(run("p", { p, m, v, step }));
}
