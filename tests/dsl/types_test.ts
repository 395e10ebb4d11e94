// Type-level tests. `deno test` type-checks this file: each `@ts-expect-error` must sit on a line
// that is a type error, or the check (and so the test run) fails. Each case is also run, to show
// that the JSON route (no type checker) rejects the same mistake at validation.

import assert from "node:assert/strict";
import {
  customObjective,
  dapo,
  fn,
  gift,
  grpo,
  http,
  jsonl,
  type Recipe,
  recipe,
  rewardModel,
  rewards,
  tasks,
  tinyGpt,
  una,
  validateRecipe,
} from "../../mod.ts";
import { type Eval, type Reward, type Verifier } from "../../dsl/schema.ts";
import { base } from "./_fixtures.ts";

function rejected(input: unknown): boolean {
  return !validateRecipe(input).ok;
}

Deno.test("gift() does not accept a clipping option (type error and validation error)", () => {
  // @ts-expect-error: epsilon is a clipping option of grpo, dapo, …, not one of GIFT's
  const objective = gift({ epsilon: 0.2 });
  assert.ok(rejected({ ...base, objective }));
});

Deno.test("each objective builder accepts only its own options", () => {
  // @ts-expect-error: dynamicSampling belongs to dapo
  assert.ok(rejected({ ...base, objective: grpo({ dynamicSampling: true }) }));
  // @ts-expect-error: una takes only beta
  assert.ok(rejected({ ...base, objective: una({ epsilon: 0.2 }) }));
  // @ts-expect-error: betaC belongs to gift
  assert.ok(rejected({ ...base, objective: dapo({ betaC: 1 }) }));
  // @ts-expect-error: beta must be a number
  assert.ok(rejected({ ...base, objective: grpo({ beta: "0.04" }) }));
});

Deno.test("recipe() rejects misspelt keys, wrong types and missing fields", () => {
  // @ts-expect-error: szie is not a key of group
  assert.ok(rejected(recipe({ ...base, group: { szie: 8, prompts: 16 } })));
  // @ts-expect-error: 'frozen' is not a reference
  assert.ok(rejected(recipe({ ...base, reference: "frozen" })));
  // @ts-expect-error: the optimizer needs a learning rate
  assert.ok(rejected(recipe({ ...base, optimizer: {} })));
  // @ts-expect-error: layers is a number
  assert.ok(rejected({ ...base, policy: tinyGpt({ layers: "2" }) }));
  // @ts-expect-error: an http source needs a url
  assert.ok(rejected({ ...base, rewards: [{ source: http({}) }] }));
  // @ts-expect-error: addition has no vocabulary option
  assert.ok(rejected({ ...base, data: tasks.addition({ vocab: 20 }) }));
});

Deno.test("fn(), rewardModel(), rewards.countdown() and the new tasks and fields reject wrong options", () => {
  const sources = (source: unknown) => ({ ...base, rewards: [{ source }] });
  // @ts-expect-error: sandbox is a boolean
  assert.ok(rejected(sources(fn("./r.ts", "score", { sandbox: "no" }))));
  // @ts-expect-error: fn takes no batch size
  assert.ok(rejected(sources(fn("./r.ts", "score", { batchSize: 8 }))));
  // @ts-expect-error: a reward model has no timeout
  assert.ok(rejected(sources(rewardModel("rm", { timeoutMs: 10 }))));
  // @ts-expect-error: the countdown verifier takes no options (the builder takes no argument)
  rewards.countdown({ tolerance: 0 });
  assert.ok(rejected(sources({ kind: "countdown", tolerance: 0 })));
  // @ts-expect-error: 'ignore' is not an onError policy
  const reward: Reward = { source: rewards.numericAnswer(), onError: "ignore" };
  assert.ok(rejected({ ...base, rewards: [reward] }));
  // @ts-expect-error: 'test' is not a split
  const evaluation: Eval = { split: "test" };
  assert.ok(rejected({ ...base, eval: evaluation }));
  // @ts-expect-error: sorting has no digits option
  assert.ok(rejected({ ...base, data: tasks.sorting({ digits: 2 }) }));
  // @ts-expect-error: multiplication has no length option
  assert.ok(rejected({ ...base, data: tasks.multiplication({ length: 2 }) }));
  // @ts-expect-error: countdown's count of numbers is a number
  assert.ok(rejected({ ...base, data: tasks.countdown({ numbers: "4" }) }));
  // @ts-expect-error: a reward model is not a verifier, so it cannot be the eval metric
  const metric: Verifier = rewardModel("rm");
  assert.ok(rejected({ ...base, eval: { metric } }));
});

Deno.test("customObjective() takes a module, JSON options and boolean reads only", () => {
  const objective = (o: unknown) => ({ ...base, objective: o });
  // @ts-expect-error: the module is required
  assert.ok(rejected(objective(customObjective())));
  // @ts-expect-error: reads.old is a boolean
  assert.ok(rejected(objective(customObjective("./l.ts", { reads: { old: "yes" } }))));
  // @ts-expect-error: reads declares reference and old only
  assert.ok(rejected(objective(customObjective("./l.ts", { reads: { ref: true } }))));
  // @ts-expect-error: beta is an option of the presets; a custom loss takes it inside options
  assert.ok(rejected(objective(customObjective("./l.ts", { beta: 0.1 }))));
  // @ts-expect-error: options is a JSON object, not a list
  assert.ok(rejected(objective(customObjective("./l.ts", { options: [0.2] }))));
  // @ts-expect-error: a function is not JSON (and would vanish from the JSON twin)
  customObjective("./l.ts", { options: { schedule: (step: number) => step } });
  const custom: Recipe = recipe({
    ...base,
    objective: customObjective("./l.ts", { options: { clip: 0.2, on: [true, null] } }),
  });
  assert.ok(validateRecipe(custom).ok);
});

Deno.test("recipes compose by spreading, and the builders' results are recipe parts", () => {
  const composed: Recipe = recipe({ ...base, name: "composed", objective: grpo({ beta: 0.01 }) });
  const fromFile: Recipe = recipe({
    ...base,
    data: jsonl("data/train.jsonl", { prompt: "question", answer: "answer", eval: 10 }),
    rewards: [
      { source: rewards.numericAnswer({ tolerance: 0.5 }), success: true },
      { source: rewards.regexFormat("^\\d+$", { flags: "m" }), weight: 0.1 },
    ],
  });
  assert.ok(validateRecipe(composed).ok);
  assert.ok(validateRecipe(fromFile).ok);
});
