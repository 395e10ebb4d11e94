/**
 * RMSNorm (x / rms(x) · w over the last axis) and its gradient as loops over the values, for the
 * `wasm` kernel set (simd.wat's, `simdRmsNorm`) and the `cpu` one (plain JavaScript, `loopRmsNorm`).
 *
 * Why: as tfjs ops it is 5 kernels forward and ~12 backward, several of them broadcasts that
 * wasm runs on slow generic paths, on the small [B·T, d] activations of the models trained
 * here: each norm cost far more in dispatch than in arithmetic. The same math; the JavaScript
 * accumulates in float64, the SIMD loops in float32 lanes (dw's sum over rows in float64), so
 * both agree with the tfjs ops to float32 rounding (tests/runtime/engine/kernels/).
 *
 * The loops read and write the backend's memory in place (wasm's heap, cpu's arrays): the input is
 * saved for the gradient rather than copied out, and outputs are fresh `fill` tensors written once:
 * copying fresh arrays out and back in cost more than the loops (bench/RESULTS.md, "kernel
 * choices").
 *
 * @module
 */

import { tf } from "../tf.ts";
import type { Values } from "./memory.ts";
import type { BackendKernels } from "./simd.ts";

/**
 * x [N, d] normalised by each row's root mean square (plus `eps`), times the gain w [d], as
 * JavaScript loops over the backend's memory (`values`).
 */
export function loopRmsNorm(
  values: Values,
  x: tf.Tensor2D,
  w: tf.Tensor,
  eps: number,
): tf.Tensor2D {
  const [rows, d] = x.shape;
  const f = tf.customGrad(
    ((xt: tf.Tensor2D, wt: tf.Tensor1D, save: tf.GradSaveFunc) => {
      save([xt, wt]);
      const inverse = new Float64Array(rows); // 1 / rms of each row
      const value = tf.fill([rows, d], 0) as tf.Tensor2D; // fresh, written once here
      const [xs, ws, out] = values([xt, wt, value]);
      for (let n = 0; n < rows; n++) {
        let sum = 0;
        for (let i = 0; i < d; i++) sum += xs![n * d + i]! * xs![n * d + i]!;
        const r = 1 / Math.sqrt(sum / d + eps);
        inverse[n] = r;
        for (let i = 0; i < d; i++) out![n * d + i] = xs![n * d + i]! * r * ws![i]!;
      }
      return {
        value,
        gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
          const dxt = tf.fill([rows, d], 0);
          const dwt = tf.fill(wt.shape, 0);
          const [xs, ws, dys, dx, dwOut] = values([saved[0]!, saved[1]!, dy, dxt, dwt]);
          const dw = new Float64Array(d);
          for (let n = 0; n < rows; n++) {
            const r = inverse[n]!;
            let dot = 0; // Σ dy·w·x over the row
            for (let i = 0; i < d; i++) {
              const g = dys![n * d + i]!;
              dot += g * ws![i]! * xs![n * d + i]!;
              dw[i] = dw[i]! + g * xs![n * d + i]! * r;
            }
            const c = (r * r * r * dot) / d;
            for (let i = 0; i < d; i++) {
              dx![n * d + i] = r * ws![i]! * dys![n * d + i]! - xs![n * d + i]! * c;
            }
          }
          dwOut!.set(dw);
          return [dxt, dwt];
        },
      };
    }) as unknown as Parameters<typeof tf.customGrad>[0],
  );
  return f(x, w) as tf.Tensor2D;
}

/**
 * RMSNorm on the wasm backend: simd.wat's `rmsNorm` and `rmsNormBackward`, on the tensors
 * where the backend keeps them: several times faster than the JavaScript loops above, which V8
 * runs in float64 with a rounding per store.
 */
export function simdRmsNorm(
  simd: BackendKernels,
  x: tf.Tensor2D,
  w: tf.Tensor,
  eps: number,
): tf.Tensor2D {
  const { kernels, offset } = simd;
  const [rows, d] = x.shape;
  const f = tf.customGrad(
    ((xt: tf.Tensor2D, wt: tf.Tensor1D, save: tf.GradSaveFunc) => {
      save([xt, wt]);
      const value = tf.fill([rows, d], 0) as tf.Tensor2D;
      kernels.rmsNorm(offset(xt), offset(wt), offset(value), rows, d, eps);
      return {
        value,
        gradFunc: (dy: tf.Tensor, [xs, ws]: tf.Tensor[]) => {
          const dx = tf.fill([rows, d], 0);
          const dw = tf.fill(wt.shape, 0);
          const acc = tf.fill([2 * d], 0); // d float64 sums of dw
          kernels.rmsNormBackward(
            offset(xs!),
            offset(ws!),
            offset(dy),
            offset(dx),
            offset(dw),
            offset(acc),
            rows,
            d,
            eps,
          );
          acc.dispose();
          return [dx, dw];
        },
      };
    }) as unknown as Parameters<typeof tf.customGrad>[0],
  );
  return f(x, w) as tf.Tensor2D;
}
