/**
 * GIFT on a real pretrained model: Karpathy's TinyStories model stories260K (llama2.c, MIT;
 * `models/stories260K/`, a Hugging Face directory), with its own sentencepiece tokenizer. Each
 * prompt opens a story that introduces a thing ("Tom had a little boat. …"); the reward, a
 * function written as a user writes one (`rewards/story.ts`), is 1 when the story the model
 * writes names that thing again, and the held-out success rate is that reward on greedy stories
 * of 64 openings the run never trains on.
 *
 * ```sh
 * deno task run recipes/stories_gift.ts
 * ```
 *
 * @module
 */

import { fn, gift, hfModel, jsonl, recipe } from "../mod.ts";

export default recipe({
  name: "stories-gift",
  description: "GIFT teaches stories260K to come back to the thing its story opened with.",
  seed: 1,
  policy: hfModel({ path: "../models/stories260K" }),
  data: jsonl("./data/stories.jsonl", { eval: 64, maxPromptTokens: 40 }),
  rewards: [{ source: fn("./rewards/story.ts", "mentionsAnswer"), success: true }],
  group: { prompts: 8, size: 8 },
  sampling: { temperature: 1, maxNewTokens: 48 },
  objective: gift(),
  reference: "rollout",
  optimizer: { lr: 1e-4, clipGradNorm: 1 },
  steps: 40,
  eval: { every: 10 },
});
