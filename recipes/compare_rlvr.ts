/**
 * A shipped comparison: GIFT against GRPO, DAPO and GSPO on sorting four digits, each objective
 * with its own tuned learning rate, on the same budget, prompts and first batch per seed.
 *
 *   deno task compare recipes/compare_rlvr.ts --objectives gift,gift@rollout,grpo,dapo,gspo \
 *     --seeds 3 --lr 3e-5,1e-4,3e-4
 *
 * The recipe declares no reference, so each objective gets its own default: GIFT the frozen
 * policy after the warm start (the paper's π_ref), GRPO the same for its KL term, DAPO and GSPO
 * none; `gift@rollout` adds GIFT against the policy that sampled each batch (the author's
 * implementation). A small model and budget keep the whole comparison, sweep included, within
 * 30 minutes on two cores; `deno task run recipes/compare_rlvr.ts` trains the GIFT run alone.
 */

import { gift, recipe, rewards, tasks, tinyGpt } from "../mod.ts";

export default recipe({
  name: "compare-rlvr",
  seed: 11,
  policy: tinyGpt({ layers: 2, dModel: 64, heads: 4, warmStart: { sftSteps: 110 } }),
  data: tasks.sorting({ length: 4, maxValue: 9, train: 4000, eval: 200 }),
  rewards: [{ source: rewards.exactMatch() }],
  group: { size: 8, prompts: 16 },
  sampling: { temperature: 1 },
  objective: gift(),
  optimizer: { lr: 1e-4 },
  steps: 100,
  eval: { every: 10 },
});
