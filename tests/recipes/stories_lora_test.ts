// recipes/stories_lora.ts plans as the command line plans it: stories260K read first, LoRA rank 8
// on the attention projections (17,920 adapter parameters, counted by hand below), the "initial"
// reference, and the stories front door's data and reward. Training it takes minutes, so CI
// checks its plan; `deno task run recipes/stories_lora.ts` trains it.

import assert from "node:assert/strict";
import { compile, withInputs } from "../../mod.ts";
import stories from "../../recipes/stories_lora.ts";
import storiesGift from "../../recipes/stories_gift.ts";
import { resolveModels } from "../../runtime/resolve.ts";

const ROOT = new URL("../../", import.meta.url);

Deno.test("recipes/stories_lora.ts plans stories260K with rank-8 LoRA on q, k, v and o", async () => {
  const url = new URL("recipes/stories_lora.ts", ROOT);
  const resolved = await resolveModels(stories, url);
  assert.ok(resolved.ok);
  const plan = await withInputs(compile(stories, { models: resolved.models }), url);
  assert.equal(plan.model.kind, "hfModel");
  if (plan.model.kind !== "hfModel") return;
  // A layer of stories260K: d 64, 8 query heads and 4 key/value heads of width 8.
  const perLayer = 8 * ((64 + 64) + (64 + 32) + (64 + 32) + (64 + 64)); // r · (in + out), q k v o
  assert.deepEqual(plan.model.lora, {
    rank: 8,
    alpha: 16,
    scale: 2,
    dropout: 0,
    targets: ["q_proj", "k_proj", "v_proj", "o_proj"],
    params: 5 * perLayer,
    adapter: null,
    saveMerged: false,
  });
  assert.equal(5 * perLayer, 17_920);
  assert.equal(plan.model.params, 260_032);
  assert.equal(plan.reference.kind, "initial");
  assert.equal(plan.update, undefined);
  // The stories front door's task, reward and shapes: only the policy and the reference differ.
  const gift = compile(storiesGift, { models: resolved.models });
  assert.deepEqual(plan.shapes, gift.shapes);
  assert.deepEqual(plan.rewards, gift.rewards);
  assert.deepEqual(plan.data, gift.data);
});
