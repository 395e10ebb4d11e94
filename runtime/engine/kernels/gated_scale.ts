/**
 * x · s where an update may apply and 0 where it may not, the flag a tensor on the device: the
 * first operation of AdamW's update on the device (`adamWDeviceStep()` in `optim.ts`), which
 * clips a gradient that may hold a NaN or an infinity and must then contribute nothing, decided
 * without reading the gradient's norm back to the host.
 *
 * `tf.where` cannot do it in one kernel: it broadcasts the scalar flag and the 0 to the
 * gradient's shape first (two more kernels per parameter). On webgpu a kernel of its own does it
 * in one dispatch (`webgpu_program.ts`), the clipping multiply it replaces: `x * s` in f32, the bits of tfjs's `Mul`.
 * Elsewhere it is `tf.where` over `tf.mul`, the same values.
 *
 * @module
 */

import { tf } from "../tf.ts";
import { runFused, wgslAvailable, workgroupsFor } from "./webgpu_program.ts";

/** Elements per workgroup, as tfjs's own element-wise programs. */
const WORKGROUP = 128;

/**
 * out[i] = gate > 0 ? x[i] · scale : 0, `scale` and `gate` scalars. Each is read through `f32()`,
 * which takes what the buffer holds: a flag cast from bool shares its int32 buffer (tfjs's `Cast`
 * to float32 is a view).
 */
const CODE = `
  fn main(index : i32) {
    if (index < uniforms.count) {
      var value = 0.0;
      if (f32(gate[0]) > 0.0) {
        value = f32(x[index]) * f32(scale[0]);
      }
      result[index] = value;
    }
  }`;

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
  if (wgslAvailable()) {
    return runFused({
      name: "gated_scale",
      inputs: ["x", "scale", "gate"],
      outputShape: x.shape,
      workgroupSize: WORKGROUP,
      workgroups: workgroupsFor(x.size, WORKGROUP),
      uniforms: { count: ["i32", x.size] },
      code: CODE,
    }, [x, s, ok]);
  }
  return tf.tidy(() => {
    const flag = tf.broadcastTo(tf.reshape(tf.greater(ok, 0), []), x.shape);
    return tf.where(flag, tf.mul(x, tf.reshape(s, [])), tf.zerosLike(x));
  });
}
