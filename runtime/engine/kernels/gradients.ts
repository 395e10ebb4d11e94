/**
 * tfjs-core's gradients of `Mean`, `Sum`, `Square`, `Sqrt`, `Rsqrt` and `Sigmoid` (tfjs-core 4.22,
 * `gradients/*_grad.ts`), the same operations in the same order, without the tensors they make on
 * the CPU: `Mean` and `Sum` multiply dy by `ones(x.shape)` (6.27 MB uploaded per RMSNorm backward
 * of the large bench model on webgpu), the others take numbers (2, 1.5, 1) that tfjs turns into
 * fresh scalars every call.
 *
 * Here dy·ones(x.shape) is dy broadcast to x's shape (multiplying by 1 is exact, so the values are
 * the same bits) and the numbers are `deviceConstant`s: on every backend these gradients compute
 * exactly what tfjs's do; on webgpu nothing is uploaded.
 *
 * @module
 */

import { tf } from "../tf.ts";
import { deviceConstant } from "./constants.ts";

/** dy, reduced over `axis` of x, reshaped to keep those axes (size 1) and broadcast back to x. */
function spread(dy: tf.Tensor, x: tf.Tensor, axis: number | number[]): tf.Tensor {
  const axes = tf.util.parseAxisParam(axis, x.shape);
  const kept = x.shape.slice();
  for (const a of axes) kept[a] = 1;
  return tf.broadcastTo(tf.reshape(dy, kept), x.shape);
}

/** The number of values `Mean` averaged over `axis` of x. */
function reduceSize(x: tf.Tensor, axis: number | number[]): number {
  return tf.util.parseAxisParam(axis, x.shape).reduce((n, a) => n * x.shape[a]!, 1);
}

const GRADIENTS: tf.GradConfig[] = [
  {
    kernelName: tf.Mean,
    inputsToSave: ["x"],
    gradFunc: (dy, [x], attrs) => {
      const { axis } = attrs as unknown as { axis: number | number[] };
      return {
        x: () => tf.div(spread(dy as tf.Tensor, x!, axis), deviceConstant(reduceSize(x!, axis))),
      };
    },
  },
  {
    kernelName: tf.Sum,
    inputsToSave: ["x"],
    gradFunc: (dy, [x], attrs) => {
      const { axis } = attrs as unknown as { axis: number | number[] };
      return { x: () => spread(dy as tf.Tensor, x!, axis) };
    },
  },
  {
    kernelName: tf.Square,
    inputsToSave: ["x"],
    gradFunc: (dy, [x]) => ({
      x: () => tf.mul(dy as tf.Tensor, tf.mul(tf.cast(x!, "float32"), deviceConstant(2))),
    }),
  },
  {
    kernelName: tf.Sqrt,
    inputsToSave: ["x"],
    gradFunc: (dy, [x]) => ({
      x: () => tf.div(dy as tf.Tensor, tf.mul(tf.sqrt(tf.cast(x!, "float32")), deviceConstant(2))),
    }),
  },
  {
    kernelName: tf.Rsqrt,
    inputsToSave: ["x"],
    gradFunc: (dy, [x]) => ({
      x: () =>
        tf.neg(
          tf.div(dy as tf.Tensor, tf.mul(tf.pow(x!, deviceConstant(1.5)), deviceConstant(2))),
        ),
    }),
  },
  {
    kernelName: tf.Sigmoid,
    outputsToSave: [true],
    gradFunc: (dy, [y]) => ({
      x: () => tf.mul(dy as tf.Tensor, tf.mul(y!, tf.sub(deviceConstant(1), y!))),
    }),
  },
];

/**
 * Registers the gradients of this module in place of tfjs-core's (for every backend: they compute
 * the same values). `useBackend()` calls it.
 *
 * @example
 * ```ts
 * registerDeviceGradients();
 * tf.grad((x: tf.Tensor) => tf.mean(x))(tf.ones([4, 8])); // 1/32 everywhere, nothing uploaded
 * ```
 */
export function registerDeviceGradients(): void {
  for (const config of GRADIENTS) tf.registerGradient(config);
}

/** The kernels whose gradients {@linkcode registerDeviceGradients} replaces. */
export const DEVICE_GRADIENT_KERNELS: readonly string[] = GRADIENTS.map((g) => g.kernelName);
