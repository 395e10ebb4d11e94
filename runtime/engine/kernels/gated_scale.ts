/**
 * x · s where an update may apply and 0 where it may not, the flag a tensor on the device: the
 * first operation of AdamW's update on the device (`adamWDeviceStep()` in `optim.ts`), which
 * clips a gradient that may hold a NaN or an infinity and must then contribute nothing, decided
 * without reading the gradient's norm back to the host.
 *
 * `tf.where` cannot do it in one kernel: it broadcasts the scalar flag and the 0 to the
 * gradient's shape first (two more kernels per parameter). On webgpu a kernel of its own does it
 * in one dispatch, the clipping multiply it replaces: `x * s` in f32, the bits of tfjs's `Mul`.
 * Elsewhere it is `tf.where` over `tf.mul`, the same values.
 *
 * @module
 */

import { tf } from "../tf.ts";

/** The kernel's name in tfjs's registry. */
const GATED_SCALE = "GiftwrapGatedScale";

/** Elements per workgroup, as tfjs's own element-wise programs. */
const WORKGROUP = 128;

/**
 * A tfjs-webgpu program (the fields `runWebGPUProgram` reads): out[i] = gate > 0 ? x[i] · scale : 0,
 * `scale` and `gate` scalars. Inputs are read through tfjs's getters, which convert what the
 * buffer holds: a flag cast from bool shares its int32 buffer (tfjs's `Cast` to float32 is a view).
 */
class GatedScaleProgram {
  readonly variableNames = ["x", "scale", "gate"];
  readonly size = true;
  readonly workgroupSize: [number, number, number] = [WORKGROUP, 1, 1];
  readonly outputShape: number[];
  readonly dispatchLayout: { x: number[] };
  readonly dispatch: [number, number, number];
  readonly shaderKey = "giftwrap_gated_scale";

  constructor(shape: number[]) {
    this.outputShape = shape;
    this.dispatchLayout = { x: shape.map((_, i) => i) };
    const size = shape.reduce((a, b) => a * b, 1);
    this.dispatch = [Math.ceil(size / WORKGROUP), 1, 1];
  }

  getUserCode(): string {
    return `
      fn main(index : i32) {
        if (index < uniforms.size) {
          var value = 0.0;
          if (getGate() > 0.0) {
            value = getXByOutputIndex(index) * getScale();
          }
          setOutputAtIndex(index, value);
        }
      }
    `;
  }
}

/** The webgpu backend's side of it that the kernel uses. */
interface WebgpuBackend {
  runWebGPUProgram(
    program: GatedScaleProgram,
    inputs: tf.TensorInfo[],
    dtype: "float32",
  ): tf.TensorInfo;
}

/**
 * Registers the one-dispatch kernel on webgpu (`useBackend("webgpu")` calls it; again is a no-op).
 *
 * @example
 * ```ts
 * registerWebgpuGatedScale();
 * ```
 */
export function registerWebgpuGatedScale(): void {
  if (tf.getKernel(GATED_SCALE, "webgpu")) return;
  tf.registerKernel({
    kernelName: GATED_SCALE,
    backendName: "webgpu",
    kernelFunc: ({ inputs, backend }) => {
      const { x, scale, gate } = inputs as unknown as Record<string, tf.TensorInfo>;
      const program = new GatedScaleProgram([...x!.shape]);
      return (backend as unknown as WebgpuBackend).runWebGPUProgram(
        program,
        [x!, scale!, gate!],
        "float32",
      );
    },
  });
}

/**
 * `x · s` where `ok` (a float32 tensor of one element, 1 or 0) is 1, else 0 of `x`'s shape, even
 * where x is NaN or infinite; `s` a float32 tensor of one element. The product is float32's, the
 * bits of `tf.mul(x, s)`. Not differentiable.
 *
 * @example
 * ```ts
 * const clipped = gatedScale(grad, clip, applied); // 0 when `applied` is 0
 * ```
 */
export function gatedScale(x: tf.Tensor, s: tf.Tensor, ok: tf.Tensor): tf.Tensor {
  if (tf.getBackend() === "webgpu" && tf.getKernel(GATED_SCALE, "webgpu")) {
    return tf.tidy(() =>
      tf.engine().runKernel(GATED_SCALE, {
        x,
        scale: tf.reshape(s, []),
        gate: tf.reshape(ok, []),
      }) as tf.Tensor
    );
  }
  return tf.tidy(() => {
    const flag = tf.broadcastTo(tf.reshape(tf.greater(ok, 0), []), x.shape);
    return tf.where(flag, tf.mul(x, tf.reshape(s, [])), tf.zerosLike(x));
  });
}
