/**
 * TensorFlow.js as everything in `runtime/` imports it: the `@tensorflow/tfjs` union package (under
 * Deno only the union package registers the gradients), and two helpers every kernel set needs.
 * Setting a backend up is `backend.ts`'s; this module patches nothing.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";

export { tf };

/** The last two axes of `x` swapped (a plain transpose, fast on every backend). */
export function swapLastAxes(x: tf.Tensor): tf.Tensor {
  const perm = [...Array(x.rank).keys()];
  perm[x.rank - 1] = x.rank - 2;
  perm[x.rank - 2] = x.rank - 1;
  return tf.transpose(x, perm);
}

/**
 * One-hot rows as float32. On wasm, `tf.oneHot(…, "float32")` returns int32 bits labelled float32
 * (1 reads as 1.4e-45), so the int32 result is cast instead.
 */
export function oneHotFloat(indices: tf.Tensor, depth: number): tf.Tensor {
  return tf.cast(tf.oneHot(indices as tf.Tensor1D, depth), "float32");
}
