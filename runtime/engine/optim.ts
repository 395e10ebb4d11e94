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
import { deviceConstant } from "./kernels/constants.ts";
import { gatedScale } from "./kernels/gated_scale.ts";
import {
  adamWNextRow,
  adamWStepValues,
  fusedAdamW,
  fusedAdamWAvailable,
  IN_ROW_VALUE,
} from "./kernels/adamw_webgpu.ts";
import { sumOfSquaresNorm } from "./kernels/norm_webgpu.ts";
import { wgslAvailable } from "./kernels/webgpu_program.ts";
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
 * The global L2 norm of `grads` (a scalar tensor; the caller disposes it). On webgpu a few fused
 * programs (`kernels/norm_webgpu.ts`: ⌈n / 7⌉ + 1 dispatches where the ops take 3n), whose
 * float32 sums run in another fixed order: the norm differs from the ops' within float32 rounding.
 * Elsewhere the ops: each tensor's sum of squares, added one by one, not with `tf.addN` (webgpu's
 * AddN binds every input as a storage buffer, and from 8 inputs on it exceeds WebGPU's default
 * limit of 8 per shader stage, so its pipeline fails and it returns whatever its output buffer
 * held: tests/runtime/engine/webgpu_test.ts); on cpu and wasm both ways add in the same order, in
 * float32.
 */
export function globalNorm(grads: Record<string, tf.Tensor>): tf.Scalar {
  if (wgslAvailable() && Object.keys(grads).length > 0) {
    return sumOfSquaresNorm(Object.values(grads));
  }
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

/** Frees the optimiser's moments (and its tables on the device, when it made them). */
export function disposeAdamW(state: AdamW): void {
  tf.dispose([...Object.values(state.m), ...Object.values(state.v)]);
  disposeSchedule(state);
}

/**
 * AdamW's values of updates `base` … `base + size − 1` on the device, and the counter of updates
 * applied since `base` that picks a row: the learning rate and both bias corrections, computed on
 * the host in float64 as `adamWStep` computes them (the same float32 values its uniforms took)
 * and uploaded once, not per update.
 */
interface DeviceSchedule {
  base: number;
  size: number;
  /** [size] learningRate(base + i), 1 − β₁^(base + i + 1), 1 − β₂^(base + i + 1). */
  lr: tf.Tensor1D;
  c1: tf.Tensor1D;
  c2: tf.Tensor1D;
  /** [1] int32: updates applied since `base`. */
  index: tf.Variable;
  /** The `t` the counter stands at: a `t` set from elsewhere (a checkpoint) resets the counter. */
  t: number;
}

/** Rows a schedule table holds at least: rebuilt (4 uploads) once per this many updates. */
const SCHEDULE_ROWS = 1024;

const schedules = new WeakMap<AdamW, DeviceSchedule>();

function disposeSchedule(state: AdamW): void {
  const held = schedules.get(state);
  if (!held) return;
  tf.dispose([held.lr, held.c1, held.c2, held.index]);
  schedules.delete(state);
}

/** The device schedule of `state` ready for `updates` more updates from `state.t`. */
function scheduleFor(state: AdamW, updates: number): DeviceSchedule {
  const { t } = state;
  const held = schedules.get(state);
  if (held && t >= held.base && t + updates <= held.base + held.size) {
    if (held.t !== t) { // t set from a checkpoint: one upload
      tf.tidy(() => held.index.assign(tf.tensor1d([t - held.base], "int32")));
      held.t = t;
    }
    return held;
  }
  disposeSchedule(state);
  const { betas: [b1, b2] } = state.options;
  const size = Math.max(SCHEDULE_ROWS, updates);
  const lr = new Float32Array(size);
  const c1 = new Float32Array(size);
  const c2 = new Float32Array(size);
  for (let i = 0; i < size; i++) {
    lr[i] = learningRate(state.options, t + i, state.totalUpdates);
    c1[i] = 1 - b1 ** (t + i + 1);
    c2[i] = 1 - b2 ** (t + i + 1);
  }
  const made: DeviceSchedule = {
    base: t,
    size,
    lr: tf.tensor1d(lr),
    c1: tf.tensor1d(c1),
    c2: tf.tensor1d(c2),
    index: tf.tidy(() => tf.variable(tf.tensor1d([0], "int32"), false)),
    t,
  };
  schedules.set(state, made);
  return made;
}

/** Options of `deviceUpdates()`. */
export interface DeviceUpdatesOptions {
  /** Updates this batch of them may take at most (for the tables' rows). */
  updates: number;
  /**
   * Non-finite updates in a row before these (the trainer's count), and how many in a row stop
   * the run (`optimizer.maxSkippedUpdates`): once reached, no later update applies.
   * @default no limit
   */
  faults?: { inRow: number; maxInRow: number };
}

/**
 * AdamW updates whose checks run on the device, for a backend where every read of a value costs
 * milliseconds (webgpu): each update's gradient norm, its clipping scale and whether it applies
 * (loss and norm finite, the limit of non-finite updates in a row not reached) are tensors that
 * gate the update, so that a non-finite one changes neither the parameters nor the moments; the
 * learning rate and bias corrections come from tables on the device (`DeviceSchedule`), indexed by
 * a counter that advances only when an update applies. Nothing is read: the caller reads every
 * update's `[loss, norm]` (`pending`), with whatever else it needs, in one download, and hands
 * them to `settle()`, which does the host's accounting as `adamWStep` does (`t`, learning rate,
 * norms, skips) and returns the same `AdamWUpdate`s.
 *
 * Each parameter's update is the tfjs ops of `adamWOps` with the step's values as tensors, or on
 * webgpu one dispatch writing p, m and v in place (three where a variable's buffer is shared:
 * `kernels/adamw_webgpu.ts`) computing the same operations in the same order, the checks and the
 * step's values in one more and the schedule's row in another; the norm on webgpu is
 * `globalNorm`'s fused programs. Same bits as `adamWStep` and the tfjs kernel set's `adamW`, with one exception: the
 * clipping scale min(1, maxNorm / (‖g‖ + 1e-6)) is computed in float32 on the device, where
 * `adamWStep` computes it in float64 and rounds it once; where clipping acts the two may differ in
 * the last bit (the reported `gradNormClipped` is the host's, as before). (On a GPU whose shader
 * compiler contracts a multiply and an add, the webgpu programs may differ from the ops in the last
 * bit too; not on lavapipe.)
 *
 * @example
 * ```ts
 * const updates = deviceUpdates(run.optimizer, { updates: 4 });
 * updates.step(trained, grads, loss); // queued; loss and grads stay the caller's
 * const [l, norm] = await tf.concat(updates.pending.flat()).data(); // the one read
 * const [{ gradNorm, lr, skipped }] = updates.settle([[l, norm]]);
 * updates.dispose();
 * ```
 */
export class DeviceUpdates {
  readonly #state: AdamW;
  readonly #schedule: DeviceSchedule;
  readonly #faults: { inRow: number; maxInRow: number } | null;
  /** Non-finite updates in a row, on the device (float32 [], null without a limit). */
  #inRow: tf.Scalar | null = null;
  /** Each queued update's loss and gradient norm, scalars this object holds. */
  readonly pending: [tf.Scalar, tf.Scalar][] = [];

  constructor(state: AdamW, options: DeviceUpdatesOptions) {
    this.#state = state;
    this.#schedule = scheduleFor(state, options.updates);
    this.#faults = options.faults && Number.isFinite(options.faults.maxInRow)
      ? options.faults
      : null;
  }

  /**
   * Queues one update of `params` with `grads` whose loss is `loss` (both the caller's to free),
   * gated on the device.
   */
  step(
    params: Record<string, tf.Variable>,
    grads: Record<string, tf.Tensor>,
    loss: tf.Scalar,
  ): void {
    const { betas: [b1, b2], eps, weightDecay, clipGradNorm } = this.#state.options;
    const schedule = this.#schedule;
    const c = deviceConstant;
    const { norm, inRow } = tf.tidy(() => {
      const norm = globalNorm(grads);
      const at = schedule.index;
      if (fusedAdamWAvailable()) {
        // webgpu: the checks and the step's values in one dispatch, one dispatch a parameter, one
        // for the row (kernels/adamw_webgpu.ts)
        const faults = this.#faults
          ? { before: this.#inRow ?? c(this.#faults.inRow), maxInRow: this.#faults.maxInRow }
          : null;
        const { lr, c1, c2 } = schedule;
        const step = adamWStepValues({ loss, norm, lr, c1, c2, index: at, clipGradNorm, faults });
        for (const [name, p] of Object.entries(params)) {
          const g = grads[name];
          if (!g) continue;
          const decay = weightDecay > 0 && p.rank > 1 ? weightDecay : 0; // not on norm gains
          const [m, v] = [this.#state.m[name]!, this.#state.v[name]!];
          fusedAdamW(p, g, m, v, step, { b1, b2, eps, decay });
        }
        at.assign(adamWNextRow(at, step));
        if (!faults) return { norm };
        return { norm, inRow: tf.reshape(tf.slice(step, [IN_ROW_VALUE], [1]), []) as tf.Scalar };
      }
      let ok = tf.logicalAnd(tf.isFinite(loss), tf.isFinite(norm)) as tf.Scalar; // bool
      let inRow: tf.Scalar | null = null;
      if (this.#faults) {
        const before = this.#inRow ?? c(this.#faults.inRow);
        ok = tf.logicalAnd(ok, tf.less(before, c(this.#faults.maxInRow)));
        // 0 after an applied update, one more otherwise
        inRow = tf.mul(tf.add(before, c(1)), tf.sub(c(1), tf.cast(ok, "float32")));
      }
      const applied = tf.cast(ok, "float32"); // 1 or 0
      const row = (table: tf.Tensor1D) => tf.reshape(tf.gather(table, at), []);
      const clip = clipGradNorm > 0
        ? tf.minimum(tf.div(c(clipGradNorm), tf.add(norm, c(1e-6))), c(1))
        : c(1);
      const lr = tf.mul(row(schedule.lr), applied); // 0: p unchanged
      const c1 = row(schedule.c1);
      const c2 = row(schedule.c2);
      // a skipped update keeps the moments: m·1 + 0·0
      const beta1 = tf.where(ok, c(b1), c(1));
      const beta2 = tf.where(ok, c(b2), c(1));
      const rest1 = tf.mul(c(1 - b1), applied);
      const rest2 = tf.mul(c(1 - b2), applied);
      for (const [name, p] of Object.entries(params)) {
        const raw = grads[name];
        if (!raw) continue;
        const decay = weightDecay > 0 && p.rank > 1 ? weightDecay : 0; // not on norm gains
        const m = this.#state.m[name]!;
        const v = this.#state.v[name]!;
        const g = gatedScale(raw, clip, applied); // 0 when skipped, whatever the gradient held
        m.assign(tf.add(tf.mul(m, beta1), tf.mul(g, rest1)));
        v.assign(tf.add(tf.mul(v, beta2), tf.mul(tf.square(g), rest2)));
        const update = tf.div(tf.div(m, c1), tf.add(tf.sqrt(tf.div(v, c2)), c(eps)));
        const decayed = decay > 0 ? tf.mul(p, c(decay)) : null;
        p.assign(tf.sub(p, tf.mul(decayed ? tf.add(update, decayed) : update, lr)));
      }
      at.assign(tf.add(at, tf.cast(ok, "int32")));
      return inRow ? { norm, inRow } : { norm };
    }) as { norm: tf.Scalar; inRow?: tf.Scalar };
    if (this.#inRow) this.#inRow.dispose();
    this.#inRow = inRow ?? null;
    this.pending.push([tf.keep(tf.clone(loss)), norm]);
  }

  /**
   * The host's side of the queued updates, from each one's `[loss, norm]` as read: the same
   * `AdamWUpdate`s as `adamWStep` (NaN norms for a non-finite loss, whose norm it never took),
   * `state.t` advanced by the updates applied. Stops after the update that reaches the limit of
   * non-finite updates in a row: the device applied none after it.
   */
  settle(values: readonly (readonly [number, number])[]): AdamWUpdate[] {
    const state = this.#state;
    const { clipGradNorm } = state.options;
    let inRow = this.#faults?.inRow ?? 0;
    const out: AdamWUpdate[] = [];
    for (const [loss, norm] of values) {
      const lr = learningRate(state.options, state.t, state.totalUpdates);
      if (!Number.isFinite(loss) || !Number.isFinite(norm)) {
        const gradNorm = Number.isFinite(loss) ? norm : NaN;
        out.push({ gradNorm, gradNormClipped: gradNorm, lr, skipped: true });
        inRow++;
        if (this.#faults && inRow >= this.#faults.maxInRow) break;
        continue;
      }
      const clip = clipGradNorm > 0 ? Math.min(1, clipGradNorm / (norm + 1e-6)) : 1;
      state.t += 1;
      inRow = 0;
      out.push({ gradNorm: norm, gradNormClipped: norm * clip, lr, skipped: false });
    }
    this.#schedule.t = state.t;
    return out;
  }

  /** Frees what the updates hold (the queued losses and norms, the count of faults in a row). */
  dispose(): void {
    tf.dispose([...this.pending.flat(), ...(this.#inRow ? [this.#inRow] : [])]);
    this.pending.length = 0;
    this.#inRow = null;
  }
}

/**
 * AdamW updates with their checks on the device (`DeviceUpdates`), for `updates` updates at most.
 *
 * @example
 * ```ts
 * const updates = deviceUpdates(run.optimizer, {
 *   updates: epochs * miniBatches,
 *   faults: { inRow: run.faults.inRow, maxInRow: plan.optimizer.maxSkippedUpdates },
 * });
 * ```
 */
export function deviceUpdates(state: AdamW, options: DeviceUpdatesOptions): DeviceUpdates {
  return new DeviceUpdates(state, options);
}
