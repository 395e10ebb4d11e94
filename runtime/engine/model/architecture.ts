/**
 * What distinguishes the Llama-family architectures the model runs, in one place: the tfjs
 * forward (`transformer.ts`), the parameter list (`paramShapes`) and the fast sampler's decoder
 * (`kernels/decode.ts`) all read it, so an architecture is described once.
 *
 * - Llama and Mistral (without a sliding window): the base model.
 * - Qwen2: biases on the q, k and v projections (`attentionBias`).
 * - Qwen3: RMSNorm over each head of q and k before RoPE, one gain of width `headDim` per
 *   projection (`qkNorm`); its `headDim` may differ from `dModel / heads`.
 * - Llama 3.1/3.2: RoPE's inverse frequencies rescaled (`ropeScaling` of type `llama3`), as
 *   transformers' `_compute_llama3_parameters`.
 *
 * @module
 */

import type { ModelConfig } from "./config.ts";

/**
 * One of attention's input projections of one layer: y = x·W (+ b), then, with `norm`, RMSNorm
 * over each head of y (gain [headDim], the model's `normEps`). Names are Hugging Face's.
 */
export interface Projection {
  /** The weight's name, `model.layers.N.self_attn.q_proj.weight`. */
  weight: string;
  /** The bias's name ([heads·headDim]), or null: the projection has none. */
  bias: string | null;
  /** The per-head RMSNorm gain's name ([headDim]), or null: no norm. */
  norm: string | null;
  /** How many heads the projection's output is split into. */
  heads: number;
}

/** The q, k and v projections of one layer. */
export interface AttentionProjections {
  q: Projection;
  k: Projection;
  v: Projection;
}

/**
 * The q, k and v projections of `layer` as `config`'s architecture has them.
 *
 * @example
 * ```ts
 * attentionProjections({ ...config, attentionBias: true }, 0).q.bias;
 * // "model.layers.0.self_attn.q_proj.bias"
 * ```
 */
export function attentionProjections(config: ModelConfig, layer: number): AttentionProjections {
  const prefix = `model.layers.${layer}.self_attn.`;
  const bias = config.attentionBias === true;
  const norm = config.qkNorm === true;
  const projection = (name: "q" | "k" | "v", heads: number, normed: boolean): Projection => ({
    weight: `${prefix}${name}_proj.weight`,
    bias: bias ? `${prefix}${name}_proj.bias` : null,
    norm: normed ? `${prefix}${name}_norm.weight` : null,
    heads,
  });
  return {
    q: projection("q", config.heads, norm),
    k: projection("k", config.kvHeads, norm),
    v: projection("v", config.kvHeads, false),
  };
}

/**
 * RoPE's inverse frequencies θ_i, i < headDim / 2 (position p's angles are p·θ_i), in float64:
 * ropeTheta^(−2i/headDim), rescaled as Llama 3.1's `rope_type: "llama3"` when `ropeScaling` says
 * so: wavelengths 2π/θ longer than `originalMaxPositions / lowFreqFactor` are slowed by `factor`,
 * those shorter than `originalMaxPositions / highFreqFactor` are kept, and those between are
 * interpolated smoothly. Without scaling the values are the ones `ropeTables` always computed,
 * bit for bit. (transformers computes them in float32; float64 keeps the unscaled angles as they
 * were, and the two differ by float32 rounding.)
 *
 * @example
 * ```ts
 * ropeInverseFrequencies({ ...config, headDim: 4, ropeTheta: 10_000 }); // [1, 0.01]
 * ```
 */
export function ropeInverseFrequencies(config: ModelConfig): Float64Array {
  checkArchitecture(config);
  const { headDim, ropeTheta } = config;
  const half = headDim / 2;
  const inverse = new Float64Array(half);
  for (let i = 0; i < half; i++) inverse[i] = ropeTheta ** (-(2 * i) / headDim);
  const scaling = config.ropeScaling;
  if (!scaling) return inverse;
  const { factor, lowFreqFactor, highFreqFactor, originalMaxPositions } = scaling;
  const lowFreqWavelength = originalMaxPositions / lowFreqFactor;
  const highFreqWavelength = originalMaxPositions / highFreqFactor;
  for (let i = 0; i < half; i++) {
    const frequency = inverse[i]!;
    const wavelength = (2 * Math.PI) / frequency;
    if (wavelength < highFreqWavelength) continue; // high frequencies: kept
    if (wavelength > lowFreqWavelength) {
      inverse[i] = frequency / factor; // low frequencies: slowed down
      continue;
    }
    const smooth = (originalMaxPositions / wavelength - lowFreqFactor) /
      (highFreqFactor - lowFreqFactor);
    inverse[i] = ((1 - smooth) * frequency) / factor + smooth * frequency;
  }
  return inverse;
}

/**
 * Checks the architecture fields of `config`: one line naming the field, what was expected and
 * what was given.
 *
 * @example
 * ```ts
 * checkArchitecture({ ...config, headDim: 7 });
 * // Error: Cannot run the model as 'headDim' must be a positive even integer (…): current value
 * // is 7
 * ```
 */
export function checkArchitecture(config: ModelConfig): void {
  const fail = (field: string, expected: string, given: unknown) => {
    throw new Error(
      `Cannot run the model as '${field}' must be ${expected}: current value is ${
        JSON.stringify(given)
      }`,
    );
  };
  if (!Number.isInteger(config.headDim) || config.headDim <= 0 || config.headDim % 2 !== 0) {
    fail("headDim", "a positive even integer (RoPE rotates pairs)", config.headDim);
  }
  if (!(config.ropeTheta > 0)) fail("ropeTheta", "a positive number", config.ropeTheta);
  const scaling = config.ropeScaling;
  if (!scaling) return;
  if (scaling.type !== "llama3") fail("ropeScaling.type", '"llama3"', scaling.type);
  for (
    const field of ["factor", "lowFreqFactor", "highFreqFactor", "originalMaxPositions"] as const
  ) {
    const value = scaling[field];
    if (typeof value !== "number" || !(value > 0) || !Number.isFinite(value)) {
      fail(`ropeScaling.${field}`, "a positive number", value);
    }
  }
  if (!(scaling.highFreqFactor > scaling.lowFreqFactor)) {
    fail(
      "ropeScaling.highFreqFactor",
      `greater than lowFreqFactor (${scaling.lowFreqFactor})`,
      scaling.highFreqFactor,
    );
  }
}
