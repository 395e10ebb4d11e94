/**
 * The `cpu` kernel set: tfjs's JavaScript backend, whose many small kernels cost more in dispatch
 * than in arithmetic on the models trained here. RMSNorm and the log-probabilities run as loops
 * over the backend's own arrays; where OpenBLAS runs the backend's matrix products (`blas.ts`),
 * attention's small products go to it one (row, head) at a time, RoPE's rotation is one product,
 * the matmul gradient passes transpose flags to it, and sampling runs without tfjs (`decode.ts`).
 * Everything else is the plain tfjs set's.
 *
 * @module
 */

import { type Blas, blasProduct } from "../blas.ts";
import { blasOrOpsAttention } from "./attention.ts";
import { blasDecoder } from "./decode.ts";
import { loopLogSoftmaxAt } from "./log_softmax.ts";
import { cpuValues } from "./memory.ts";
import { loopRmsNorm } from "./rms_norm.ts";
import { rotateHalf, rotateHalfByProduct } from "./rope.ts";
import {
  adamWOps,
  attentionOps,
  blasUnembed,
  gatherRows,
  linear,
  splitThenRope,
  swiGlu,
  tfjsDecoder,
  transposedFirst,
  unembed,
} from "./tfjs.ts";
import type { KernelSet } from "./types.ts";

/**
 * The cpu kernel set; `blas` is the OpenBLAS that runs the backend's products (`useBackend()`
 * registered it), or null.
 *
 * @example
 * ```ts
 * const { kernels } = await useBackend("cpu"); // cpuKernels(OpenBLAS or null)
 * ```
 */
export function cpuKernels(blas: Blas | null): KernelSet {
  const kernels: KernelSet = {
    name: "cpu",
    blas: blas !== null,
    updateOnDevice: false,
    layout: "[in, out]",
    linear,
    unembed: blas ? blasUnembed : unembed,
    product: blas ? blasProduct : transposedFirst,
    embed: (table, ids) => gatherRows(table, ids),
    rmsNorm: (x, w, eps) => loopRmsNorm(cpuValues, x, w, eps),
    ropeHeads: (x, heads, rotary) =>
      splitThenRope(x, heads, rotary, blas ? rotateHalfByProduct : rotateHalf),
    attention: blas ? blasOrOpsAttention(blas, cpuValues) : attentionOps,
    swiGlu,
    logSoftmaxAt: loopLogSoftmaxAt(cpuValues),
    adamW: adamWOps,
    decoder: (params, config, rows, padding, capacity) =>
      blas
        ? blasDecoder(blas, params, config, rows, padding, capacity)
        : Promise.resolve(tfjsDecoder(kernels, params, config, rows, padding)),
  };
  return kernels;
}
