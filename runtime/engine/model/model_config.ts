/**
 * The model's dimensions, free of TensorFlow.js: what the resolve step before `compile()` reads
 * of a checkpoint, and what `config.ts` shares with the model, the kernel sets and checkpoints.
 *
 * @module
 */

import type { ModelSpec } from "../../../dsl/plan.ts";

/**
 * The model's dimensions: a plan's `ModelSpec` without the bookkeeping.
 *
 * @example
 * ```ts
 * const config: ModelConfig = modelConfig(compile(recipe).model);
 * config.vocab; // the tokenizer's vocabulary
 * ```
 */
export interface ModelConfig {
  vocab: number;
  dModel: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  ffnDim: number;
  contextLength: number;
  tiedEmbeddings: boolean;
  ropeTheta: number;
  normEps: number;
  /** Qwen2: the q, k and v projections have biases. @default false */
  attentionBias?: boolean;
  /** Qwen3: RMSNorm over each head of q and k, before RoPE. @default false */
  qkNorm?: boolean;
  /** Llama 3.1/3.2's RoPE frequency scaling. */
  ropeScaling?: {
    type: "llama3";
    factor: number;
    lowFreqFactor: number;
    highFreqFactor: number;
    originalMaxPositions: number;
  };
}

/**
 * The model config of a plan's model spec.
 *
 * @example
 * ```ts
 * const config = modelConfig(compile(recipe).model);
 * config.dModel; // 128
 * ```
 */
export function modelConfig(spec: ModelSpec): ModelConfig {
  const { vocab, dModel, layers, heads, kvHeads, headDim, ffnDim, contextLength } = spec;
  const { tiedEmbeddings, ropeTheta, normEps } = spec;
  return {
    vocab,
    dModel,
    layers,
    heads,
    kvHeads,
    headDim,
    ffnDim,
    contextLength,
    tiedEmbeddings,
    ropeTheta,
    normEps,
    ...(spec.kind === "hfModel" && spec.attentionBias ? { attentionBias: true } : {}),
    ...(spec.kind === "hfModel" && spec.qkNorm ? { qkNorm: true } : {}),
    ...(spec.kind === "hfModel" && spec.ropeScaling !== null
      ? { ropeScaling: { ...spec.ropeScaling } }
      : {}),
  };
}
