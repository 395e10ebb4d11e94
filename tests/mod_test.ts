// mod.ts is the recipe language alone: declaring, validating and planning a recipe must not load
// TensorFlow.js, and every export is a deliberate, documented one.

import assert from "node:assert/strict";
import { exportDocs, moduleGraph, undocumented } from "./_entry.ts";

const TFJS = /tensorflow|tfjs/i;

Deno.test("mod.ts's module graph holds no TensorFlow.js module, not even a type-only import", async () => {
  const graph = await moduleGraph("mod.ts");
  assert.ok(graph.modules.some((m) => m.endsWith("/dsl/compile.ts")), "the graph reads nothing");
  assert.deepEqual(graph.modules.filter((m) => TFJS.test(m)), []);
  assert.deepEqual(graph.imports.filter((s) => TFJS.test(s)), []);
  // The same check sees TensorFlow.js where it is: in the runtime's entry.
  const runtime = await moduleGraph("runtime/mod.ts");
  assert.ok(runtime.modules.some((m) => m.startsWith("npm:/@tensorflow/tfjs@")));
});

/** Every name mod.ts exports, by what it is for. */
const EXPORTS = {
  builders: [
    "customObjective",
    "CustomObjectiveOptions",
    "dapo",
    "drGrpo",
    "fn",
    "FnOptions",
    "gift",
    "grpo",
    "gspo",
    "http",
    "jsonl",
    "lora",
    "JsonlOptions",
    "onlineDpo",
    "recipe",
    "Recipe",
    "rewardModel",
    "RewardModelOptions",
    "rewards",
    "rloo",
    "tasks",
    "hfModel",
    "tinyGpt",
    "una",
  ],
  checking: [
    "compile",
    "CompileOptions",
    "CompileResult",
    "formatIssue",
    "Issue",
    "LoadedRecipe",
    "loadRecipe",
    "RecipeError",
    "recipeJsonSchema",
    "RecipeLoadError",
    "safeCompile",
    "validateRecipe",
    "ValidationResult",
  ],
  plan: ["formatPlan", "Plan", "planHash", "PlanInput", "withInputs"],
  rewardModules: [
    "AdditionRow",
    "CountdownRow",
    "MultiplicationRow",
    "Problem",
    "RewardFn",
    "Sample",
    "SortingRow",
  ],
};

Deno.test("mod.ts exports the recipe language and nothing internal", async () => {
  const names = (await exportDocs("mod.ts")).map((e) => e.name).sort();
  assert.deepEqual(names, Object.values(EXPORTS).flat().sort());
});

Deno.test("every export of mod.ts has a doc comment with an @example", async () => {
  const exports = await exportDocs("mod.ts");
  assert.ok(exports.length > 40, `only ${exports.length} exports found`);
  assert.deepEqual(undocumented(exports), []);
});

Deno.test("undocumented() names an export without a doc comment or an @example", () => {
  const file = "x.ts";
  assert.deepEqual(
    undocumented([
      { name: "a", file, documented: true, example: true },
      { name: "b", file, documented: true, example: false },
      { name: "c", file, documented: false, example: false },
    ]),
    ["b (x.ts) lacks an @example", "c (x.ts) lacks a doc comment and an @example"],
  );
});
