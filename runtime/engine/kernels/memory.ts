/**
 * Where the fused kernels read and write tensors: the backend's own memory, without copies.
 *
 * @module
 */

import type { tf } from "../tf.ts";

/**
 * The float32 values of tensors, without copies (a kernel set's view of its backend's memory):
 * take them after every allocation, as a backend's memory may grow and move. Copying activations
 * out and back in cost more than the loops over them.
 */
export type Values = (tensors: tf.Tensor[]) => Float32Array[];

/** The cpu backend's own arrays (its `dataSync` hands them out, not copies). */
export function cpuValues(tensors: tf.Tensor[]): Float32Array[] {
  return tensors.map((t) => t.dataSync() as Float32Array);
}

/** The wasm backend's module, as far as its memory is read here. */
export interface WasmBackend {
  wasm: { HEAPF32: Float32Array; asm?: { memory?: unknown } };
  dataIdMap: { get(id: object): { memoryOffset: number } };
}

/** Views of the wasm backend's module memory (`backend`: the wasm backend's instance). */
export function wasmValues(backend: WasmBackend): Values {
  return (tensors) => {
    const heap = backend.wasm.HEAPF32;
    return tensors.map((t) => {
      const at = backend.dataIdMap.get(t.dataId).memoryOffset / 4;
      return heap.subarray(at, at + t.size);
    });
  };
}
