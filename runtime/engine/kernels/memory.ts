/**
 * Where the fused kernels read and write tensors: the backend's own memory, without copies.
 *
 * @module
 */

import { tf } from "../backend.ts";

/**
 * The float32 values of tensors of the current backend, without copies: on wasm views of the
 * module's memory (take them after every allocation, as the memory may grow and move), on cpu the
 * backend's own arrays. Copying the front door's activations (655 KB each) out and back in cost
 * more than the loops over them.
 */
export function backendValues(tensors: tf.Tensor[]): Float32Array[] {
  if (tf.getBackend() !== "wasm") return tensors.map((t) => t.dataSync() as Float32Array);
  const backend = tf.backend() as unknown as {
    wasm: { HEAPF32: Float32Array };
    dataIdMap: { get(id: object): { memoryOffset: number } };
  };
  const heap = backend.wasm.HEAPF32;
  return tensors.map((t) => {
    const at = backend.dataIdMap.get(t.dataId).memoryOffset / 4;
    return heap.subarray(at, at + t.size);
  });
}
