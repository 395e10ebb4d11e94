/**
 * The conformance suite every objective passes (docs/objectives.md, property 9), plus the seeded batch
 * helpers the objective tests share. An objective's test file calls
 * `runObjectiveConformance(objective, options)` and adds its own cases.
 *
 * @module
 */

import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { objectiveAxes, resolveObjective, usesReference } from "../../../../dsl/objectives.ts";
import type { Objective as ObjectiveSpec } from "../../../../dsl/schema.ts";
import type { Objective, ObjectiveBatch } from "../../../../runtime/rl/objectives/types.ts";

/** A seeded PRNG (mulberry32) returning floats in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return function next() {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** An `ObjectiveBatch` as plain arrays, so that tests can compute expected values by hand. */
export interface BatchData {
  /** [B][T] */
  logp: number[][];
  /** [B][T] */
  oldLogp: number[][];
  /** [B][T] */
  refLogp: number[][];
  /** [B][T] 1 on completion tokens, 0 on padding. */
  mask: number[][];
  /** [B] */
  rewards: number[];
  /** G */
  groupSize: number;
}

/** How the rows of one group of `randomBatchData` are drawn. */
export type GroupRegime =
  /** logp, oldLogp and refLogp all differ; rewards continuous. */
  | "random"
  /** logp = oldLogp = refLogp (the first update after sampling); binary rewards. */
  | "at-reference"
  /** Rewards all equal (to a value float32 cannot represent exactly); log-probs random. */
  | "equal-rewards";

/** Options of `randomBatchData()`. */
export interface RandomBatchOptions {
  /** P, the number of groups. */
  groups: number;
  /** G, rows per group. */
  groupSize: number;
  /** T, the padded length. */
  length: number;
  /**
   * The regime of each group, cycled over the groups.
   * @default {["random", "at-reference", "equal-rewards"]}
   */
  regimes?: GroupRegime[];
}

/**
 * A seeded random batch: log-probs in (−4, 0), completion lengths in [1, T] (at least one row
 * padded when T > 1, at least one full), groups drawn in the given regimes.
 */
export function randomBatchData(seed: number, options: RandomBatchOptions): BatchData {
  const rand = mulberry32(seed);
  const { groups, groupSize, length } = options;
  const regimes = options.regimes ?? ["random", "at-reference", "equal-rewards"];
  const rows = groups * groupSize;
  const logProb = () => -4 * rand();
  const data: BatchData = {
    logp: [],
    oldLogp: [],
    refLogp: [],
    mask: [],
    rewards: [],
    groupSize,
  };
  for (let i = 0; i < rows; i++) {
    const regime = regimes[Math.floor(i / groupSize) % regimes.length] ?? "random";
    const used = i === 0 ? length : i === 1 ? 1 : 1 + Math.floor(rand() * length);
    const logp = Array.from({ length }, logProb);
    const jitter = () =>
      logp.map((v) => (regime === "at-reference" ? v : v + 0.5 * (rand() - 0.5)));
    data.logp.push(logp);
    data.oldLogp.push(jitter());
    data.refLogp.push(jitter());
    data.mask.push(Array.from({ length }, (_, t) => (t < used ? 1 : 0)));
    data.rewards.push(
      regime === "equal-rewards"
        ? 0.1
        : regime === "at-reference"
        ? (rand() < 0.5 ? 1 : 0)
        : rand(),
    );
  }
  return data;
}

/** Tensors for `data`; `refLogp` only when `withReference`. The caller disposes them. */
export function toBatch(data: BatchData, withReference: boolean): ObjectiveBatch {
  const batch: ObjectiveBatch = {
    logp: tf.tensor2d(data.logp),
    oldLogp: tf.tensor2d(data.oldLogp),
    mask: tf.tensor2d(data.mask),
    rewards: tf.tensor1d(data.rewards),
    groupSize: data.groupSize,
  };
  if (withReference) batch.refLogp = tf.tensor2d(data.refLogp);
  return batch;
}

/** Disposes every tensor of `batch`. */
export function disposeBatch(batch: ObjectiveBatch): void {
  tf.dispose([batch.logp, batch.oldLogp, batch.mask, batch.rewards]);
  if (batch.refLogp !== undefined) batch.refLogp.dispose();
}

/** The gradient of `objective.loss` with respect to `batch.logp`, [B, T]. */
export function logpGradient<O>(
  objective: Objective<O>,
  batch: ObjectiveBatch,
  options: O,
): tf.Tensor2D {
  function lossOf(logp: tf.Tensor): tf.Scalar {
    return objective.loss({ ...batch, logp: logp as tf.Tensor2D }, options).loss;
  }
  return tf.grad(lossOf)(batch.logp) as tf.Tensor2D;
}

const PRESET_KINDS = ["gift", "grpo", "drGrpo", "dapo", "gspo", "rloo", "onlineDpo", "una"];

/**
 * Whether the preset `kind` reads the reference's log-probs with `options`, as the preset table
 * (dsl/objectives.ts) says and the trainer then supplies them.
 */
export function presetReadsReference(kind: string, options: object = {}): boolean {
  const resolved = resolveObjective({ ...options, kind } as ObjectiveSpec);
  return usesReference(objectiveAxes(resolved));
}

/** Options of `runObjectiveConformance()`. */
export interface ConformanceOptions {
  /**
   * The prefix of every test name.
   * @default {objective.name}
   */
  name?: string;
  /**
   * Where all-equal rewards in every group (zero advantages) must give a zero gradient w.r.t. logp:
   * - `"anywhere"`: for any logp (a pure policy-gradient term, e.g. Dr.GRPO, DAPO);
   * - `"at-reference"`: only when logp = oldLogp = refLogp. GIFT: at an equal-reward group its
   *   loss is β_c²·mean(ũ²), which still pulls each u towards its group mean unless u is constant;
   *   GRPO with a KL term: the k3 gradient vanishes only at the reference;
   * - `"never"`: skip the check (a loss without advantages, e.g. UNA's `(σ(βu) − σ(r))²`).
   * @default {"anywhere"}
   */
  zeroAdvantageGradient?: "anywhere" | "at-reference" | "never";
  /**
   * Group sizes of the random batches (a recipe's group size may be 1, but several objectives
   * divide by G − 1, so 1 is left to each objective's own tests).
   * @default {[2, 3, 8]}
   */
  groupSizes?: number[];
  /**
   * The backend the tests run on.
   * @default {"cpu"}
   */
  backend?: string;
  /**
   * Whether the batches carry `refLogp`.
   * @default {whether the preset of that name reads it with its default options; true otherwise}
   */
  reference?: boolean;
}

function assertFiniteScalar(t: tf.Tensor, what: string): void {
  assert.equal(t.rank, 0, `${what} has rank ${t.rank}, expected a scalar`);
  const value = t.dataSync()[0] ?? Number.NaN;
  assert.ok(Number.isFinite(value), `${what} is ${value}, expected a finite number`);
}

function batchValues(batch: ObjectiveBatch): number[][] {
  const tensors = [batch.logp, batch.oldLogp, batch.refLogp, batch.mask, batch.rewards];
  return tensors.flatMap((t) => (t === undefined ? [] : [Array.from(t.dataSync())]));
}

/**
 * Registers the shared `Deno.test`s of one objective: a finite scalar loss and finite scalar
 * metrics on random batches (several group sizes, padded masks, zero-variance groups); a finite
 * gradient w.r.t. logp that is exactly 0 on padding; zero gradient at zero advantages where
 * `zeroAdvantageGradient` says it holds; no tensor leak across calls; inputs neither disposed nor
 * mutated; a batch that splits a group rejected.
 *
 * @example
 * ```ts
 * import { gift } from "../../../../runtime/rl/objectives/gift.ts";
 * runObjectiveConformance(gift, {}, { zeroAdvantageGradient: "at-reference" });
 * ```
 */
export function runObjectiveConformance<O>(
  objective: Objective<O>,
  options: O,
  conformance: ConformanceOptions = {},
): void {
  const name = conformance.name ?? objective.name;
  const mode = conformance.zeroAdvantageGradient ?? "anywhere";
  const groupSizes = conformance.groupSizes ?? [2, 3, 8];
  const backend = conformance.backend ?? "cpu";
  const withReference = conformance.reference ??
    (PRESET_KINDS.includes(objective.name) ? presetReadsReference(objective.name) : true);
  const cases = groupSizes.flatMap((groupSize, k) =>
    [1, 2].map((seed) => ({ seed: 100 * k + seed, groupSize, groups: 3 + seed, length: 6 }))
  );

  Deno.test(`${name} conformance: loss is a finite scalar`, async () => {
    await tf.setBackend(backend);
    for (const c of cases) {
      const batch = toBatch(randomBatchData(c.seed, c), withReference);
      const { loss, metrics } = objective.loss(batch, options);
      assertFiniteScalar(loss, `loss (G = ${c.groupSize})`);
      for (const [key, value] of Object.entries(metrics)) {
        assertFiniteScalar(value, `metric '${key}' (G = ${c.groupSize})`);
      }
      tf.dispose([loss, metrics]);
      disposeBatch(batch);
    }
  });

  Deno.test(`${name} conformance: gradient w.r.t. logp is finite and 0 on padding`, async () => {
    await tf.setBackend(backend);
    for (const c of cases) {
      const data = randomBatchData(c.seed, c);
      const batch = toBatch(data, withReference);
      const grad = logpGradient(objective, batch, options);
      assert.deepEqual(grad.shape, batch.logp.shape);
      const g = grad.arraySync();
      let norm = 0;
      g.forEach((row, i) =>
        row.forEach((value, t) => {
          assert.ok(
            Number.isFinite(value),
            `gradient [${i}, ${t}] is ${value} (G = ${c.groupSize})`,
          );
          if (data.mask[i]?.[t] === 0) assert.ok(value === 0, `gradient on padding [${i}, ${t}]`);
          norm += value * value;
        })
      );
      assert.ok(norm > 0, `the gradient is identically 0 on a random batch (G = ${c.groupSize})`);
      grad.dispose();
      disposeBatch(batch);
    }
  });

  if (mode !== "never") {
    const where = mode === "anywhere" ? "" : " at the reference";
    Deno.test(`${name} conformance: equal rewards give a zero gradient${where}`, async () => {
      await tf.setBackend(backend);
      for (const c of cases) {
        const data = randomBatchData(c.seed, { ...c, regimes: ["equal-rewards"] });
        // 0.1 and 0.7 are not float32 numbers: a mean of equal values must still centre to 0.
        data.rewards = data.rewards.map((_, i) => (Math.floor(i / c.groupSize) % 2 ? 0.7 : 0.1));
        if (mode === "at-reference") {
          data.oldLogp = data.logp.map((row) => [...row]);
          data.refLogp = data.logp.map((row) => [...row]);
        }
        const batch = toBatch(data, withReference);
        const grad = logpGradient(objective, batch, options);
        const largest = tf.max(tf.abs(grad)).dataSync()[0];
        assert.ok(largest === 0, `max |gradient| is ${largest}, expected 0 (G = ${c.groupSize})`);
        grad.dispose();
        disposeBatch(batch);
      }
    });
  }

  Deno.test(`${name} conformance: no tensor leak across calls`, async () => {
    await tf.setBackend(backend);
    const c = cases[cases.length - 1] ?? { seed: 1, groupSize: 2, groups: 3, length: 6 };
    const batch = toBatch(randomBatchData(c.seed, c), withReference);
    tf.dispose(Object.values(objective.loss(batch, options)));
    logpGradient(objective, batch, options).dispose();
    const before = tf.memory().numTensors;
    for (let n = 0; n < 5; n++) {
      const { loss, metrics } = objective.loss(batch, options);
      tf.dispose([loss, metrics]);
      logpGradient(objective, batch, options).dispose();
    }
    assert.equal(tf.memory().numTensors, before);
    disposeBatch(batch);
  });

  Deno.test(`${name} conformance: leaves its inputs intact`, async () => {
    await tf.setBackend(backend);
    const c = cases[0] ?? { seed: 1, groupSize: 2, groups: 3, length: 6 };
    const batch = toBatch(randomBatchData(c.seed, c), withReference);
    const before = batchValues(batch);
    tf.dispose(Object.values(objective.loss(batch, options)));
    logpGradient(objective, batch, options).dispose();
    for (const t of [batch.logp, batch.oldLogp, batch.refLogp, batch.mask, batch.rewards]) {
      assert.ok(t === undefined || !t.isDisposed, "an input tensor was disposed");
    }
    assert.deepEqual(batchValues(batch), before);
    disposeBatch(batch);
  });

  Deno.test(`${name} conformance: rejects a batch that splits a group`, async () => {
    await tf.setBackend(backend);
    const batch = toBatch(
      randomBatchData(7, { groups: 3, groupSize: 2, length: 4 }),
      withReference,
    );
    const before = tf.memory().numTensors;
    assert.throws(
      () => objective.loss({ ...batch, groupSize: 4 }, options),
      /group/i,
    );
    assert.equal(tf.memory().numTensors, before);
    disposeBatch(batch);
  });
}

/** The value of a scalar tensor (NaN when absent). */
export function scalarOf(t: tf.Tensor | undefined): number {
  return t?.dataSync()[0] ?? Number.NaN;
}

/** Asserts `|actual − expected| <= tolerance`. */
export function assertClose(
  actual: number,
  expected: number,
  tolerance: number,
  what: string,
): void {
  assert.ok(
    Math.abs(actual - expected) <= tolerance,
    `${what}: ${actual} differs from ${expected} by more than ${tolerance}`,
  );
}

/** Asserts `assertClose` entrywise, and equal lengths; an expected exact 0 must be exactly 0. */
export function assertAllClose(
  actual: ArrayLike<number>,
  expected: number[],
  tolerance: number,
  what: string,
): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  expected.forEach((e, k) => {
    const a = actual[k] ?? Number.NaN;
    if (e === 0) assert.ok(a === 0, `${what}[${k}]: ${a}, expected exactly 0`);
    else assertClose(a, e, tolerance, `${what}[${k}]`);
  });
}

/** A batch of hand-built arrays; `oldLogp` defaults to `logp` (on-policy), `refLogp` to none. */
export function handBatch(data: {
  logp: number[][];
  oldLogp?: number[][];
  refLogp?: number[][];
  mask: number[][];
  rewards: number[];
  groupSize: number;
}): ObjectiveBatch {
  const batch: ObjectiveBatch = {
    logp: tf.tensor2d(data.logp),
    oldLogp: tf.tensor2d(data.oldLogp ?? data.logp),
    mask: tf.tensor2d(data.mask),
    rewards: tf.tensor1d(data.rewards),
    groupSize: data.groupSize,
  };
  if (data.refLogp !== undefined) batch.refLogp = tf.tensor2d(data.refLogp);
  return batch;
}

/** The values of `logpGradient()`, [B·T] flattened, its tensor disposed. */
export function gradientOf<O>(
  objective: Objective<O>,
  batch: ObjectiveBatch,
  options: O,
): number[] {
  const grad = logpGradient(objective, batch, options);
  const values = Array.from(grad.dataSync());
  grad.dispose();
  return values;
}
