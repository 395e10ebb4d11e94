import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import type { ResolvedObjective } from "../../../../dsl/objectives.ts";
import {
  DapoSchema,
  DrGrpoSchema,
  GiftSchema,
  GrpoSchema,
  GspoSchema,
  OnlineDpoSchema,
  RlooSchema,
  UnaSchema,
} from "../../../../dsl/schema.ts";
import {
  type DapoOptions,
  type DrGrpoOptions,
  type GiftOptions,
  type GrpoOptions,
  type GspoOptions,
  type Objective,
  objectives,
  type OnlineDpoOptions,
  type RlooOptions,
  type UnaOptions,
} from "../../../../runtime/rl/objectives/mod.ts";
import {
  disposeBatch,
  handBatch,
  mulberry32,
  presetReadsReference,
  scalarOf,
} from "./_conformance.ts";

await tf.setBackend("cpu");

// ---- compile-time: each options type is exactly its recipe options, all optional ----

type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
type ResolvedOf<K extends ResolvedObjective["kind"]> = Extract<ResolvedObjective, { kind: K }>;

const sameOptions: [
  Same<Omit<Required<GiftOptions>, "kind">, Omit<ResolvedOf<"gift">, "kind">>,
  Same<Required<GrpoOptions>, ResolvedOf<"grpo">>,
  Same<Required<DrGrpoOptions>, ResolvedOf<"drGrpo">>,
  Same<Required<DapoOptions>, ResolvedOf<"dapo">>,
  Same<Required<GspoOptions>, ResolvedOf<"gspo">>,
  Same<Required<RlooOptions>, ResolvedOf<"rloo">>,
  Same<Required<OnlineDpoOptions>, ResolvedOf<"onlineDpo">>,
  Same<Required<UnaOptions>, ResolvedOf<"una">>,
] = [true, true, true, true, true, true, true, true];

// ---- the registry ----

const KINDS = ["gift", "grpo", "drGrpo", "dapo", "gspo", "rloo", "onlineDpo", "una"] as const;

Deno.test("objectives holds every preset under its recipe kind, with its name", () => {
  assert.ok(sameOptions.every(Boolean));
  assert.deepEqual(Object.keys(objectives), [...KINDS]);
  for (const kind of KINDS) assert.equal(objectives[kind].name, kind);
});

Deno.test("presets read the reference their axes say, with their default options", () => {
  const reads = Object.fromEntries(KINDS.map((k) => [k, presetReadsReference(k)]));
  assert.deepEqual(reads, {
    gift: true, // implicit reward
    grpo: true, // β = 0.04
    drGrpo: false,
    dapo: false,
    gspo: false,
    rloo: true, // β = 0.05, in the reward
    onlineDpo: true, // implicit reward
    una: true, // implicit reward
  });
});

// ---- defaults: the same as the recipe schema's ----

const SCHEMAS = {
  gift: GiftSchema,
  grpo: GrpoSchema,
  drGrpo: DrGrpoSchema,
  dapo: DapoSchema,
  gspo: GspoSchema,
  rloo: RlooSchema,
  onlineDpo: OnlineDpoSchema,
  una: UnaSchema,
} as const;

/** `{ kind, …every option's schema default }` (grpo's and drGrpo's epsilonHigh have none). */
function schemaDefaults(kind: (typeof KINDS)[number]): Record<string, unknown> {
  const defaults: Record<string, unknown> = { kind };
  for (const [key, property] of Object.entries(SCHEMAS[kind].properties)) {
    const value = (property as { default?: unknown }).default;
    if (value !== undefined) defaults[key] = value;
  }
  return defaults;
}

/**
 * A batch sensitive to every loss option: groups of two (rewards 1 and 0, so A > 0 and A < 0) with
 * one token whose log-ratio to oldLogp runs over ±1e-4·k and ±0.05·k (k = 1 … 10), so that any
 * clip bound moved by 1e-4 (GSPO's scale) or 0.05 changes which rows are clipped; refLogp random.
 */
function sensitiveBatch() {
  const logRatios = [1, -1].flatMap((sign) =>
    Array.from({ length: 10 }, (_, k) => [sign * 1e-4 * (k + 1), sign * 0.05 * (k + 1)]).flat()
  );
  const rand = mulberry32(71);
  const rows = logRatios.flatMap((l) => [[l - 1], [l - 1]]); // [B, 1]
  return handBatch({
    logp: rows,
    oldLogp: rows.map(() => [-1]),
    refLogp: rows.map(() => [-1 + rand() - 0.5]),
    mask: rows.map(() => [1]),
    rewards: rows.map((_, i) => (i % 2 === 0 ? 1 : 0)),
    groupSize: 2,
  });
}

function lossValues(objective: Objective<unknown>, options: unknown): number[] {
  const batch = sensitiveBatch();
  const { loss, metrics } = objective.loss(batch, options);
  const values = [scalarOf(loss), ...Object.values(metrics).map((m) => scalarOf(m))];
  tf.dispose([loss, metrics]);
  disposeBatch(batch);
  return values;
}

for (const kind of KINDS) {
  Deno.test(`objectives.${kind} defaults equal the recipe schema's, and each one matters`, () => {
    const objective = objectives[kind] as Objective<unknown>;
    const defaults = schemaDefaults(kind);
    const byDefault = lossValues(objective, {});
    assert.deepEqual(lossValues(objective, defaults), byDefault, "explicit schema defaults");
    for (const key of ["beta", "betaC", "epsilon", "epsilonHigh"]) {
      const value = defaults[key];
      if (typeof value !== "number") continue;
      const moved = lossValues(objective, { ...defaults, [key]: value === 0 ? 0.1 : value * 1.5 });
      assert.notEqual(moved[0], byDefault[0], `the batch does not see '${key}'`);
    }
  });
}

Deno.test("objectives reject tensors whose shapes disagree, naming the tensor", () => {
  const batch = handBatch({
    logp: [[-1, -2], [-1, -1]],
    refLogp: [[-1, -2], [-1, -1]],
    mask: [[1, 1], [1, 0]],
    rewards: [1, 0],
    groupSize: 2,
  });
  const short = tf.tensor1d([1, 0, 1]);
  const narrow = tf.tensor2d([[1], [1]]);
  for (const kind of KINDS) {
    const objective = objectives[kind] as Objective<unknown>;
    const before = tf.memory().numTensors;
    assert.throws(
      () => objective.loss({ ...batch, rewards: short }, {}),
      new RegExp(`^Error: Cannot compute the ${kind} loss as 'rewards' has shape \\[3\\]`),
    );
    assert.throws(() => objective.loss({ ...batch, mask: narrow }, {}), /'mask' has shape \[2,1\]/);
    assert.equal(tf.memory().numTensors, before, `${kind} leaks on a rejected batch`);
  }
  tf.dispose([short, narrow]);
  disposeBatch(batch);
});
