/** A recipe small enough to train in a second or two: the runtime tests' fixture. */

import { compile, gift, type Plan, recipe, rewards, tasks, tinyGpt } from "../../mod.ts";
import { charTokenizer } from "../../runtime/engine/model/tokenizer.ts";
import type { ModelConfig } from "../../runtime/engine/model/transformer.ts";

/** One layer of width 32 on one-digit addition, 5 steps of 4 prompts × 4 completions. */
export const TINY = recipe({
  name: "tiny",
  seed: 7,
  policy: tinyGpt({ layers: 1, dModel: 32, heads: 2, warmStart: { sftSteps: 20, batchSize: 16 } }),
  reference: "initial",
  data: tasks.addition({ digits: 1, train: 60, eval: 20 }),
  rewards: [{ source: rewards.numericAnswer() }],
  group: { size: 4, prompts: 4 },
  sampling: { temperature: 1 },
  objective: gift(),
  optimizer: { lr: 1e-3 },
  steps: 5,
  eval: { every: 2 },
  backend: "wasm",
});

/** The plan of `TINY`, with `changes` spread over the recipe. */
export function tinyPlan(changes: Partial<typeof TINY> = {}): Plan {
  return compile({ ...TINY, ...changes });
}

/** A model with grouped-query attention (4 query heads on 2 key/value heads) and untied embeddings. */
export const GQA_CONFIG: ModelConfig = {
  vocab: 15,
  dModel: 32,
  layers: 2,
  heads: 4,
  kvHeads: 2,
  headDim: 8,
  ffnDim: 64,
  contextLength: 12,
  tiedEmbeddings: false,
  ropeTheta: 10_000,
  normEps: 1e-5,
};

/** The character tokenizer of addition problems ("12+34="). */
export const ADDITION_TOKENIZER = charTokenizer("0123456789+=");

/** One layer of width 32 (2 heads of 16), tied, over `ADDITION_TOKENIZER`'s ids, context 12. */
export const ADDITION_CONFIG: ModelConfig = {
  vocab: ADDITION_TOKENIZER.vocab,
  dModel: 32,
  layers: 1,
  heads: 2,
  kvHeads: 2,
  headDim: 16,
  ffnDim: 64,
  contextLength: 12,
  tiedEmbeddings: true,
  ropeTheta: 10_000,
  normEps: 1e-5,
};
