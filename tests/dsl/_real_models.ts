/**
 * What `resolveModels()` would read of two real checkpoints' directories, written out without
 * their weight files: SmolLM2-135M's and Qwen2.5-0.5B's `config.json` shapes and parameter counts
 * (as bench/_configs.ts has them), and a recipe that trains one of them as the bench does (4
 * prompts × 4 completions of 64 prompt + 128 new tokens).
 *
 * @module
 */

import { gift, hfModel, jsonl, recipe, rewards } from "../../mod.ts";
import type { Recipe } from "../../dsl/schema.ts";
import type { AdapterFacts, HfModelFacts } from "../../dsl/plan.ts";

/** The facts of a checkpoint of `shape` with `parameters` parameters (a tokenizer that fits). */
function facts(
  modelType: string,
  parameters: number,
  maxPositions: number,
  shape: HfModelFacts["shape"],
  attentionBias: boolean,
): HfModelFacts {
  return {
    modelType,
    architectures: [],
    dtype: "BF16",
    sha256: "0".repeat(64),
    parameters,
    maxPositions,
    shape,
    attentionBias,
    qkNorm: false,
    ropeScaling: null,
    tokenizer: {
      kind: "hf",
      vocab: shape.vocab,
      bosId: null,
      eosId: 2,
      padId: 2,
      padSource: "eos_token",
      stopIds: [2],
      addBos: false,
      hasChatTemplate: false,
    },
    example: null,
  };
}

/** SmolLM2-135M: 30 layers, d 576, 9 heads over 3 key/value heads, ffn 1536, vocab 49,152, tied. */
export const SMOLLM = facts("llama", 134_515_008, 8192, {
  layers: 30,
  dModel: 576,
  heads: 9,
  kvHeads: 3,
  headDim: 64,
  ffnDim: 1536,
  vocab: 49_152,
  tiedEmbeddings: true,
  ropeTheta: 100_000,
  normEps: 1e-5,
}, false);

/** Qwen2.5-0.5B: 24 layers, d 896, 14 heads over 2, ffn 4864, vocab 151,936, tied, q/k/v biases. */
export const QWEN = facts("qwen2", 494_032_768, 32_768, {
  layers: 24,
  dModel: 896,
  heads: 14,
  kvHeads: 2,
  headDim: 64,
  ffnDim: 4864,
  vocab: 151_936,
  tiedEmbeddings: true,
  ropeTheta: 1_000_000,
  normEps: 1e-6,
}, true);

/** A PEFT adapter directory's facts: rank 16, alpha 32, dropout 0.05, on v and q. */
export const ADAPTER: AdapterFacts = {
  path: "./adapter",
  rank: 16,
  alpha: 32,
  dropout: 0.05,
  targets: ["v_proj", "q_proj"],
  sha256: "1".repeat(64),
};

/** The models option of compile() for the model at "./model" with `facts`. */
export function models(facts: HfModelFacts): Record<string, HfModelFacts> {
  return { "./model": facts };
}

/** GIFT on "./model": 4 prompts × 4 completions of 64 prompt + 128 new tokens, on wasm. */
export function realRecipe(changes: Partial<Recipe> = {}): Recipe {
  return recipe({
    name: "real",
    policy: hfModel({ path: "./model" }),
    data: jsonl("./prompts.jsonl", { eval: 16, maxPromptTokens: 64 }),
    rewards: [{ source: rewards.numericAnswer() }],
    group: { prompts: 4, size: 4 },
    sampling: { maxNewTokens: 128 },
    objective: gift(),
    reference: "rollout",
    optimizer: { lr: 1e-5 },
    steps: 10,
    backend: "wasm",
    ...changes,
  });
}
