/**
 * AdamW (decoupled weight decay, Loshchilov & Hutter) with global gradient-norm clipping and a
 * learning-rate schedule: linear warm-up, then constant, linear or cosine decay to 0. Written out
 * rather than taken from `tf.train.adam` because that has no decoupled decay and no way to save
 * and restore its moments for a checkpoint.
 *
 * Clipping follows PyTorch's `clip_grad_norm_`: scale = min(1, maxNorm / (‖g‖ + 1e-6)). Weight
 * decay skips 1-D parameters (norm gains), as Hugging Face's trainer does.
 *
 * @module
 */

import { tf } from "./tf.ts";
import type { KernelSet } from "./kernels/types.ts";
import type { Optimizer } from "../../dsl/schema.ts";
import type { Resolved } from "../../dsl/objectives.ts";

/**
 * The optimiser's settings, every default resolved (the plan's `optimizer`; the trainer, not
 * AdamW, acts on `maxSkippedUpdates`).
 */
export type AdamWOptions = Omit<Resolved<Optimizer>, "maxSkippedUpdates">;

/** AdamW's state: the update count and both moments of every parameter. */
export interface AdamW {
  options: AdamWOptions;
  /** Total updates the schedule spans (for linear and cosine decay). */
  totalUpdates: number;
  /** Updates taken so far. */
  t: number;
  m: Record<string, tf.Variable>;
  v: Record<string, tf.Variable>;
}

/** A fresh AdamW over `params`, whose schedule spans `totalUpdates` updates. */
export function adamW(
  params: Record<string, tf.Variable>,
  options: AdamWOptions,
  totalUpdates: number,
): AdamW {
  const zeros = () =>
    Object.fromEntries(
      Object.entries(params).map(([name, p]) => {
        const zero = tf.zerosLike(p);
        const moment = tf.variable(zero, false);
        zero.dispose();
        return [name, moment];
      }),
    );
  return { options, totalUpdates, t: 0, m: zeros(), v: zeros() };
}

/** The learning rate of update number `t` (0-based). */
export function learningRate(options: AdamWOptions, t: number, totalUpdates: number): number {
  const { lr, warmupSteps, schedule } = options;
  if (t < warmupSteps) return (lr * (t + 1)) / warmupSteps;
  const span = Math.max(1, totalUpdates - warmupSteps);
  const progress = Math.min(1, (t - warmupSteps) / span);
  switch (schedule) {
    case "constant":
      return lr;
    case "linear":
      return lr * (1 - progress);
    case "cosine":
      return lr * 0.5 * (1 + Math.cos(Math.PI * progress));
  }
}

/**
 * The global L2 norm of `grads` (a scalar tensor; the caller disposes it). The squares are added
 * one by one, not with `tf.addN`: webgpu's AddN binds every input as a storage buffer, and from 8
 * inputs on it exceeds WebGPU's default limit of 8 per shader stage, so its pipeline fails and it
 * returns whatever its output buffer held (tests/runtime/engine/webgpu_test.ts). On cpu and wasm both
 * ways add in the same order, in float32.
 */
export function globalNorm(grads: Record<string, tf.Tensor>): tf.Scalar {
  return tf.tidy(() => {
    // each square freed once summed: held to the end, they were a second copy of the gradients
    const squares = Object.values(grads).map((g) => tf.tidy(() => tf.sum(tf.square(g))));
    return tf.sqrt(squares.reduce((sum, s) => tf.add(sum, s))) as tf.Scalar;
  });
}

/** What one AdamW update did. */
export interface AdamWUpdate {
  /** The gradient's global norm before clipping, ‖g‖. */
  gradNorm: number;
  /**
   * The norm of the gradient the update used, after clipping: ‖g‖ · min(1, maxNorm / (‖g‖ + 1e-6))
   * (‖g‖ itself without clipping); at most `clipGradNorm`. Not finite for a skipped update.
   */
  gradNormClipped: number;
  /** The learning rate of the update. */
  lr: number;
  /** The gradient was not finite, so nothing changed. */
  skipped: boolean;
}

/**
 * One AdamW update of `params` with `grads` (disposed by the caller), after clipping their global
 * norm; each parameter's update is the kernel set's `adamW` (on wasm one SIMD pass, bit-identical
 * to the tfjs ops). Returns the norm before and after clipping and the learning rate used. A
 * gradient whose norm is not finite (a NaN or an infinity anywhere) is not applied: `skipped` is
 * true and neither the parameters nor the optimiser's state change.
 *
 * @example
 * ```ts
 * const { kernels } = await useBackend("wasm");
 * const { gradNorm, gradNormClipped, lr, skipped } = await adamWStep(kernels, state, params, grads);
 * ```
 */
export async function adamWStep(
  kernels: KernelSet,
  state: AdamW,
  params: Record<string, tf.Variable>,
  grads: Record<string, tf.Tensor>,
): Promise<AdamWUpdate> {
  const { betas: [b1, b2], eps, weightDecay, clipGradNorm } = state.options;
  const normTensor = globalNorm(grads);
  const gradNorm = (await normTensor.data())[0]!; // async: webgpu cannot read synchronously
  normTensor.dispose();
  if (!Number.isFinite(gradNorm)) {
    return {
      gradNorm,
      gradNormClipped: gradNorm,
      lr: learningRate(state.options, state.t, state.totalUpdates),
      skipped: true,
    };
  }
  const clip = clipGradNorm > 0 ? Math.min(1, clipGradNorm / (gradNorm + 1e-6)) : 1;
  const lr = learningRate(state.options, state.t, state.totalUpdates);
  state.t += 1;
  const c1 = 1 - b1 ** state.t;
  const c2 = 1 - b2 ** state.t;
  tf.tidy(() => {
    for (const [name, p] of Object.entries(params)) {
      const g = grads[name];
      if (!g) continue;
      const decay = weightDecay > 0 && p.rank > 1 ? weightDecay : 0; // not on norm gains
      kernels.adamW(p, g, state.m[name]!, state.v[name]!, { b1, b2, c1, c2, eps, lr, clip, decay });
    }
  });
  return { gradNorm, gradNormClipped: gradNorm * clip, lr, skipped: false };
}

/** Frees the optimiser's moments. */
export function disposeAdamW(state: AdamW): void {
  tf.dispose([...Object.values(state.m), ...Object.values(state.v)]);
}
