/**
 * wasm kernels that share their input's memory instead of copying it, as the cpu backend's do:
 * `Identity` (tfjs clones every tensor a gradient saves for the backward pass, ~280 per front-door
 * train step) and `Cast` to the dtype the tensor already has (the `Multiply` gradient casts both
 * its inputs to float32). tfjs tensors are immutable, so a shared buffer is never written; the
 * backend's reference count (the one `Reshape` already uses) frees it with its last tensor.
 *
 * @module
 */

import { tf } from "../tf.ts";

/** The wasm kernels replaced, by name, to put back and to run what is not a plain copy. */
const replaced = new Map<string, tf.KernelConfig>();

/** Registers the sharing `Identity` and `Cast` for wasm (once; after the wasm backend loads). */
export function registerSharingKernels(): void {
  if (replaced.size > 0) return;
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

/** Puts wasm's own copying `Identity` and `Cast` back. */
export function unregisterSharingKernels(): void {
  for (const [name, original] of replaced) {
    tf.unregisterKernel(name, "wasm");
    tf.registerKernel(original);
  }
  replaced.clear();
}
