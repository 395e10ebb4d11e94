/** A recipe small enough to train in a second or two: the runtime tests' fixture. */

import { compile, gift, type Plan, recipe, rewards, tasks, tinyGpt } from "../../mod.ts";

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
