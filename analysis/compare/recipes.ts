/**
 * The recipes of a comparison: the base recipe once per objective, seed and learning rate, all
 * with the same budget (steps, group, prompts, model, warm start, data). Each is the base recipe
 * with `objective: { kind }` (the preset's defaults), `seed`, optionally `optimizer.lr`, and the
 * name `<name>-<objective>-s<seed>[-lr<lr>]`. The base recipe's `reference` is kept when the
 * variant compiles with it and dropped otherwise, so that the compiler picks the objective's
 * default.
 *
 * Pure: no I/O, no tensors.
 *
 * @module
 */

import { fileURLToPath } from "node:url";
import { type CompileOptions, safeCompile } from "../../dsl/compile.ts";
import { formatIssue } from "../../dsl/issues.ts";
import type { Objective, Recipe } from "../../dsl/schema.ts";
import { type ObjectiveLabel, splitLabel } from "./options.ts";

/** How far the tuning seed is from the recipe's seed, so that it shares no run with the seeds. */
export const TUNING_SEED_OFFSET = 1000;

/** One run of a comparison: its recipe and what its metrics need from the plan. */
export interface RunVariant {
  /** `<name>-<objective>-s<seed>[-lr<lr>]`, the recipe's name. */
  name: string;
  objective: ObjectiveLabel;
  seed: number;
  lr: number;
  /** The recipe to write and run. */
  recipe: Recipe;
  /** Whether the base recipe's `reference` was dropped for this objective. */
  referenceDropped: boolean;
  /** Steps of the run. */
  steps: number;
  /** Rows sampled per step (P·G), and G, to count the sampled tokens. */
  rows: number;
  groupSize: number;
  /** The compiler's warnings, one line each. */
  warnings: string[];
}

/** A variant, or the problems that keep it from compiling (one line each). */
export type VariantResult = { ok: true; variant: RunVariant } | { ok: false; issues: string[] };

/** What changes from the base recipe. */
export interface VariantChange {
  objective: ObjectiveLabel;
  seed: number;
  /** The learning rate; absent keeps the recipe's and leaves `-lr…` out of the name. */
  lr?: number;
}

/**
 * The name of a run: `<name>-<objective>-s<seed>`, then `-lr<lr>` when the lr is set.
 *
 * @example
 * ```ts
 * runName("addition", { objective: "gift", seed: 3, lr: 2e-4 }); // "addition-gift-s3-lr0.0002"
 * ```
 */
export function runName(base: string, change: VariantChange): string {
  const lr = change.lr === undefined ? "" : `-lr${change.lr}`;
  return `${base}-${change.objective.replace("@", "-")}-s${change.seed}${lr}`;
}

/**
 * The seeds of a comparison: the recipe's seed and the `count − 1` after it.
 *
 * @example
 * ```ts
 * comparisonSeeds({ ...base, seed: 7 }, 3); // [7, 8, 9]
 * ```
 */
export function comparisonSeeds(base: Recipe, count: number): number[] {
  return Array.from({ length: count }, (_, k) => (base.seed ?? 0) + k);
}

/**
 * The seed the learning rates are tuned on: the recipe's seed + 1000, apart from the seeds.
 *
 * @example
 * ```ts
 * tuningSeed({ ...base, seed: 7 }); // 1007
 * ```
 */
export function tuningSeed(base: Recipe): number {
  return (base.seed ?? 0) + TUNING_SEED_OFFSET;
}

/**
 * The base recipe with another objective (its preset's defaults), seed, name and perhaps lr; the
 * reference is left as the base has it.
 *
 * @example
 * ```ts
 * variantRecipe(base, { objective: "grpo", seed: 2 }).objective; // { kind: "grpo" }
 * ```
 */
export function variantRecipe(base: Recipe, change: VariantChange): Recipe {
  const { $schema: _schema, ...rest } = base;
  const { kind, reference } = splitLabel(change.objective);
  return {
    ...rest,
    ...(reference === undefined ? {} : { reference }),
    name: runName(base.name, change),
    seed: change.seed,
    objective: { kind } as Objective,
    optimizer: change.lr === undefined ? base.optimizer : { ...base.optimizer, lr: change.lr },
  };
}

/**
 * Builds and compiles one run of a comparison. When the variant does not compile with the base
 * recipe's reference, it is compiled without one (the objective's default); what still does not
 * compile is returned as one line per issue.
 *
 * @example
 * ```ts
 * const result = comparisonVariant({ ...base, reference: "none" }, { objective: "grpo", seed: 1 });
 * // ok, with reference dropped: grpo's KL term needs one, and compile picks 'initial'
 * ```
 */
export function comparisonVariant(
  base: Recipe,
  change: VariantChange,
  options: CompileOptions = {},
): VariantResult {
  const recipe = variantRecipe(base, change);
  let compiled = safeCompile(recipe, options);
  let chosen = recipe;
  const declared = splitLabel(change.objective).reference !== undefined;
  if (!compiled.ok && base.reference !== undefined && !declared) {
    const { reference: _reference, ...withoutReference } = recipe;
    compiled = safeCompile(withoutReference, options);
    chosen = withoutReference;
  }
  if (!compiled.ok) return { ok: false, issues: compiled.issues.map(formatIssue) };
  const { plan } = compiled;
  return {
    ok: true,
    variant: {
      name: recipe.name,
      objective: change.objective,
      seed: change.seed,
      lr: plan.optimizer.lr,
      recipe: chosen,
      referenceDropped: chosen !== recipe,
      steps: plan.schedule.steps,
      rows: plan.shapes.rows,
      groupSize: plan.shapes.groupSize,
      warnings: plan.warnings.map(formatIssue),
    },
  };
}

/**
 * The recipe with its relative paths (JSON Lines data, `fn` reward modules, reward-model and
 * reference checkpoints) made absolute against `baseUrl`, the recipe's location, so that it can
 * be written and run from another directory.
 *
 * @example
 * ```ts
 * withAbsolutePaths(recipe, new URL("file:///work/recipes/r.json")).data;
 * // { kind: "jsonl", path: "/work/recipes/data.jsonl", … } for path "./data.jsonl"
 * ```
 */
export function withAbsolutePaths(recipe: Recipe, baseUrl: URL): Recipe {
  const absolute = (spec: string): string => {
    if (/^[A-Za-z][A-Za-z0-9+.-]*:/.test(spec)) return spec; // a URL or npm:/jsr: specifier
    const url = new URL(spec, baseUrl);
    return url.protocol === "file:" ? fileURLToPath(url) : url.href;
  };
  return {
    ...recipe,
    policy: recipe.policy.kind === "hfModel"
      ? { ...recipe.policy, path: absolute(recipe.policy.path) }
      : recipe.policy,
    data: recipe.data.kind === "jsonl"
      ? { ...recipe.data, path: absolute(recipe.data.path) }
      : recipe.data,
    rewards: recipe.rewards.map((reward) => {
      const source = reward.source;
      if (source.kind === "fn") {
        return { ...reward, source: { ...source, module: absolute(source.module) } };
      }
      if (source.kind === "rewardModel") {
        return { ...reward, source: { ...source, checkpoint: absolute(source.checkpoint) } };
      }
      return reward;
    }),
    ...(typeof recipe.reference === "object"
      ? { reference: { checkpoint: absolute(recipe.reference.checkpoint) } }
      : {}),
  };
}
