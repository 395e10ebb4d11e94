/**
 * webgpu's `Slice` of a small tensor still on the CPU, by runs instead of element by element.
 *
 * tfjs-backend-webgpu 4.22 slices a tensor whose data is still on the CPU, and smaller than its
 * CPU hand-off size, on the CPU (`shouldExecuteOnCPU`): a batch's token ids, made from the host's
 * arrays, are sliced so by `tokenLogProbs` (inputs and targets) at every train step. Where the
 * slice is not one contiguous run, tfjs-backend-cpu's `sliceImplCPU` reads and writes each element
 * through `TensorBuffer.get`/`set`, each allocating its index array: the front-door step's two
 * slices of 8 rows took about 100 µs of host time and 220 KB of garbage a step, a tenth of all
 * the step allocated (the webgpu path is bound by host time; docs/tfjs.md). This kernel copies the
 * same values a run of the last axis at a time into the same kind of array; everything else (a
 * contiguous slice, which tfjs already returns as a view; a tensor on the device; strings) goes
 * to tfjs's own kernel.
 *
 * @module
 */

import { tf } from "../tf.ts";

/** What the kernel reads of tfjs-backend-webgpu 4.22's backend. */
interface WebgpuBackend {
  tensorMap: { get(dataId: object): { values: unknown } | undefined };
  shouldExecuteOnCPU(inputs: tf.TensorInfo[]): boolean;
  makeTensorInfo(shape: number[], dtype: tf.DataType, values: unknown): tf.TensorInfo;
}

type Numbers = Float32Array | Int32Array | Uint8Array;

/** tfjs's own kernel, while ours is registered. */
let original: tf.KernelConfig | null = null;

/** Slices copied by runs since the module loaded. */
let runSlices = 0;

/**
 * The values of `x[begin … begin + size)` (a row-major `values` of `shape`), copied a run of the
 * last axis at a time into a new array of the same kind.
 */
export function sliceRuns<T extends Numbers>(
  values: T,
  shape: readonly number[],
  begin: readonly number[],
  size: readonly number[],
): T {
  const rank = shape.length;
  const out = new (values.constructor as new (n: number) => T)(
    tf.util.sizeFromShape(size as number[]),
  );
  if (out.length === 0) return out;
  const strides = tf.util.computeStrides(shape as number[]);
  const run = size[rank - 1]!;
  const index = new Array<number>(rank - 1).fill(0); // the run's place among the outer axes
  let start = begin[rank - 1]!;
  for (let axis = 0; axis < rank - 1; axis++) start += begin[axis]! * strides[axis]!;
  for (let to = 0; to < out.length; to += run) {
    let from = start;
    for (let axis = 0; axis < rank - 1; axis++) from += index[axis]! * strides[axis]!;
    out.set(values.subarray(from, from + run), to);
    for (let axis = rank - 2; axis >= 0; axis--) {
      if (++index[axis]! < size[axis]!) break;
      index[axis] = 0;
    }
  }
  return out;
}

/**
 * Registers the run-by-run `Slice` on webgpu over tfjs's own (once; again does nothing).
 *
 * @example
 * ```ts
 * installHostSlice();
 * const inputs = tf.slice(ids, [0, 0], [batch, time - 1]); // on the CPU, a row at a time
 * ```
 */
export function installHostSlice(): void {
  if (original) return;
  const kernel = tf.getKernel(tf.Slice, "webgpu");
  if (!kernel) return;
  original = kernel;
  const tfjs = kernel.kernelFunc;
  tf.unregisterKernel(tf.Slice, "webgpu");
  tf.registerKernel({
    ...kernel,
    kernelFunc: (args) => {
      const x = args.inputs.x as tf.TensorInfo;
      const backend = args.backend as unknown as WebgpuBackend;
      const { begin, size } = args.attrs as { begin: number | number[]; size: number | number[] };
      if (x.dtype === "string" || x.shape.length === 0) return tfjs(args);
      const [$begin, $size] = tf.slice_util.parseSliceParams(x as tf.Tensor, begin, size) as [
        number[],
        number[],
      ];
      const values = backend.tensorMap.get(x.dataId)?.values;
      if (
        !backend.shouldExecuteOnCPU([x]) || !ArrayBuffer.isView(values) ||
        tf.slice_util.isSliceContinous(x.shape, $begin, $size)
      ) {
        return tfjs(args);
      }
      tf.slice_util.assertParamsValid(x as tf.Tensor, $begin, $size);
      const out = sliceRuns(values as Numbers, x.shape, $begin, $size);
      runSlices++;
      return backend.makeTensorInfo($size, x.dtype, out);
    },
  });
}

/**
 * Registers tfjs's own `Slice` on webgpu again. Does nothing when ours is not registered.
 *
 * @example
 * ```ts
 * uninstallHostSlice(); // tfjs-backend-cpu's element-by-element copy again
 * ```
 */
export function uninstallHostSlice(): void {
  if (!original) return;
  tf.unregisterKernel(tf.Slice, "webgpu");
  tf.registerKernel(original);
  original = null;
}

/** Whether the run-by-run `Slice` is registered. */
export function hostSliceInstalled(): boolean {
  return original !== null;
}

/**
 * How many slices the kernel copied by runs (not handed to tfjs's) since the module loaded.
 *
 * @example
 * ```ts
 * const before = hostSlicesByRuns();
 * tf.slice(ids, [0, 0], [8, 11]);
 * hostSlicesByRuns() - before; // 1 where ids is still on the CPU
 * ```
 */
export function hostSlicesByRuns(): number {
  return runSlices;
}
