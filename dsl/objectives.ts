/**
 * The objective presets as data over shared axes (docs/objectives.md): advantage baseline and scale,
 * importance ratio and clipping, KL to the reference, aggregation. This table is the only place
 * that maps a preset's name to its behaviour: the axes, the defaults no schema annotation can
 * state, and what the compiler does differently for a preset (its default number of mini-batches,
 * its warning). The compiler and the runtime read it and never branch on the name.
 *
 * The option defaults that are constants live in the schema (`dsl/schema.ts`) alone:
 * `resolveObjective()` fills them from there, for the compiler and for the runtime's objectives.
 *
 * @module
 */

import { fillDefaults, type SchemaLike } from "./_schema_walk.ts";
import {
  type CustomObjective,
  type CustomReads,
  type KindOf,
  type Objective,
  ObjectiveSchema,
} from "./schema.ts";

/** A value with every optional field present (what `compile()` resolves). */
export type Resolved<T> = T extends unknown ? { [K in keyof T]-?: Exclude<T[K], undefined> }
  : never;

/** A custom objective with every option resolved, down to what it reads. */
export type ResolvedCustomObjective = {
  [K in keyof Resolved<CustomObjective>]: K extends "reads" ? Resolved<CustomReads>
    : Resolved<CustomObjective>[K];
};

/**
 * The options of preset `K` as a caller of its loss may give them: each optional (the runtime's
 * objectives resolve them with `resolveObjective()`).
 */
export type ObjectiveOptions<K extends Objective["kind"]> = Partial<KindOf<Objective, K>>;

/** An objective with every option resolved. */
export type ResolvedObjective =
  | Resolved<Exclude<Objective, { kind: "custom" }>>
  | ResolvedCustomObjective;

/** The shared axes every preset is a point of. */
export interface ObjectiveAxes {
  /** The loss family: reward matching, a clipped surrogate, DPO on pairs, UNA, or your own. */
  loss: "gift" | "clipped-surrogate" | "dpo-pairs" | "una" | "custom";
  /** How rewards become advantages; null when the loss uses rewards otherwise. */
  advantage: {
    baseline: "group-mean" | "leave-one-out";
    scale: "group-std" | "none";
    /** Added to the standard deviation; 0 when nothing is scaled. */
    epsilon: number;
  } | null;
  /** The importance ratio π/π_old and its clip range [1 − low, 1 + high]; null for none. */
  ratio: { level: "token" | "sequence"; clipLow: number; clipHigh: number } | null;
  /** The k3 KL to the reference, in the loss or subtracted from the reward; null for none. */
  kl: { beta: number; estimator: "k3"; placement: "loss" | "reward" } | null;
  /** How per-token or per-sequence losses are averaged. */
  aggregation: "sequence-mean" | "token-mean" | "constant" | "pair-mean";
  /**
   * Whether the loss uses the implicit reward u = Σ mask·(log π − log π_ref); for a custom
   * objective, whether it reads the reference's log-probs at all.
   */
  implicitReward: boolean;
  /**
   * Whether the loss reads log π_old (a ratio does): with several optimiser steps per batch, the
   * trainer then computes it in a separate pass before the update.
   */
  readsOld: boolean;
  /** DAPO's dynamic sampling: refill groups whose success rewards are all equal. */
  dynamicSampling: { maxRounds: number } | null;
  /** Exclude truncated completions from the loss. */
  maskTruncated: boolean;
}

/** The ε of the std-scaled GRPO family (TRL's value). */
export const GRPO_STD_EPSILON = 1e-4;

const NO_EXTRAS = { dynamicSampling: null, maskTruncated: false } as const;

function kl(beta: number, placement: "loss" | "reward"): ObjectiveAxes["kl"] {
  return beta > 0 ? { beta, estimator: "k3", placement } : null;
}

function grpoAdvantage(): ObjectiveAxes["advantage"] {
  return { baseline: "group-mean", scale: "group-std", epsilon: GRPO_STD_EPSILON };
}

/** The options of preset `K` as the schema leaves them: constant defaults filled, others not. */
type Filled<K extends Objective["kind"]> = KindOf<Objective, K>;

/** The resolved options of preset `K`. */
type ResolvedOf<K extends Objective["kind"]> = Extract<ResolvedObjective, { kind: K }>;

/** One row of the table: what a preset is, as data. */
interface Preset<K extends Objective["kind"]> {
  /** Its point of the shared axes, given its resolved options. */
  axes: (options: ResolvedOf<K>) => ObjectiveAxes;
  /**
   * Completes the options after the schema's defaults are filled: the defaults that depend on
   * another option (an unset upper clip equals the lower one). Absent: nothing to complete.
   */
  complete?: (options: Filled<K>) => ResolvedOf<K>;
  /**
   * Optimiser steps per sampled batch when the recipe sets no `miniBatches`: `"one"`, or
   * `"several"` (the smallest divisor of `group.prompts` above 1) for a loss whose implicit reward
   * only moves after an update within the batch (GIFT).
   */
  miniBatches: "one" | "several";
  /**
   * For a loss that reads the implicit reward: what is always 0 with reference 'rollout' and one
   * optimiser step per batch (the compiler's warning). @default "the implicit reward is always 0"
   */
  atRollout?: string;
}

type Presets = { [K in Objective["kind"]]: Preset<K> };

/** An unset upper clip equals the lower one. */
function symmetricClip<O extends { epsilon?: number; epsilonHigh?: number }>(
  o: O,
): O & { epsilonHigh: number } {
  return { ...o, epsilonHigh: o.epsilonHigh ?? o.epsilon! };
}

/** The table of docs/objectives.md, one entry per preset. */
const PRESETS: Presets = {
  gift: {
    axes: (o) => ({
      loss: "gift",
      advantage: { baseline: "group-mean", scale: "group-std", epsilon: o.stdEpsilon },
      ratio: null,
      kl: null,
      aggregation: "sequence-mean",
      implicitReward: true,
      readsOld: false,
      ...NO_EXTRAS,
    }),
    miniBatches: "several",
    atRollout: "the implicit reward is always 0 and GIFT reduces to normalised REINFORCE",
  },
  grpo: {
    axes: (o) => ({
      loss: "clipped-surrogate",
      advantage: grpoAdvantage(),
      ratio: { level: "token", clipLow: o.epsilon, clipHigh: o.epsilonHigh },
      kl: kl(o.beta, "loss"),
      aggregation: "sequence-mean",
      implicitReward: false,
      readsOld: true,
      ...NO_EXTRAS,
    }),
    complete: (o) => symmetricClip(o) as ResolvedOf<"grpo">,
    miniBatches: "one",
  },
  drGrpo: {
    axes: (o) => ({
      loss: "clipped-surrogate",
      advantage: { baseline: "group-mean", scale: "none", epsilon: 0 },
      ratio: { level: "token", clipLow: o.epsilon, clipHigh: o.epsilonHigh },
      kl: kl(o.beta, "loss"),
      aggregation: "constant",
      implicitReward: false,
      readsOld: true,
      ...NO_EXTRAS,
    }),
    complete: (o) => symmetricClip(o) as ResolvedOf<"drGrpo">,
    miniBatches: "one",
  },
  dapo: {
    axes: (o) => ({
      loss: "clipped-surrogate",
      advantage: grpoAdvantage(),
      ratio: { level: "token", clipLow: o.epsilon, clipHigh: o.epsilonHigh },
      kl: kl(o.beta, "loss"),
      aggregation: "token-mean",
      implicitReward: false,
      readsOld: true,
      dynamicSampling: o.dynamicSampling ? { maxRounds: o.maxSamplingRounds } : null,
      maskTruncated: o.maskTruncated,
    }),
    miniBatches: "one",
  },
  gspo: {
    axes: (o) => ({
      loss: "clipped-surrogate",
      advantage: grpoAdvantage(),
      ratio: { level: "sequence", clipLow: o.epsilon, clipHigh: o.epsilonHigh },
      kl: kl(o.beta, "loss"),
      aggregation: "sequence-mean",
      implicitReward: false,
      readsOld: true,
      ...NO_EXTRAS,
    }),
    miniBatches: "one",
  },
  rloo: {
    axes: (o) => ({
      loss: "clipped-surrogate",
      advantage: { baseline: "leave-one-out", scale: "none", epsilon: 0 },
      ratio: { level: "sequence", clipLow: o.epsilon, clipHigh: o.epsilon },
      kl: kl(o.beta, "reward"),
      aggregation: "sequence-mean",
      implicitReward: false,
      readsOld: true,
      ...NO_EXTRAS,
    }),
    miniBatches: "one",
  },
  onlineDpo: {
    axes: () => ({
      loss: "dpo-pairs",
      advantage: null,
      ratio: null,
      kl: null,
      aggregation: "pair-mean",
      implicitReward: true,
      readsOld: false,
      ...NO_EXTRAS,
    }),
    miniBatches: "one",
  },
  una: {
    axes: () => ({
      loss: "una",
      advantage: null,
      ratio: null,
      kl: null,
      aggregation: "sequence-mean",
      implicitReward: true,
      readsOld: false,
      ...NO_EXTRAS,
    }),
    miniBatches: "one",
  },
  // Your own loss: the trainer hands it raw rewards and reads only what it declares it reads.
  custom: {
    axes: (o) => ({
      loss: "custom",
      advantage: null,
      ratio: null,
      kl: null,
      aggregation: "sequence-mean", // nominal: the module aggregates as it likes
      implicitReward: o.reads.reference,
      readsOld: o.reads.old,
      ...NO_EXTRAS,
    }),
    miniBatches: "one",
    atRollout: "refLogp is logp detached, so log π/π_ref is always 0",
  },
};

/** A row of the table, typed for any objective (each row is checked against its kind above). */
interface AnyPreset {
  axes: (options: ResolvedObjective) => ObjectiveAxes;
  complete?: (options: Objective) => ResolvedObjective;
  miniBatches: "one" | "several";
  atRollout?: string;
}

function presetOf(kind: Objective["kind"]): AnyPreset {
  return PRESETS[kind] as unknown as AnyPreset;
}

const OBJECTIVE_SCHEMA = ObjectiveSchema as unknown as SchemaLike;

/**
 * An objective with every option resolved: the schema's defaults filled in, then the defaults
 * that depend on another option (an unset `epsilonHigh` is `epsilon` for grpo and drGrpo). The
 * one place an objective's defaults are applied: `compile()` calls it, and so does each runtime
 * objective on the options it is given (a plan's are already resolved; a direct caller's may be
 * partial). Fields the objective does not have are dropped.
 *
 * @example
 * ```ts
 * resolveObjective({ kind: "grpo", epsilon: 0.3 });
 * // { kind: "grpo", beta: 0.04, epsilon: 0.3, epsilonHigh: 0.3 }
 * ```
 */
export function resolveObjective<K extends Objective["kind"]>(
  objective: KindOf<Objective, K>,
): ResolvedOf<K> {
  const filled = fillDefaults(OBJECTIVE_SCHEMA, objective) as Filled<K>;
  const { complete } = presetOf(filled.kind);
  return (complete ? complete(filled) : filled) as ResolvedOf<K>;
}

/**
 * Optimiser steps per sampled batch for a recipe that sets no `miniBatches`, from the preset
 * table: 1, or for GIFT the smallest divisor of `prompts` above 1 (1 when there is none).
 *
 * @example
 * ```ts
 * defaultMiniBatches({ kind: "gift" }, 16); // 2
 * defaultMiniBatches({ kind: "grpo" }, 16); // 1
 * ```
 */
export function defaultMiniBatches(
  objective: { kind: Objective["kind"] },
  prompts: number,
): number {
  if (presetOf(objective.kind).miniBatches === "one") return 1;
  for (let k = 2; k <= prompts; k++) if (prompts % k === 0) return k;
  return 1;
}

/**
 * What is always 0 for an objective that reads the implicit reward, with reference 'rollout' and
 * one optimiser step per batch (the compiler's warning says it).
 *
 * @example
 * ```ts
 * atRollout({ kind: "una" }); // "the implicit reward is always 0"
 * ```
 */
export function atRollout(objective: { kind: Objective["kind"] }): string {
  return presetOf(objective.kind).atRollout ?? "the implicit reward is always 0";
}

/**
 * The axes of a resolved objective.
 *
 * @example
 * ```ts
 * objectiveAxes({ kind: "gspo", beta: 0, epsilon: 3e-4, epsilonHigh: 4e-4 }).ratio;
 * // { level: "sequence", clipLow: 0.0003, clipHigh: 0.0004 }
 * ```
 */
export function objectiveAxes(objective: ResolvedObjective): ObjectiveAxes {
  return presetOf(objective.kind).axes(objective);
}

/** Whether the objective reads log-probs under the reference policy. */
export function usesReference(axes: ObjectiveAxes): boolean {
  return axes.implicitReward || axes.kl !== null;
}

/** The formula of the loss, for the printed plan. */
export function lossFormula(objective: ResolvedObjective, axes: ObjectiveAxes): string {
  switch (axes.loss) {
    case "gift": {
      const betaC = objective.kind === "gift" ? objective.betaC : 1;
      const scaled = betaC === 1 ? "ũ" : `${betaC}·ũ`;
      return `mean over rows of (Â − ${scaled})², ũ the group-standardised Σ log π/π_ref`;
    }
    case "clipped-surrogate": {
      const r = axes.ratio!;
      const ratio = r.level === "token" ? "token ratio" : "sequence ratio";
      const range = `[${fmt(1 - r.clipLow)}, ${fmt(1 + r.clipHigh)}]`;
      const penalty = axes.kl?.placement === "loss" ? ` + ${axes.kl.beta}·KL(k3)` : "";
      return `−min(w·A, clip(w, ${range})·A)${penalty}, w the ${ratio}, ${axes.aggregation}`;
    }
    case "dpo-pairs": {
      const beta = objective.kind === "onlineDpo" ? objective.beta : 0;
      return `−log σ(${beta}·[(Σ log π − Σ log π_ref)(best) − (…)(worst)]), mean over pairs`;
    }
    case "una": {
      const beta = objective.kind === "una" ? objective.beta : 0;
      return `mean over rows of (σ(${beta}·u) − σ(r))², u = Σ log π/π_ref`;
    }
    case "custom": {
      if (objective.kind !== "custom") return "custom";
      const { module, export: name, options } = objective;
      return `${name} from ${JSON.stringify(module)} with options ${JSON.stringify(options)}`;
    }
  }
}

function fmt(x: number): string {
  return String(Number(x.toPrecision(10)));
}
