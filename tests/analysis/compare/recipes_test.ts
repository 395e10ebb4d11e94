/** The recipes of a comparison: names, seeds, the objective swap and the reference's handling. */

import assert from "node:assert/strict";
import type { Recipe } from "../../../dsl/schema.ts";
import {
  comparisonSeeds,
  comparisonVariant,
  runName,
  tuningSeed,
  variantRecipe,
  withAbsolutePaths,
} from "../../../analysis/compare/recipes.ts";
import { planComparison } from "../../../analysis/compare/compare.ts";
import { parseObjectives } from "../../../analysis/compare/options.ts";
import { TINY } from "../../runtime/_tiny.ts";

/** TINY with `changes`. */
function tiny(changes: Partial<Recipe> = {}): Recipe {
  return { ...TINY, ...changes } as Recipe;
}

/** `recipe` without its optional field `key`. */
function without(recipe: Recipe, key: "seed" | "reference"): Recipe {
  const { [key]: _, ...rest } = recipe;
  return rest;
}

function variant(base: Recipe, objective: Recipe["objective"]["kind"], seed = 1) {
  const result = comparisonVariant(base, { objective, seed });
  assert.ok(result.ok, `${objective}: ${result.ok ? "" : result.issues.join("\n")}`);
  return result.variant;
}

Deno.test("runName() is <name>-<objective>-s<seed>, with -lr<lr> only when the lr is set", () => {
  assert.equal(runName("tiny", { objective: "gift", seed: 7 }), "tiny-gift-s7");
  assert.equal(runName("tiny", { objective: "dapo", seed: 8, lr: 2e-4 }), "tiny-dapo-s8-lr0.0002");
  assert.equal(runName("tiny", { objective: "gspo", seed: 9, lr: 1e-7 }), "tiny-gspo-s9-lr1e-7");
});

Deno.test("comparisonSeeds() counts up from the recipe's seed; tuningSeed() is 1000 above it", () => {
  assert.deepEqual(comparisonSeeds(tiny(), 3), [7, 8, 9]);
  assert.deepEqual(comparisonSeeds(without(tiny(), "seed"), 2), [0, 1]);
  assert.equal(tuningSeed(tiny()), 1007);
  assert.equal(tuningSeed(without(tiny(), "seed")), 1000);
});

Deno.test("variantRecipe() swaps the objective for its preset and keeps the budget", () => {
  const base = tiny({ objective: { kind: "gift", betaC: 2 }, $schema: "../recipe.schema.json" });
  const recipe = variantRecipe(base, { objective: "grpo", seed: 8, lr: 5e-4 });
  assert.equal(recipe.name, "tiny-grpo-s8-lr0.0005");
  assert.equal(recipe.seed, 8);
  assert.deepEqual(recipe.objective, { kind: "grpo" }); // the preset's defaults, not betaC
  assert.deepEqual(recipe.optimizer, { lr: 5e-4 });
  assert.ok(!("$schema" in recipe));
  for (const key of ["policy", "data", "rewards", "group", "sampling", "steps", "eval"] as const) {
    assert.deepEqual(recipe[key], base[key], key);
  }
  // Without an lr, the recipe's optimiser as it is.
  assert.equal(variantRecipe(base, { objective: "gift", seed: 7 }).optimizer, base.optimizer);
});

Deno.test("comparisonVariant() keeps a reference the objective accepts, with its warnings", () => {
  const gift = variant(tiny({ reference: "initial" }), "gift");
  assert.equal(gift.recipe.reference, "initial");
  assert.equal(gift.referenceDropped, false);
  assert.deepEqual(gift.warnings, []);
  assert.equal(gift.rows, 16);
  assert.equal(gift.groupSize, 4);
  assert.equal(gift.steps, 5);
  assert.equal(gift.lr, 1e-3);

  // DAPO has no KL term: 'initial' compiles, with a warning, and gives the KL curve.
  const dapo = variant(tiny({ reference: "initial" }), "dapo");
  assert.equal(dapo.recipe.reference, "initial");
  assert.equal(dapo.referenceDropped, false);
  assert.match(dapo.warnings.join("\n"), /^reference: dapo without a KL term/);

  // 'none' suits DAPO (β = 0), so it stays.
  assert.equal(variant(tiny({ reference: "none" }), "dapo").recipe.reference, "none");
});

Deno.test("comparisonVariant() drops a reference the objective rejects, for its default", () => {
  // GIFT's implicit reward and GRPO's KL term (β = 0.04) both need one.
  for (const objective of ["gift", "grpo"] as const) {
    const v = variant(tiny({ reference: "none" }), objective);
    assert.equal(v.referenceDropped, true, objective);
    assert.ok(!("reference" in v.recipe), objective);
  }
  // Without a reference in the base recipe, nothing is dropped.
  const plain = variant(without(tiny(), "reference"), "grpo");
  assert.equal(plain.referenceDropped, false);
  assert.ok(!("reference" in plain.recipe));
});

Deno.test("comparisonVariant() returns any other compile issue as one line each", () => {
  const result = comparisonVariant(tiny({ seed: 4_294_967_295 }), {
    objective: "gift",
    seed: 4_294_967_296,
  });
  assert.ok(!result.ok);
  assert.deepEqual(result.issues, [
    "seed: expected an integer between 0 and 4294967295, got 4294967296",
  ]);
});

Deno.test("planComparison() lists every run, seed by seed within each objective", () => {
  const planned = planComparison(tiny({ reference: "none" }), {
    objectives: ["gift", "dapo"],
    seeds: 2,
  });
  assert.ok(planned.ok);
  const { plan } = planned;
  assert.equal(plan.tuning, null);
  assert.deepEqual(plan.seeds, [7, 8]);
  assert.deepEqual(plan.candidates.map((v) => v.name), [
    "tiny-gift-s7",
    "tiny-gift-s8",
    "tiny-dapo-s7",
    "tiny-dapo-s8",
  ]);
  assert.deepEqual(plan.referenceDropped, ["gift"]);
});

Deno.test("planComparison() with lrs tunes each objective × lr on the tuning seed", () => {
  const planned = planComparison(tiny(), {
    objectives: ["gift", "grpo"],
    seeds: 2,
    lrs: [1e-4, 5e-4],
  });
  assert.ok(planned.ok);
  const { tuning, candidates } = planned.plan;
  assert.equal(tuning?.seed, 1007);
  assert.deepEqual(tuning?.runs.map((v) => v.name), [
    "tiny-gift-s1007-lr0.0001",
    "tiny-gift-s1007-lr0.0005",
    "tiny-grpo-s1007-lr0.0001",
    "tiny-grpo-s1007-lr0.0005",
  ]);
  // Every lr is a candidate for the comparison phase, which runs the chosen one.
  assert.equal(candidates.length, 2 * 2 * 2);
  assert.ok(candidates.every((v) => v.seed === 7 || v.seed === 8));
  assert.deepEqual(
    candidates.filter((v) => v.objective === "grpo" && v.lr === 5e-4).map((v) => v.name),
    ["tiny-grpo-s7-lr0.0005", "tiny-grpo-s8-lr0.0005"],
  );
});

Deno.test("planComparison() reports each problem once, naming the objectives it concerns", () => {
  const planned = planComparison(
    tiny({ rewards: [{ source: { kind: "numericAnswer" }, success: false }], eval: { every: 2 } }),
    { objectives: ["gift", "dapo"], seeds: 2 },
  );
  assert.ok(!planned.ok);
  assert.equal(planned.issues.length, 2, planned.issues.join("\n"));
  assert.match(planned.issues[0]!, /^objectives gift, dapo: eval\.metric: missing; /);
  assert.match(planned.issues[1]!, /^objective dapo: rewards: dapo's dynamic sampling /);
});

Deno.test("withAbsolutePaths() resolves data, reward modules and checkpoints from the recipe", () => {
  const base = tiny({
    data: { kind: "jsonl", path: "data/train.jsonl", eval: 10 },
    rewards: [
      { source: { kind: "fn", module: "./reward.ts", export: "score" } },
      { source: { kind: "fn", module: "https://example.com/r.ts" } },
      { source: { kind: "rewardModel", checkpoint: "../rm" }, success: false },
    ],
    reference: { checkpoint: "runs/ref/checkpoints/final" },
  });
  const resolved = withAbsolutePaths(base, new URL("file:///work/recipes/tiny.json"));
  assert.deepEqual(resolved.data, {
    kind: "jsonl",
    path: "/work/recipes/data/train.jsonl",
    eval: 10,
  });
  assert.deepEqual(resolved.rewards.map((r) => r.source), [
    { kind: "fn", module: "/work/recipes/reward.ts", export: "score" },
    { kind: "fn", module: "https://example.com/r.ts" },
    { kind: "rewardModel", checkpoint: "/work/rm" },
  ]);
  assert.deepEqual(resolved.reference, { checkpoint: "/work/recipes/runs/ref/checkpoints/final" });
  // A remote recipe's paths become URLs.
  const remote = withAbsolutePaths(base, new URL("https://example.com/r/tiny.json"));
  assert.deepEqual(remote.data, {
    kind: "jsonl",
    path: "https://example.com/r/data/train.jsonl",
    eval: 10,
  });
  // Nothing else changes.
  assert.deepEqual(withAbsolutePaths(tiny(), new URL("file:///x/y.json")), tiny());
});

Deno.test("parseObjectives() and comparisonVariant() take a reference per objective: gift@rollout", () => {
  assert.deepEqual(parseObjectives("gift@rollout,gift,grpo"), ["gift@rollout", "gift", "grpo"]);
  assert.throws(
    () => parseObjectives("gift@frozen"),
    /after '@' expected one reference of initial/,
  );
  assert.throws(
    () => parseObjectives("gfit@rollout"),
    /unknown objective 'gfit' \(did you mean gift\?\)/,
  );
  const base = { ...TINY, reference: "initial" as const };
  const rollout = comparisonVariant(base, { objective: "gift@rollout", seed: 3 });
  assert.ok(rollout.ok);
  assert.equal(rollout.variant.recipe.reference, "rollout");
  assert.equal(rollout.variant.name, "tiny-gift-rollout-s3");
  assert.equal(rollout.variant.referenceDropped, false);
  const kept = comparisonVariant(base, { objective: "gift", seed: 3 });
  assert.ok(kept.ok);
  assert.equal(kept.variant.recipe.reference, "initial");
  // A declared reference that does not compile is an error, not silently dropped.
  const none = comparisonVariant(base, { objective: "gift@none", seed: 3 });
  assert.equal(none.ok, false);
});
