/**
 * Constants kept on the device across train steps, for a backend whose tensors live off the host
 * (webgpu): there every number an op takes (`tf.mul(x, 2)`), every `tf.scalar` and every table
 * built from a JavaScript array is a tensor made on the CPU and uploaded before the kernel that
 * reads it, a queue write per value per call. A train step of the front door uploaded ~220 scalars
 * that were the same every step, and RoPE's tables and the attention mask, the same each step too.
 *
 * - {@linkcode deviceConstant}: a scalar per (value, dtype), made once and kept;
 * - {@linkcode scopedConstant}: a scalar that changes step to step (AdamW's learning rate and bias
 *   corrections), made once per enclosing `tf.tidy` and shared by every call inside it, instead of
 *   once per parameter;
 * - {@linkcode cachedTensors}: tensors built from a key (RoPE's tables, the attention mask, the
 *   log-softmax's row offsets), the {@linkcode TABLE_LIMIT} most recent keys kept.
 *
 * The caches are per backend instance and on only where `useBackend()` turns them on
 * ({@linkcode cacheDeviceConstants}: webgpu); elsewhere (cpu, wasm, where a tensor made from an
 * array costs a copy at most) every call makes a fresh tensor exactly as the inline number or
 * array did, owned by the caller's scope. The values are the same either way: a constant is the
 * float32 (or int32) tensor tfjs would have made from the number, so every op computes the same
 * bits.
 *
 * Leaks: a cached tensor is created by the first step that needs it and is held (`tf.keep`) until
 * {@linkcode disposeDeviceConstants}, so `tf.memory().numTensors` grows once, at the first step,
 * by {@linkcode deviceConstantCount}; later steps add nothing. A leak test counts
 * `numTensors − deviceConstantCount()`, which the caches leave unchanged. A cached tensor that
 * someone disposed is made again on its next use.
 *
 * @module
 */

import { tf } from "../tf.ts";

/** Tensors built from a key ({@linkcode cachedTensors}) kept per backend: the most recent ones. */
export const TABLE_LIMIT = 64;

/** One backend's caches. */
interface Caches {
  /** `dtype:value` → a kept scalar. */
  scalars: Map<string, tf.Tensor>;
  /** key → kept tensors, in order of last use (a Map iterates in insertion order). */
  tables: Map<string, tf.Tensor[]>;
  /** `dtype:value` → a scalar owned by the tidy that made it (freed with it). */
  scoped: Map<string, tf.Tensor>;
}

let enabled = false;
const byBackend = new Map<tf.KernelBackend, Caches>();

/**
 * Turns the device caches on (webgpu) or off (a fresh tensor on every call, as an inline number
 * makes). `useBackend()` sets it for the backend it chose; turning it off keeps what is cached,
 * for a later return to that backend.
 *
 * @example
 * ```ts
 * cacheDeviceConstants(tf.getBackend() === "webgpu");
 * ```
 */
export function cacheDeviceConstants(on: boolean): void {
  enabled = on;
}

/** Whether the device caches are on. */
export function deviceConstantsCached(): boolean {
  return enabled;
}

function caches(): Caches {
  const backend = tf.backend();
  let own = byBackend.get(backend);
  if (!own) {
    own = { scalars: new Map(), tables: new Map(), scoped: new Map() };
    byBackend.set(backend, own);
  }
  return own;
}

/** The key of a scalar: its dtype and the value it stores (float32-rounded for float32). */
function scalarKey(value: number, dtype: "float32" | "int32"): string {
  const stored = dtype === "float32" ? Math.fround(value) : value | 0;
  return `${dtype}:${Object.is(stored, -0) ? "-0" : stored}`;
}

/**
 * The scalar `value` (float32 by default) as a tensor that stays on the device: made and uploaded
 * once per backend, then shared by every op that takes it. Never dispose it. Where the caches are
 * off, a fresh scalar owned by the caller's scope (as `tf.mul(x, value)` makes).
 *
 * @example
 * ```ts
 * const doubled = tf.mul(x, deviceConstant(2)); // the same bits as tf.mul(x, 2)
 * ```
 */
export function deviceConstant(value: number, dtype: "float32" | "int32" = "float32"): tf.Scalar {
  if (!enabled) return tf.scalar(value, dtype);
  const { scalars } = caches();
  const key = scalarKey(value, dtype);
  const held = scalars.get(key);
  if (held && !held.isDisposed) return held as tf.Scalar;
  const made = tf.keep(tf.scalar(value, dtype));
  scalars.set(key, made);
  return made;
}

/** Scoped scalars kept before the disposed ones are swept out. */
const SCOPED_SWEEP = 32;

/**
 * The scalar `value` shared by every call within the `tf.tidy` that first asks for it: made there
 * (one upload), handed to later calls while that tidy holds it, freed when the tidy ends. For a
 * value that changes from step to step but repeats within one (AdamW's learning rate, used once
 * per parameter). Call inside `tf.tidy`. Where the caches are off, a fresh scalar on every call.
 *
 * @example
 * ```ts
 * tf.tidy(() => params.map((p) => tf.mul(p, scopedConstant(lr)))); // lr uploaded once
 * ```
 */
export function scopedConstant(value: number, dtype: "float32" | "int32" = "float32"): tf.Scalar {
  if (!enabled) return tf.scalar(value, dtype);
  const { scoped } = caches();
  const key = scalarKey(value, dtype);
  const held = scoped.get(key);
  if (held && !held.isDisposed) return held as tf.Scalar;
  if (scoped.size >= SCOPED_SWEEP) {
    for (const [k, t] of scoped) if (t.isDisposed) scoped.delete(k);
  }
  const made = tf.scalar(value, dtype);
  scoped.set(key, made);
  return made;
}

/**
 * The tensors `make()` builds for `key` (a description of everything they depend on: shape,
 * positions, padding, …), made once per backend and kept while among the {@linkcode TABLE_LIMIT}
 * most recently used keys (older ones are freed: a sampling loop asks for a new key per token).
 * Never dispose them. Where the caches are off, `make()` on every call, owned by the caller.
 *
 * @example
 * ```ts
 * const [mask] = cachedTensors(`causal:${t}`, () => [tf.tensor(causalMask(t), [t, t])]);
 * ```
 */
export function cachedTensors<T extends tf.Tensor[]>(key: string, make: () => T): T {
  if (!enabled) return make();
  const { tables } = caches();
  const held = tables.get(key);
  if (held) {
    tables.delete(key); // moved to the end: the most recently used
    if (held.every((t) => !t.isDisposed)) {
      tables.set(key, held);
      return held as T;
    }
    tf.dispose(held.filter((t) => !t.isDisposed));
  }
  const made = tf.tidy(make);
  for (const t of made) tf.keep(t);
  tables.set(key, made);
  while (tables.size > TABLE_LIMIT) {
    const [oldest, tensors] = tables.entries().next().value!;
    tables.delete(oldest);
    tf.dispose(tensors);
  }
  return made;
}

/**
 * How many tensors the caches hold now, every backend together (live ones only): what a leak test
 * subtracts from `tf.memory().numTensors` (see the module doc).
 *
 * @example
 * ```ts
 * const before = tf.memory().numTensors - deviceConstantCount();
 * ```
 */
export function deviceConstantCount(): number {
  let count = 0;
  for (const { scalars, tables } of byBackend.values()) {
    for (const t of scalars.values()) if (!t.isDisposed) count++;
    for (const ts of tables.values()) for (const t of ts) if (!t.isDisposed) count++;
  }
  return count;
}

/**
 * Frees every cached tensor of every backend (the scoped scalars belong to their tidies). The
 * next use makes them again.
 *
 * @example
 * ```ts
 * disposeDeviceConstants();
 * ```
 */
export function disposeDeviceConstants(): void {
  for (const { scalars, tables, scoped } of byBackend.values()) {
    tf.dispose([...scalars.values(), ...[...tables.values()].flat()].filter((t) => !t.isDisposed));
    scalars.clear();
    tables.clear();
    scoped.clear();
  }
  byBackend.clear();
}
