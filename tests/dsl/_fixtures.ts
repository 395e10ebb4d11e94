/** Shared test recipes. */

import { gift, type Recipe, recipe, rewards, tasks, tinyGpt } from "../../mod.ts";

/** A small valid recipe; tests derive bad ones from it by spreading. */
export const base: Recipe = recipe({
  name: "base",
  seed: 7,
  policy: tinyGpt({ layers: 2, dModel: 64, heads: 4 }),
  data: tasks.addition({ digits: 2, train: 1000, eval: 100 }),
  rewards: [{ source: rewards.numericAnswer() }],
  group: { size: 8, prompts: 16 },
  objective: gift(),
  optimizer: { lr: 3e-4 },
  steps: 20,
});

/** A deep copy of `value` as plain JSON data (what a JSON recipe would hold). */
export function plain<T>(value: T): T {
  return JSON.parse(JSON.stringify(value));
}
