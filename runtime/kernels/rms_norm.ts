/**
 * RMSNorm (x / rms(x) · w over the last axis) and its gradient as plain loops over the values, for
 * the `wasm` and `cpu` backends.
 *
 * Why: as tfjs ops it is 5 kernels forward and ~12 backward, several of them broadcasts that
 * wasm runs on slow generic paths, on the small [B·T, d] activations of the models trained
 * here: each norm cost far more in dispatch than in arithmetic. The same math, accumulated in
 * float64 (tests/runtime/kernels/).
 *
 * @module
 */

import { tf } from "../backend.ts";

/** Whether the current backend's values are cheap to read and write from JavaScript. */
export function fusedRmsNormRuns(): boolean {
  const backend = tf.getBackend();
  return backend === "wasm" || backend === "cpu";
}

/** x [N, d] normalised by each row's root mean square (plus `eps`), times the gain w [d]. */
export function fusedRmsNorm(x: tf.Tensor2D, w: tf.Tensor, eps: number): tf.Tensor2D {
  const [rows, d] = x.shape;
  const f = tf.customGrad(
    ((xt: tf.Tensor2D, wt: tf.Tensor1D) => {
      const xs = xt.dataSync() as Float32Array;
      const ws = wt.dataSync() as Float32Array;
      const inverse = new Float64Array(rows); // 1 / rms of each row
      const out = new Float32Array(rows * d);
      for (let n = 0; n < rows; n++) {
        let sum = 0;
        for (let i = 0; i < d; i++) sum += xs[n * d + i]! * xs[n * d + i]!;
        const r = 1 / Math.sqrt(sum / d + eps);
        inverse[n] = r;
        for (let i = 0; i < d; i++) out[n * d + i] = xs[n * d + i]! * r * ws[i]!;
      }
      return {
        value: tf.tensor2d(out, [rows, d]),
        gradFunc: (dy: tf.Tensor) => {
          const dys = dy.dataSync() as Float32Array;
          const dx = new Float32Array(rows * d);
          const dw = new Float64Array(d);
          for (let n = 0; n < rows; n++) {
            const r = inverse[n]!;
            let dot = 0; // Σ dy·w·x over the row
            for (let i = 0; i < d; i++) {
              const g = dys[n * d + i]!;
              dot += g * ws[i]! * xs[n * d + i]!;
              dw[i] = dw[i]! + g * xs[n * d + i]! * r;
            }
            const c = (r * r * r * dot) / d;
            for (let i = 0; i < d; i++) {
              dx[n * d + i] = r * ws[i]! * dys[n * d + i]! - xs[n * d + i]! * c;
            }
          }
          return [tf.tensor2d(dx, [rows, d]), tf.tensor(Float32Array.from(dw), wt.shape)];
        },
      };
    }) as unknown as Parameters<typeof tf.customGrad>[0],
  );
  return f(x, w) as tf.Tensor2D;
}
