/**
 * wasm kernels that share their input's memory instead of copying it, as the cpu backend's do:
 * `Identity` (tfjs clones every tensor a gradient saves for the backward pass, ~280 per front-door
 * train step) and `Cast` to the dtype the tensor already has (the `Multiply` gradient casts both
 * its inputs to float32). tfjs tensors are immutable, so a shared buffer is never written; the
 * backend's reference count (the one `Reshape` already uses) frees it with its last tensor.
 *
 * Also `Slice` of a contiguous block (whole rows, as `logSoftmaxAt` takes them): copied straight
 * out of the heap. wasm's own first copies all of its input out of the heap (`readSync`) whatever
 * the slice's size, so slicing N rows in chunks copied the whole tensor once per chunk.
 *
 * @module
 */

import { tf } from "../tf.ts";

/** The wasm kernels replaced, by name, to put back and to run what is not a plain copy. */
const replaced = new Map<string, tf.KernelConfig>();

/** The parts of tfjs's wasm backend a slice copied in the heap uses. */
interface WasmHeap {
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  typedArrayFromHeap(t: tf.TensorInfo): Float32Array | Int32Array;
}

/** wasm's `Slice`, copying a contiguous block within the heap, else running `original`. */
function heapSlice(original: tf.KernelConfig): tf.KernelFunc {
  return (args) => {
    const { x } = args.inputs as { x: tf.TensorInfo };
    const attrs = args.attrs as { begin: number | number[]; size?: number | number[] };
    if (x.dtype !== "float32" && x.dtype !== "int32") return original.kernelFunc(args);
    const [begin, size] = tf.slice_util.parseSliceParams(x, attrs.begin, attrs.size) as [
      number[],
      number[],
    ];
    if (!tf.slice_util.isSliceContinous(x.shape, begin, size)) return original.kernelFunc(args);
    const heap = args.backend as unknown as WasmHeap;
    const out = heap.makeOutput(size, x.dtype); // may grow the heap: views are taken after it
    const from = tf.slice_util.computeFlatOffset(begin, tf.util.computeStrides(x.shape));
    const values = heap.typedArrayFromHeap(x);
    heap.typedArrayFromHeap(out).set(values.subarray(from, from + tf.util.sizeFromShape(size)));
    return out;
  };
}

/**
 * Registers the sharing `Identity` and `Cast`, and the in-heap `Slice`, for wasm (once; after
 * the wasm backend loads).
 */
export function registerSharingKernels(): void {
  if (replaced.size > 0) return;
  const slice = tf.getKernel(tf.Slice, "wasm");
  if (slice) {
    replaced.set(tf.Slice, slice);
    tf.unregisterKernel(tf.Slice, "wasm");
    tf.registerKernel({ ...slice, kernelFunc: heapSlice(slice) });
  }
  for (const name of [tf.Identity, tf.Cast]) {
    const original = tf.getKernel(name, "wasm");
    if (!original) continue;
    replaced.set(name, original);
    tf.unregisterKernel(name, "wasm");
    tf.registerKernel({
      ...original,
      kernelFunc: (args) => {
        const { x } = args.inputs as { x: tf.TensorInfo };
        const dtype = name === tf.Cast ? (args.attrs as { dtype: tf.DataType }).dtype : x.dtype;
        if (dtype !== x.dtype || x.dtype === "string") return original.kernelFunc(args);
        (args.backend as unknown as { incRef(dataId: object): void }).incRef(x.dataId);
        return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
      },
    });
  }
}

/** Puts wasm's own copying `Identity`, `Cast` and `Slice` back. */
export function unregisterSharingKernels(): void {
  for (const [name, original] of replaced) {
    tf.unregisterKernel(name, "wasm");
    tf.registerKernel(original);
  }
  replaced.clear();
}
