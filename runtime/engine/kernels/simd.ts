/**
 * The SIMD kernels of `simd.wat`, instantiated on a memory: a decoder's own (`decode.ts`), or the
 * wasm backend's, so that they read and write tensors where tfjs keeps them (`rope.ts`,
 * `rms_norm.ts`, `wasm.ts`).
 *
 * @module
 */

import type { tf } from "../tf.ts";
import { decodeBase64 } from "./base64.ts";
import type { WasmBackend } from "./memory.ts";
import { SIMD_WASM } from "./simd_wasm.ts";

/** simd.wat's exports (see there). Pointers are byte offsets into the memory. */
export interface SimdKernels {
  rmsNorm(x: number, w: number, out: number, rows: number, d: number, eps: number): void;
  addInto(x: number, y: number, n: number): void;
  siluTimes(gate: number, up: number, n: number): void;
  rope(src: number, dst: number, cos: number, sin: number, half: number): void;
  attend(
    q: number,
    keys: number,
    values: number,
    first: number,
    last: number,
    hd: number,
    scale: number,
    scores: number,
    out: number,
  ): void;
  ropeHeads(
    x: number,
    out: number,
    cos: number,
    sin: number,
    batch: number,
    time: number,
    heads: number,
    hd: number,
    rows: number,
    sign: number,
    toHeads: number,
  ): void;
  rmsNormBackward(
    x: number,
    w: number,
    dy: number,
    dx: number,
    dw: number,
    acc: number,
    rows: number,
    d: number,
    eps: number,
  ): void;
  adamW(
    p: number,
    g: number,
    m: number,
    v: number,
    pOut: number,
    mOut: number,
    vOut: number,
    n: number,
    b1: number,
    b2: number,
    keep1: number,
    keep2: number,
    c1: number,
    c2: number,
    eps: number,
    lr: number,
    clip: number,
    decay: number,
  ): void;
}

let compiled: WebAssembly.Module | null = null;
const instances = new WeakMap<WebAssembly.Memory, SimdKernels>();

/** The kernels on `memory` (one instance per memory). */
export function simdKernels(memory: WebAssembly.Memory): SimdKernels {
  const known = instances.get(memory);
  if (known) return known;
  compiled ??= new WebAssembly.Module(decodeBase64(SIMD_WASM) as Uint8Array<ArrayBuffer>);
  const kernels = new WebAssembly.Instance(compiled, { env: { memory } })
    .exports as unknown as SimdKernels;
  instances.set(memory, kernels);
  return kernels;
}

/** The kernels on the wasm backend's memory, and each tensor's byte offset there. */
export interface BackendKernels {
  kernels: SimdKernels;
  offset(t: tf.Tensor): number;
}

/**
 * The kernels on the memory of `backend` (the wasm backend's instance); null for a wasm build that
 * does not export its memory. Offsets stay valid when that memory grows (its views do not).
 */
export function backendKernels(backend: WasmBackend): BackendKernels | null {
  const memory = backend.wasm.asm?.memory;
  if (!(memory instanceof WebAssembly.Memory)) return null;
  return {
    kernels: simdKernels(memory),
    offset: (t) => backend.dataIdMap.get(t.dataId).memoryOffset,
  };
}
