/**
 * The stories front door (`stories_gift.ts`) with LoRA: the same task and reward on stories260K,
 * but its weights stay frozen and only rank-8 adapters on the attention projections (q, k, v, o)
 * train, 17,920 parameters of its 260,032. The reference is "initial", which with LoRA is the
 * base model with the adapters switched off: no second copy of the weights. The run saves the
 * adapter in PEFT's format in `<run>/adapter` (`saveMerged: true` would add the merged model in
 * `<run>/model`); `deno task generate <run>` applies it to the base.
 *
 * ```sh
 * deno task run recipes/stories_lora.ts
 * ```
 *
 * @module
 */

import { fn, gift, hfModel, jsonl, lora, recipe } from "../mod.ts";

export default recipe({
  name: "stories-lora",
  description: "GIFT with LoRA adapters teaches stories260K to come back to its story's thing.",
  seed: 1,
  policy: hfModel({
    path: "../models/stories260K",
    lora: lora({ rank: 8, alpha: 16, targets: ["q_proj", "k_proj", "v_proj", "o_proj"] }),
  }),
  data: jsonl("./data/stories.jsonl", { eval: 64, maxPromptTokens: 40 }),
  rewards: [{ source: fn("./rewards/story.ts", "mentionsAnswer"), success: true }],
  group: { prompts: 8, size: 8 },
  sampling: { temperature: 1, maxNewTokens: 48 },
  objective: gift(),
  reference: "initial",
  // Adapters start at zero and move far less per step than full weights: a larger rate.
  optimizer: { lr: 2e-3, clipGradNorm: 1 },
  steps: 40,
  eval: { every: 10 },
});
