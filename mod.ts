/**
 * giftwrap: on-policy RL fine-tuning of language models in TypeScript, built around GIFT
 * (Group-relative Implicit Fine-Tuning), with GRPO, Dr. GRPO, DAPO, GSPO, RLOO, online DPO and UNA
 * as baselines.
 *
 * This entry is the recipe language: write a recipe with the builders, compile it to a plan, print
 * or share the plan. It never loads TensorFlow.js, so declaring, validating and planning a recipe
 * stays light. Running a plan, the model, the sampler and the objectives' math are the runtime's
 * entry, `runtime/mod.ts` (`giftwrap/runtime`).
 *
 * @example
 * ```ts
 * import { compile, formatPlan, gift, recipe, rewards, tasks, tinyGpt } from "./mod.ts";
 *
 * const addition = recipe({
 *   name: "addition-gift",
 *   policy: tinyGpt({ layers: 2, dModel: 128 }),
 *   data: tasks.addition({ digits: 2 }),
 *   rewards: [{ source: rewards.numericAnswer() }],
 *   group: { size: 8, prompts: 16 },
 *   objective: gift(),
 *   optimizer: { lr: 3e-4 },
 *   steps: 150,
 * });
 * console.log(formatPlan(compile(addition)));
 * ```
 *
 * @module
 */

// Declaring a recipe: the builders.
export {
  customObjective,
  type CustomObjectiveOptions,
  dapo,
  drGrpo,
  fn,
  type FnOptions,
  gift,
  grpo,
  gspo,
  hfModel,
  http,
  jsonl,
  type JsonlOptions,
  lora,
  onlineDpo,
  recipe,
  rewardModel,
  type RewardModelOptions,
  rewards,
  rloo,
  tasks,
  tinyGpt,
  una,
} from "./dsl/builders.ts";
export type { Recipe } from "./dsl/schema.ts";

// Checking and compiling it.
export { type LoadedRecipe, loadRecipe, RecipeLoadError } from "./dsl/load.ts";
export { validateRecipe, type ValidationResult } from "./dsl/validate.ts";
export { compile, type CompileOptions, type CompileResult, safeCompile } from "./dsl/compile.ts";
export { formatIssue, type Issue, RecipeError } from "./dsl/issues.ts";
export { recipeJsonSchema } from "./dsl/schema.ts";

// The plan.
export { type Plan, planHash, type PlanInput } from "./dsl/plan.ts";
export { formatPlan } from "./dsl/format.ts";
export { withInputs } from "./dsl/inputs.ts";

// What a reward function module (`fn(module)`) implements and reads: types only, no runtime.
export type { RewardFn, Sample } from "./runtime/rl/rewards/types.ts";
export type { Problem } from "./runtime/data/types.ts";
export type { AdditionRow } from "./runtime/data/addition.ts";
export type { MultiplicationRow } from "./runtime/data/multiplication.ts";
export type { SortingRow } from "./runtime/data/sorting.ts";
export type { CountdownRow } from "./runtime/data/countdown.ts";
