/**
 * A kernel set: the fused operations the model (`model/transformer.ts`), the optimiser
 * (`optim.ts`) and the sampler (`rl/sample.ts`) run, with one implementation per backend, chosen
 * once when the backend is set up (`useBackend()` in `backend.ts`) and passed to each of them. The
 * model is written in these operations and never asks which backend it runs on.
 *
 * - `tfjsKernels()` (`tfjs.ts`): plain tfjs ops, for `tensorflow`, and the reference every other
 *   set is tested against (tests/runtime/engine/kernels/_conformance.ts);
 * - `cpuKernels()` (`cpu.ts`): loops over the cpu backend's arrays, and OpenBLAS where it runs
 *   the backend's matrix products;
 * - `wasmKernels()` (`wasm.ts`): SIMD loops on the wasm backend's memory (`simd.wat`), the
 *   embedding as a one-hot product, and OpenBLAS where it runs the products;
 * - `webgpuKernels()` (`webgpu.ts`): WGSL programs run by tfjs's webgpu backend (`webgpu_program.ts`),
 *   one dispatch per operation each way where tfjs's ops take several, and products with their
 *   transpose flags.
 *
 * Every operation takes and returns tfjs tensors of the current backend and is differentiable
 * through `tf.grad` and `tf.variableGrads` (except `adamW` and `decoder`, which are not part of a
 * gradient). Shapes: N rows of the residual stream (B·T), d its width, H heads of width hd.
 *
 * @module
 */

import type { tf } from "../tf.ts";
import type { ModelConfig, Params } from "../model/config.ts";

/**
 * How a linear layer's weight is stored: `[in, out]` (`linear(x, W)` is the plain product x·W)
 * or Hugging Face's `[out, in]` (x·Wᵀ). Checkpoints on disk are always `[out, in]`; the checkpoint
 * code transposes to and from the kernel set's layout.
 */
export type LinearLayout = "[in, out]" | "[out, in]";

/** RoPE's tables for T new tokens (`ropeTables()` in `model/transformer.ts`). */
export interface Rotary {
  /** cos of each position's angles: [T, hd], or [B, 1, T, hd] with left padding. */
  cos: tf.Tensor;
  /** sin, shaped as `cos`. */
  sin: tf.Tensor;
}

/** One AdamW update's scalars (`adamWStep()` in `optim.ts` computes them). */
export interface AdamWUpdate {
  /** β₁ and β₂. */
  b1: number;
  b2: number;
  /** Bias corrections 1 − β₁ᵗ and 1 − β₂ᵗ. */
  c1: number;
  c2: number;
  eps: number;
  lr: number;
  /** The gradient's scale after clipping its global norm (1: not clipped). */
  clip: number;
  /** Decoupled weight decay of this parameter (0: none). */
  decay: number;
}

/** A model ready to sample B rows with a KV cache: one call per new token (a prefill first). */
export interface Decoder {
  /**
   * Runs `time` new tokens per row (`ids`: [B, time], row-major) after the earlier ones and
   * returns the logits of each row's last new token: [B, vocab]. With `active`, a decoder may run
   * only those rows (the others' logits are then 0 and they must not run again).
   */
  next(
    ids: Int32Array,
    time: number,
    active?: readonly number[],
  ): Float32Array | Promise<Float32Array>;
  /**
   * {@linkcode Decoder.next} on the device: `ids` is an int32 tensor [B, time] and the logits
   * [B, vocab] come back as a float32 tensor (the caller's to dispose), nothing read back to
   * JavaScript, so the sampler can draw there too (`rl/sample_device.ts`). Every row runs. Only
   * decoders whose tensors live where the draw runs have it (the tfjs one); calls to `next` and
   * `nextOnDevice` continue the same cache and may be mixed.
   */
  nextOnDevice?(ids: tf.Tensor2D, time: number): tf.Tensor2D;
  /** Frees the decoder's cache; it must not run again. */
  dispose(): void;
}

/**
 * The fused operations of one backend, chosen by `useBackend()` and passed to the model, the
 * optimiser and the sampler.
 *
 * @example
 * ```ts
 * const { kernels } = await useBackend("wasm");
 * const logp = tf.tidy(() => tokenLogProbs(kernels, params, config, ids, promptLength)); // [B, C]
 * ```
 */
export interface KernelSet {
  /** Which implementation this is: `"tfjs"` (plain tfjs ops), `"cpu"`, `"wasm"` or `"webgpu"`. */
  readonly name: "tfjs" | "cpu" | "wasm" | "webgpu";
  /** Whether OpenBLAS runs this set's products (its attention, rotation and decoder use it). */
  readonly blas: boolean;
  /** How this set stores linear weights; `"[in, out]"` for every set today. */
  readonly layout: LinearLayout;
  /**
   * Whether the optimiser's checks stay on the device: true where reading a value back costs
   * milliseconds (webgpu), and a train step then reads once, at its end (`DeviceUpdates` in
   * `optim.ts`); false where tensors live in host memory (cpu, wasm), which read each update's
   * loss and gradient norm as they come (`adamWStep`).
   */
  readonly updateOnDevice: boolean;
  /** x [N, in] · W (stored in `layout`) → [N, out]. */
  linear(x: tf.Tensor2D, w: tf.Tensor): tf.Tensor2D;
  /**
   * x [N, d] · Eᵀ for the embedding table E [V, d] → [N, V]: the output projection of a model
   * whose head is tied to its embedding (the table is stored as embedded, whatever `layout` is).
   */
  unembed(x: tf.Tensor2D, table: tf.Tensor): tf.Tensor2D;
  /**
   * op(a) · op(b) for the `BatchMatMul` gradient, computed where it is fast: with the transpose
   * flags where the kernel takes them well, else with the operand transposed first.
   */
  product(a: tf.Tensor, b: tf.Tensor, transposeA: boolean, transposeB: boolean): tf.Tensor;
  /** Rows `ids` [N] (int32) of `table` [V, d] → [N, d]; its gradient flows to `table`. */
  embed(table: tf.Tensor, ids: tf.Tensor1D, vocab: number): tf.Tensor2D;
  /** x [N, d] / rms(x) · w [d], the root mean square over each row plus `eps`. */
  rmsNorm(x: tf.Tensor2D, w: tf.Tensor, eps: number): tf.Tensor2D;
  /**
   * A projection x [B·T, H·hd] split into heads, [B, H, T, hd], with RoPE applied in Hugging
   * Face's rotate-half layout: x·cos + rotate_half(x)·sin, rotate_half(x) = [−x₂, x₁].
   */
  ropeHeads(x: tf.Tensor2D, heads: number, rotary: Rotary): tf.Tensor4D;
  /**
   * softmax(q·kᵀ/√hd + mask)·v for q [B, H, T, hd] and k, v [B, H, S, hd]: the T queries are
   * positions S − T … S − 1, each sees the keys up to its own, and row b's first `padding[b]` keys
   * are masked (an additive −1e9, so a query that sees no key averages all S values).
   */
  attention(
    q: tf.Tensor4D,
    k: tf.Tensor4D,
    v: tf.Tensor4D,
    padding: readonly number[] | null,
  ): tf.Tensor4D;
  /** SwiGLU feed-forward: (silu(x·W_gate) ⊙ x·W_up)·W_down, x [N, d] → [N, d]. */
  swiGlu(x: tf.Tensor2D, gate: tf.Tensor, up: tf.Tensor, down: tf.Tensor): tf.Tensor2D;
  /**
   * log softmax(logits / temperature) [B, C, V] at each row's target token `targets` [B, C]
   * (int32) → [B, C], differentiable with respect to the logits, with no one-hot over the
   * vocabulary (`log_softmax.ts`: the peak it holds is the logits plus twice their size).
   */
  logSoftmaxAt(
    logits: tf.Tensor3D,
    targets: tf.Tensor2D,
    options?: { temperature?: number },
  ): tf.Tensor2D;
  /**
   * AdamW's update of one parameter `p` with gradient `g` and moments `m`, `v` (assigned in
   * place), in float32: g' = clip·g; m ← β₁m + (1−β₁)g'; v ← β₂v + (1−β₂)g'²;
   * p ← p − lr·((m/c₁) / (√(v/c₂) + ε) + decay·p). Call inside `tf.tidy`.
   */
  adamW(p: tf.Variable, g: tf.Tensor, m: tf.Variable, v: tf.Variable, update: AdamWUpdate): void;
  /**
   * The sampler's decoder for `rows` rows with left padding `padding` and room for `capacity`
   * positions: its logits agree with `forward()`'s (to float32 rounding where it is not tfjs).
   */
  decoder(
    params: Params,
    config: ModelConfig,
    rows: number,
    padding: readonly number[],
    capacity: number,
  ): Promise<Decoder>;
}
