/**
 * wasm kernels that share their input's memory instead of copying it, as the cpu backend's do:
 * `Identity` (tfjs clones every tensor a gradient saves for the backward pass, ~280 per front-door
 * train step) and `Cast` to the dtype the tensor already has (the `Multiply` gradient casts both
 * its inputs to float32). tfjs tensors are immutable, so a shared buffer is never written; the
 * backend's reference count (the one `Reshape` already uses) frees it with its last tensor.
 *
 * Also `Slice` of a contiguous block (whole rows, as `logSoftmaxAt` takes them): copied straight
 * out of the heap. wasm's own first copies all of its input out of the heap (`readSync`) whatever
 * the slice's size, so slicing N rows in chunks copied the whole tensor once per chunk. And `Tile`
 * (grouped-query attention's keys and values, repeated for the heads that share them) as block
 * copies within the heap: wasm's computes an index per value, ~100 ms a call at Qwen2.5-0.5B's
 * size (a tenth of its train step). A tile is a copy, so the values are the same.
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
 * Writes `x` (of `shape`) tiled `reps` times along each axis into `out` (row-major), as block
 * copies: along the last axis the input's rows, along each axis before it the first repetition's
 * block, copied `reps − 1` times after itself.
 */
export function tileInto(
  x: Float32Array | Int32Array,
  shape: readonly number[],
  reps: readonly number[],
  out: Float32Array | Int32Array,
): void {
  const rank = shape.length;
  const inStrides = new Array<number>(rank).fill(1);
  const outStrides = new Array<number>(rank).fill(1);
  for (let i = rank - 2; i >= 0; i--) {
    inStrides[i] = inStrides[i + 1]! * shape[i + 1]!;
    outStrides[i] = outStrides[i + 1]! * shape[i + 1]! * reps[i + 1]!;
  }
  const fill = (axis: number, from: number, to: number) => {
    const n = shape[axis]!;
    if (axis === rank - 1) {
      for (let k = 0; k < reps[axis]!; k++) out.set(x.subarray(from, from + n), to + k * n);
      return;
    }
    for (let i = 0; i < n; i++) {
      fill(axis + 1, from + i * inStrides[axis]!, to + i * outStrides[axis]!);
    }
    const block = n * outStrides[axis]!;
    for (let k = 1; k < reps[axis]!; k++) out.copyWithin(to + k * block, to, to + block);
  };
  if (rank === 0 || x.length === 0) {
    if (rank === 0) out.set(x);
    return;
  }
  fill(0, 0, 0);
}

/** wasm's `Tile` as block copies within the heap (`tileInto`), else running `original`. */
function heapTile(original: tf.KernelConfig): tf.KernelFunc {
  return (args) => {
    const { x } = args.inputs as { x: tf.TensorInfo };
    const { reps } = args.attrs as unknown as { reps: number[] };
    if (x.dtype !== "float32" && x.dtype !== "int32") return original.kernelFunc(args);
    const heap = args.backend as unknown as WasmHeap;
    const out = heap.makeOutput(x.shape.map((n, i) => n * reps[i]!), x.dtype); // may grow the heap
    tileInto(heap.typedArrayFromHeap(x), x.shape, reps, heap.typedArrayFromHeap(out));
    return out;
  };
}

/**
 * Registers the sharing `Identity` and `Cast`, and the in-heap `Slice` and `Tile`, for wasm
 * (once; after the wasm backend loads).
 */
export function registerSharingKernels(): void {
  if (replaced.size > 0) return;
  const tile = tf.getKernel(tf.Tile, "wasm");
  if (tile) {
    replaced.set(tf.Tile, tile);
    tf.unregisterKernel(tf.Tile, "wasm");
    tf.registerKernel({ ...tile, kernelFunc: heapTile(tile) });
  }
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

/** Puts wasm's own copying `Identity`, `Cast`, `Slice` and `Tile` back. */
export function unregisterSharingKernels(): void {
  for (const [name, original] of replaced) {
    tf.unregisterKernel(name, "wasm");
    tf.registerKernel(original);
  }
  replaced.clear();
}
