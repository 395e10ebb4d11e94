/**
 * The SIMD kernels of `simd.wat`, instantiated on a memory (a decoder's, `decode.ts`).
 *
 * @module
 */

import { decodeBase64 } from "./base64.ts";
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
