/**
 * The command-line values of `compare` (and `run --track`), parsed from their text. Each parser
 * returns the value or throws an `Error` whose message is one line for the user; the CLI turns it
 * into a usage error (exit 2).
 *
 * Nothing here loads TensorFlow.js: the CLI imports this module at start-up.
 *
 * @module
 */

import { closest } from "../../dsl/_suggest.ts";
import { type SchemaLike, variantKind } from "../../dsl/_schema_walk.ts";
import { type ObjectiveKind, ObjectiveSchema } from "../../dsl/schema.ts";

/**
 * The objectives a comparison can name: the presets, whose `{ kind }` alone is an objective with
 * its defaults (not `custom`, which needs a module), in the schema's order.
 */
export const OBJECTIVE_KINDS: readonly ObjectiveKind[] =
  ((ObjectiveSchema as unknown as SchemaLike).oneOf ?? [])
    .filter((variant) => (variant.required ?? []).every((key) => key === "kind"))
    .map(variantKind)
    .filter((kind) => kind !== undefined) as ObjectiveKind[];

/** The objectives `compare` runs when `--objectives` is not given. */
export const DEFAULT_OBJECTIVES: readonly ObjectiveKind[] = ["gift", "grpo", "dapo", "gspo"];

/** The extra measurements a run can take (`run --track`), by their command-line names. */
export const TRACKABLE = ["train-accuracy", "kl-initial"] as const;

/** Which extra measurements a run takes: the `track` option of `execute()`. */
export interface Track {
  /** Greedy accuracy on train problems at every evaluation (the train–eval gap). */
  trainAccuracy: boolean;
  /** KL to the policy RL started from, every step. */
  klInitial: boolean;
}

/** The items of a comma-separated list, trimmed, without empty ones or repeats. */
function items(text: string): string[] {
  return [...new Set(text.split(",").map((s) => s.trim()).filter((s) => s !== ""))];
}

/**
 * Parses `gift,grpo,dapo` (each optionally `@initial`, `@rollout` or `@none`, the reference it
 * runs against) into objective labels, suggesting the closest name for a typo.
 *
 * @example
 * ```ts
 * parseObjectives("gift,grpo"); // ["gift", "grpo"]
 * parseObjectives("gfit"); // throws "unknown objective 'gfit' (did you mean gift?)"
 * ```
 */
export function parseObjectives(text: string): ObjectiveLabel[] {
  const labels = items(text);
  if (labels.length === 0) throw new Error("expected at least one objective, such as gift,grpo");
  for (const label of labels) {
    const [name = "", reference, ...more] = label.split("@");
    if (
      reference !== undefined &&
      (more.length > 0 || !(REFERENCES as readonly string[]).includes(reference))
    ) {
      throw new Error(
        `objective '${label}': after '@' expected one reference of ${REFERENCES.join(", ")}`,
      );
    }
    if ((OBJECTIVE_KINDS as readonly string[]).includes(name)) continue;
    const near = closest(name, OBJECTIVE_KINDS);
    throw new Error(
      near === undefined
        ? `unknown objective '${name}': expected some of ${OBJECTIVE_KINDS.join(", ")}`
        : `unknown objective '${name}' (did you mean ${near}?)`,
    );
  }
  return labels;
}

/** The references an objective can be given in a comparison: `gift@rollout`. */
export const REFERENCES = ["initial", "rollout", "none"] as const;

/**
 * An objective of a comparison: a preset's name, optionally with the reference it runs against
 * (`gift@rollout`), so that one preset can be compared with itself under two references.
 */
export type ObjectiveLabel = string;

/**
 * The preset and the reference of a label.
 *
 * @example
 * ```ts
 * splitLabel("gift@rollout"); // { kind: "gift", reference: "rollout" }
 * splitLabel("grpo"); // { kind: "grpo" }
 * ```
 */
export function splitLabel(
  label: ObjectiveLabel,
): { kind: ObjectiveKind; reference?: (typeof REFERENCES)[number] } {
  const [kind, reference] = label.split("@") as [ObjectiveKind, (typeof REFERENCES)[number]?];
  return reference === undefined ? { kind } : { kind, reference };
}

/**
 * Parses learning rates `1e-4,2e-4`: each a number in (0, 1], as `optimizer.lr` allows.
 *
 * @example
 * ```ts
 * parseLrs("1e-4,5e-4"); // [0.0001, 0.0005]
 * ```
 */
export function parseLrs(text: string): number[] {
  const lrs = items(text).map((item) => {
    const lr = Number(item);
    if (!Number.isFinite(lr) || lr <= 0 || lr > 1) {
      throw new Error(`expected learning rates in (0, 1], got '${item}'`);
    }
    return lr;
  });
  if (lrs.length === 0) throw new Error("expected at least one learning rate, such as 1e-4,3e-4");
  return [...new Set(lrs)];
}

/** The most seeds a comparison runs per objective (each seed is a run of every objective). */
export const MAX_SEEDS = 1000;

/**
 * Parses a whole number from `min` up, and at most `max` when given.
 *
 * @example
 * ```ts
 * parseCount("3", 1); // 3
 * parseCount("4294967296", 1, MAX_SEEDS); // throws "expected a whole number >= 1 and <= 1000, …"
 * ```
 */
export function parseCount(text: string, min: number, max?: number): number {
  const n = Number(text.trim());
  if (
    !/^\d+$/.test(text.trim()) || !Number.isSafeInteger(n) || n < min ||
    (max !== undefined && n > max)
  ) {
    const range = max === undefined ? `>= ${min}` : `>= ${min} and <= ${max}`;
    throw new Error(`expected a whole number ${range}, got '${text}'`);
  }
  return n;
}

/**
 * Parses an accuracy, `0.8` or `80%`, into a fraction in [0, 1].
 *
 * @example
 * ```ts
 * parseAccuracy("80%"); // 0.8
 * ```
 */
export function parseAccuracy(text: string): number {
  const trimmed = text.trim();
  const percent = trimmed.endsWith("%");
  const value = Number(percent ? trimmed.slice(0, -1) : trimmed) / (percent ? 100 : 1);
  if (trimmed === "" || !Number.isFinite(value) || value < 0 || value > 1) {
    throw new Error(`expected an accuracy from 0 to 1 (or 0% to 100%), got '${text}'`);
  }
  return value;
}

/**
 * Parses `train-accuracy,kl-initial` (or `none`) into the measurements a run tracks.
 *
 * @example
 * ```ts
 * parseTrack("kl-initial"); // { trainAccuracy: false, klInitial: true }
 * ```
 */
export function parseTrack(text: string): Track {
  const names = items(text);
  const track: Track = { trainAccuracy: false, klInitial: false };
  if (names.length === 1 && names[0] === "none") return track;
  if (names.length === 0) throw new Error(`expected some of ${TRACKABLE.join(", ")}, or none`);
  for (const name of names) {
    if (name === "train-accuracy") track.trainAccuracy = true;
    else if (name === "kl-initial") track.klInitial = true;
    else {
      const near = closest(name, TRACKABLE);
      throw new Error(
        near === undefined
          ? `unknown measurement '${name}': expected some of ${TRACKABLE.join(", ")}, or none`
          : `unknown measurement '${name}' (did you mean ${near}?)`,
      );
    }
  }
  return track;
}

/**
 * The `--track` text for a `Track`, or undefined when it tracks nothing.
 *
 * @example
 * ```ts
 * trackText({ trainAccuracy: true, klInitial: true }); // "train-accuracy,kl-initial"
 * ```
 */
export function trackText(track: Track): string | undefined {
  const names = [
    ...(track.trainAccuracy ? ["train-accuracy"] : []),
    ...(track.klInitial ? ["kl-initial"] : []),
  ];
  return names.length === 0 ? undefined : names.join(",");
}
