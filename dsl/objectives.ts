/**
 * The objective presets as data over shared axes (OBJECTIVES.md): advantage baseline and scale,
 * importance ratio and clipping, KL to the reference, aggregation. This table is the only place
 * that maps a preset's name to its behaviour; the runtime reads the axes from the plan and never
 * branches on the name.
 *
 * @module
 */

import type { CustomObjective, CustomReads, Objective } from "./schema.ts";

/** A value with every optional field present (what `compile()` resolves). */
export type Resolved<T> = T extends unknown ? { [K in keyof T]-?: Exclude<T[K], undefined> }
  : never;

/** A custom objective with every option resolved, down to what it reads. */
export type ResolvedCustomObjective = {
  [K in keyof Resolved<CustomObjective>]: K extends "reads" ? Resolved<CustomReads>
    : Resolved<CustomObjective>[K];
};

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

type Presets = {
  [K in Objective["kind"]]: (options: Extract<ResolvedObjective, { kind: K }>) => ObjectiveAxes;
};

/** The table of OBJECTIVES.md, one entry per preset. */
const PRESETS: Presets = {
  gift: (o) => ({
    loss: "gift",
    advantage: { baseline: "group-mean", scale: "group-std", epsilon: o.stdEpsilon },
    ratio: null,
    kl: null,
    aggregation: "sequence-mean",
    implicitReward: true,
    readsOld: false,
    ...NO_EXTRAS,
  }),
  grpo: (o) => ({
    loss: "clipped-surrogate",
    advantage: grpoAdvantage(),
    ratio: { level: "token", clipLow: o.epsilon, clipHigh: o.epsilonHigh },
    kl: kl(o.beta, "loss"),
    aggregation: "sequence-mean",
    implicitReward: false,
    readsOld: true,
    ...NO_EXTRAS,
  }),
  drGrpo: (o) => ({
    loss: "clipped-surrogate",
    advantage: { baseline: "group-mean", scale: "none", epsilon: 0 },
    ratio: { level: "token", clipLow: o.epsilon, clipHigh: o.epsilonHigh },
    kl: kl(o.beta, "loss"),
    aggregation: "constant",
    implicitReward: false,
    readsOld: true,
    ...NO_EXTRAS,
  }),
  dapo: (o) => ({
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
  gspo: (o) => ({
    loss: "clipped-surrogate",
    advantage: grpoAdvantage(),
    ratio: { level: "sequence", clipLow: o.epsilon, clipHigh: o.epsilonHigh },
    kl: kl(o.beta, "loss"),
    aggregation: "sequence-mean",
    implicitReward: false,
    readsOld: true,
    ...NO_EXTRAS,
  }),
  rloo: (o) => ({
    loss: "clipped-surrogate",
    advantage: { baseline: "leave-one-out", scale: "none", epsilon: 0 },
    ratio: { level: "sequence", clipLow: o.epsilon, clipHigh: o.epsilon },
    kl: kl(o.beta, "reward"),
    aggregation: "sequence-mean",
    implicitReward: false,
    readsOld: true,
    ...NO_EXTRAS,
  }),
  onlineDpo: () => ({
    loss: "dpo-pairs",
    advantage: null,
    ratio: null,
    kl: null,
    aggregation: "pair-mean",
    implicitReward: true,
    readsOld: false,
    ...NO_EXTRAS,
  }),
  una: () => ({
    loss: "una",
    advantage: null,
    ratio: null,
    kl: null,
    aggregation: "sequence-mean",
    implicitReward: true,
    readsOld: false,
    ...NO_EXTRAS,
  }),
  // Your own loss: the trainer hands it raw rewards and reads only what it declares it reads.
  custom: (o) => ({
    loss: "custom",
    advantage: null,
    ratio: null,
    kl: null,
    aggregation: "sequence-mean", // nominal: the module aggregates as it likes
    implicitReward: o.reads.reference,
    readsOld: o.reads.old,
    ...NO_EXTRAS,
  }),
};

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
  const preset = PRESETS[objective.kind] as (o: ResolvedObjective) => ObjectiveAxes;
  return preset(objective);
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
