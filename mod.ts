/**
 * giftwrap: on-policy RL fine-tuning of language models in TypeScript, built around GIFT
 * (Group-relative Implicit Fine-Tuning), with GRPO, Dr. GRPO, DAPO, GSPO, RLOO, online DPO and UNA
 * as baselines.
 *
 * Write a recipe with the builders, compile it to a plan, print or run the plan. The objectives'
 * math is here too, as plain functions of tensors (`objectives.gift.loss(batch, options)`); the
 * rest of the runtime (`execute()`, the model, the sampler) is in `runtime/mod.ts`.
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

export * from "./dsl/mod.ts";
export { objectives } from "./runtime/rl/objectives/mod.ts";
export type {
  GiftOptions,
  Objective,
  ObjectiveBatch,
  ObjectiveResult,
} from "./runtime/rl/objectives/mod.ts";
export type { RewardFn, Sample } from "./runtime/rl/rewards/types.ts";
export type { Problem } from "./runtime/data/types.ts";
export type { AdditionRow } from "./runtime/data/addition.ts";
export type { MultiplicationRow } from "./runtime/data/multiplication.ts";
export type { SortingRow } from "./runtime/data/sorting.ts";
export type { CountdownRow } from "./runtime/data/countdown.ts";
