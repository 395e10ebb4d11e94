import assert from "node:assert/strict";
import {
  customObjective,
  fn,
  type Recipe,
  recipe,
  rewardModel,
  rewards,
  tasks,
  validateRecipe,
} from "../../mod.ts";
import { base } from "./_fixtures.ts";

// A builder only tags its options with a kind: what it returns is the JSON a recipe file holds,
// and JSON.parse(JSON.stringify(recipe)) validates to the same recipe.

/** Validates `r` and its JSON round trip, and returns the validated copy. */
function roundTrip(r: Recipe): Recipe {
  const direct = validateRecipe(r);
  const twin = validateRecipe(JSON.parse(JSON.stringify(r)));
  assert.ok(direct.ok, direct.ok ? "" : JSON.stringify(direct.issues));
  assert.ok(twin.ok, twin.ok ? "" : JSON.stringify(twin.issues));
  assert.deepEqual(twin.recipe, direct.recipe);
  assert.deepEqual(direct.recipe, r);
  return direct.recipe;
}

Deno.test("tasks.multiplication(), tasks.sorting() and tasks.countdown() tag their options", () => {
  assert.deepEqual(tasks.multiplication(), { kind: "multiplication" });
  assert.deepEqual(tasks.multiplication({ digits: 3, train: 100, eval: 10 }), {
    kind: "multiplication",
    digits: 3,
    train: 100,
    eval: 10,
  });
  assert.deepEqual(tasks.sorting({ length: 5, maxValue: 9 }), {
    kind: "sorting",
    length: 5,
    maxValue: 9,
  });
  assert.deepEqual(tasks.countdown({ numbers: 4, maxNumber: 25, maxTarget: 100 }), {
    kind: "countdown",
    numbers: 4,
    maxNumber: 25,
    maxTarget: 100,
  });
  for (
    const data of [
      tasks.multiplication({ digits: 2 }),
      tasks.sorting({ length: 3, maxValue: 99, train: 2000, eval: 0 }),
      tasks.countdown(),
    ]
  ) {
    const source = data.kind === "countdown" ? rewards.countdown() : rewards.exactMatch();
    roundTrip(recipe({ ...base, data, rewards: [{ source }] }));
  }
});

Deno.test("rewards.countdown() is a verifier with no options, usable as eval.metric", () => {
  assert.deepEqual(rewards.countdown(), { kind: "countdown" });
  roundTrip(recipe({
    ...base,
    data: tasks.countdown(),
    rewards: [{ source: rewards.countdown(), onError: "zero" }],
    eval: { metric: rewards.countdown() },
  }));
});

Deno.test("fn() puts the export name and the sandbox and timeout options beside the module", () => {
  assert.deepEqual(fn("./r.ts"), { kind: "fn", module: "./r.ts" });
  assert.deepEqual(fn("./r.ts", "score", { range: [0, 1], sandbox: false, timeoutMs: 500 }), {
    kind: "fn",
    module: "./r.ts",
    export: "score",
    range: [0, 1],
    sandbox: false,
    timeoutMs: 500,
  });
  assert.deepEqual(fn("./r.ts", undefined, { timeoutMs: 60_000 }), {
    kind: "fn",
    module: "./r.ts",
    timeoutMs: 60_000,
  });
  roundTrip(recipe({
    ...base,
    rewards: [
      { source: rewards.numericAnswer(), success: true },
      { source: fn("./r.ts", "score", { sandbox: false }), weight: 0.1, onError: "skip-group" },
    ],
  }));
});

Deno.test("rewardModel() takes the checkpoint and its batch size and range", () => {
  assert.deepEqual(rewardModel("runs/rm/checkpoints/final"), {
    kind: "rewardModel",
    checkpoint: "runs/rm/checkpoints/final",
  });
  assert.deepEqual(rewardModel("rm", { batchSize: 16, range: [-5, 5] }), {
    kind: "rewardModel",
    checkpoint: "rm",
    batchSize: 16,
    range: [-5, 5],
  });
  roundTrip(recipe({
    ...base,
    rewards: [
      { source: rewards.numericAnswer(), success: true },
      { source: rewardModel("rm", { batchSize: 16 }), weight: 0.5, onError: "zero" },
    ],
  }));
});

Deno.test("recipe() takes onError on a reward and split on eval", () => {
  const r = roundTrip(recipe({
    ...base,
    rewards: [{ source: rewards.numericAnswer(), onError: "fail" }],
    eval: { every: 5, split: "train", limit: 50 },
  }));
  assert.equal(r.rewards[0]!.onError, "fail");
  assert.equal(r.eval?.split, "train");
});

Deno.test("customObjective() puts the export, the loss's options and what it reads beside the module", () => {
  assert.deepEqual(customObjective("./losses/mine.ts"), {
    kind: "custom",
    module: "./losses/mine.ts",
  });
  const full = customObjective("./losses/mine.ts", {
    export: "clipped",
    options: { clip: 0.2, schedule: [1, 0.5], mode: "token", note: null, nested: { on: true } },
    reads: { reference: false, old: true },
  });
  assert.deepEqual(full, {
    kind: "custom",
    module: "./losses/mine.ts",
    export: "clipped",
    options: { clip: 0.2, schedule: [1, 0.5], mode: "token", note: null, nested: { on: true } },
    reads: { reference: false, old: true },
  });
  assert.deepEqual(customObjective("./l.ts", { reads: { old: true } }), {
    kind: "custom",
    module: "./l.ts",
    reads: { old: true },
  });
  roundTrip(recipe({ ...base, objective: customObjective("./losses/mine.ts") }));
  const r = roundTrip(recipe({ ...base, objective: full, reference: "initial" }));
  assert.deepEqual(r.objective, full);
});
