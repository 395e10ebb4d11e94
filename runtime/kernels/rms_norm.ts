/**
 * RMSNorm (x / rms(x) · w over the last axis) and its gradient as plain loops over the values, for
 * the `wasm` and `cpu` backends.
 *
 * Why: as tfjs ops it is 5 kernels forward and ~12 backward, several of them broadcasts that
 * wasm runs on slow generic paths, on the small [B·T, d] activations of the models trained
 * here: each norm cost far more in dispatch than in arithmetic. The same math, accumulated in
 * float64 (tests/runtime/kernels/).
 *
 * The loops read and write the backend's memory in place (wasm's heap, cpu's arrays): the input is
 * saved for the gradient rather than copied out, and outputs are fresh `fill` tensors written once.
 * Copies of fresh 655 KB arrays in and out made the front door's norm ~20% slower.
 *
 * @module
 */

import { tf } from "../backend.ts";
import { backendValues } from "./memory.ts";

/** Whether the current backend's values are cheap to read and write from JavaScript. */
export function fusedRmsNormRuns(): boolean {
  const backend = tf.getBackend();
  return backend === "wasm" || backend === "cpu";
}

/** x [N, d] normalised by each row's root mean square (plus `eps`), times the gain w [d]. */
export function fusedRmsNorm(x: tf.Tensor2D, w: tf.Tensor, eps: number): tf.Tensor2D {
  const [rows, d] = x.shape;
  const f = tf.customGrad(
    ((xt: tf.Tensor2D, wt: tf.Tensor1D, save: tf.GradSaveFunc) => {
      save([xt, wt]);
      const inverse = new Float64Array(rows); // 1 / rms of each row
      const value = tf.fill([rows, d], 0) as tf.Tensor2D; // fresh, written once here
      const [xs, ws, out] = backendValues([xt, wt, value]);
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
          const [xs, ws, dys, dx, dwOut] = backendValues([saved[0]!, saved[1]!, dy, dxt, dwt]);
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
