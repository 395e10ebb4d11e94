import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import {
  advantages,
  aggregate,
  clipFractions,
  clippedSurrogate,
  klK3,
  sequenceRatio,
  tokenRatio,
} from "../../../../runtime/rl/objectives/axes.ts";
import { assertAllClose, assertClose, mulberry32, scalarOf } from "./_conformance.ts";

await tf.setBackend("cpu");

const GROUP_STD = { baseline: "group-mean", scale: "group-std", epsilon: 1e-4 } as const;
const GROUP_MEAN = { baseline: "group-mean", scale: "none", epsilon: 0 } as const;
const LEAVE_ONE_OUT = { baseline: "leave-one-out", scale: "none", epsilon: 0 } as const;

function values(t: tf.Tensor): number[] {
  const out = Array.from(t.dataSync());
  t.dispose();
  return out;
}

// ---- advantages ----

Deno.test("advantages() centres and scales rewards per group on hand-computed values", () => {
  // group 0: mean 0.25, deviations [0.75, −0.25 ×3], sample std √(0.75/3) = 0.5; group 1: equal
  const r = tf.tensor1d([1, 0, 0, 0, 0.3, 0.3, 0.3, 0.3]);
  const a = 0.75 / 0.5001;
  const b = -0.25 / 0.5001;
  assertAllClose(values(advantages(r, 4, GROUP_STD)), [a, b, b, b, 0, 0, 0, 0], 1e-6, "group-std");
  assertAllClose(
    values(advantages(r, 4, GROUP_MEAN)),
    [0.75, -0.25, -0.25, -0.25, 0, 0, 0, 0],
    1e-7,
    "group-mean",
  );
  // leave-one-out: 1 − 0/3 = 1 and 0 − 1/3
  assertAllClose(
    values(advantages(r, 4, LEAVE_ONE_OUT)),
    [1, -1 / 3, -1 / 3, -1 / 3, 0, 0, 0, 0],
    1e-6,
    "leave-one-out",
  );
  r.dispose();
});

Deno.test("advantages() with a leave-one-out baseline sum to 0 and equal G/(G−1)·(r − mean r) (property 6)", () => {
  const rand = mulberry32(6);
  for (const groupSize of [2, 3, 5, 8]) {
    const rewards = Array.from({ length: 3 * groupSize }, () => 2 * rand() - 0.5);
    const r = tf.tensor1d(rewards);
    const got = values(advantages(r, groupSize, LEAVE_ONE_OUT));
    for (let g = 0; g < 3; g++) {
      const group = rewards.slice(g * groupSize, (g + 1) * groupSize);
      const sum = group.reduce((s, v) => s + v, 0);
      const mean = sum / groupSize;
      const a = got.slice(g * groupSize, (g + 1) * groupSize);
      assertClose(a.reduce((s, v) => s + v, 0), 0, 1e-5, `Σ A (G = ${groupSize})`);
      group.forEach((ri, j) => {
        const leaveOneOut = ri - (sum - ri) / (groupSize - 1);
        assertClose(a[j] ?? Number.NaN, leaveOneOut, 1e-5, `A (G = ${groupSize})`);
        assertClose(
          a[j] ?? Number.NaN,
          (groupSize / (groupSize - 1)) * (ri - mean),
          1e-5,
          "G/(G−1)",
        );
      });
    }
    r.dispose();
  }
});

Deno.test("advantages() are constants, exactly 0 for equal rewards and for groups of size 1", () => {
  const r = tf.tensor1d([0.1, 0.1, 0.1, 0.7, 0.7, 0.7]);
  for (const axis of [GROUP_STD, GROUP_MEAN, LEAVE_ONE_OUT]) {
    assert.deepEqual(values(advantages(r, 3, axis)), [0, 0, 0, 0, 0, 0], axis.baseline);
    assert.deepEqual(values(advantages(r, 1, axis)), [0, 0, 0, 0, 0, 0], `${axis.baseline}, G = 1`);
    const weights = tf.tensor1d([1, -2, 3, 0.5, 1, 1]);
    const x = tf.tensor1d([1, 0, 0.5, 0.7, 0.7, 0.7]);
    const grad = tf.grad((v: tf.Tensor) =>
      tf.sum(tf.mul(advantages(v as tf.Tensor1D, 3, axis), weights))
    )(x);
    assert.deepEqual(values(grad), [0, 0, 0, 0, 0, 0], `no gradient (${axis.baseline})`);
    tf.dispose([weights, x]);
  }
  r.dispose();
});

// ---- ratios ----

Deno.test("tokenRatio() is exp(logp − oldLogp), exactly 1 on-policy", () => {
  const logp = tf.tensor2d([[-1, -2], [-0.5, -3]]);
  const old = tf.tensor2d([[-1, -1.5], [-1, -3]]);
  assertAllClose(values(tokenRatio(logp, old)), [1, Math.exp(-0.5), Math.exp(0.5), 1], 1e-6, "w");
  assert.deepEqual(values(tokenRatio(logp, logp)), [1, 1, 1, 1]);
  tf.dispose([logp, old]);
});

Deno.test("sequenceRatio() is exp of the mean masked log-ratio, exactly 1 on-policy (property 8)", () => {
  const old = tf.zeros([3, 3]) as tf.Tensor2D;
  const logp = tf.tensor2d([[0.2, 0.4, 9], [-0.3, 5, 5], [1, 1, 1]]); // log-ratios, padding large
  const mask = tf.tensor2d([[1, 1, 0], [1, 0, 0], [0, 0, 0]]); // the last row is empty
  assertAllClose(
    values(sequenceRatio(logp, old, mask)),
    [Math.exp(0.3), Math.exp(-0.3), 1],
    1e-6,
    "s",
  );
  const rand = mulberry32(8);
  const random = tf.tensor2d(Array.from({ length: 4 }, () => [1, 2, 3].map(() => -4 * rand())));
  const randomMask = tf.tensor2d([[1, 1, 1], [1, 0, 0], [1, 1, 0], [0, 0, 0]]);
  assert.deepEqual(values(sequenceRatio(random, random, randomMask)), [1, 1, 1, 1]);
  tf.dispose([old, logp, mask, random, randomMask]);
});

// ---- the clipped surrogate ----

// ratios 0.5 … 1.5 against the range [0.8, 1.3] (ε_low 0.2, ε_high 0.3), A = +2 then A = −2
const RATIOS = [0.5, 0.9, 1, 1.1, 1.5];
const LOW = 0.2;
const HIGH = 0.3;

Deno.test("clippedSurrogate() on hand-built ratios, both sides and both signs of A", () => {
  const logRatio = tf.tensor2d([RATIOS.map(Math.log), RATIOS.map(Math.log)]); // [2, 5]
  const a = tf.tensor2d([[2], [-2]]); // [2, 1]
  const loss = clippedSurrogate(tf.exp(logRatio), a, LOW, HIGH);
  // A > 0: −2·min(w, clip w); the upper clip binds at 1.5 → 1.3, the lower one never does
  // A < 0: 2·max(w, clip w); the lower clip binds at 0.5 → 0.8, the upper one never does
  assertAllClose(
    values(loss),
    [-1, -1.8, -2, -2.2, -2.6, 1.6, 1.8, 2, 2.2, 3],
    1e-5,
    "ℓ",
  );
  tf.dispose([logRatio, a]);
});

Deno.test("clippedSurrogate() has a zero gradient exactly where the clip is active", () => {
  const logRatio = tf.tensor2d([RATIOS.map(Math.log), RATIOS.map(Math.log)]); // [2, 5]
  const a = tf.tensor2d([[2], [-2]]); // [2, 1]
  const grad = tf.grad((x: tf.Tensor) => tf.sum(clippedSurrogate(tf.exp(x), a, LOW, HIGH)))(
    logRatio,
  );
  // ∂ℓ/∂log w = −A·w where unclipped, 0 where clipped (A > 0 at w = 1.5, A < 0 at w = 0.5)
  assertAllClose(
    values(grad),
    [-1, -1.8, -2, -2.2, 0, 0, 1.8, 2, 2.2, 3],
    1e-5,
    "∂ℓ/∂logp",
  );
  tf.dispose([logRatio, a]);
});

Deno.test("clipFractions() counts the masked entries where the clip binds on each side", () => {
  const w = tf.tensor2d([RATIOS, RATIOS]); // [2, 5]
  const a = tf.tensor2d([[2], [-2]]); // [2, 1]
  const full = tf.ones([2, 5]);
  const partial = tf.tensor2d([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]); // hides the high clip
  const all = clipFractions(w, a, full, LOW, HIGH);
  assertClose(scalarOf(all.clipLow), 0.1, 1e-7, "clipLow");
  assertClose(scalarOf(all.clipHigh), 0.1, 1e-7, "clipHigh");
  const masked = clipFractions(w, a, partial, LOW, HIGH);
  assertClose(scalarOf(masked.clipLow), 1 / 9, 1e-7, "clipLow, masked");
  assert.equal(scalarOf(masked.clipHigh), 0, "clipHigh, masked");
  tf.dispose([w, a, full, partial, all, masked]);
});

// ---- k3 KL ----

Deno.test("klK3() value is exp(d) − d − 1 and its gradient pulls logp towards the reference", () => {
  const logp = tf.tensor2d([[-1, -2, -1.5]]);
  const ref = tf.tensor2d([[-1.5, -1.5, -1.5]]); // d = ref − logp = [−0.5, 0.5, 0]
  assertAllClose(
    values(klK3(logp, ref)),
    [Math.exp(-0.5) - 0.5, Math.exp(0.5) - 1.5, 0],
    1e-6,
    "k3",
  );
  const grad = values(tf.grad((x: tf.Tensor) => tf.sum(klK3(x as tf.Tensor2D, ref)))(logp));
  // ∂k3/∂logp = 1 − exp(d): positive above the reference, negative below, 0 at it
  assertAllClose(grad, [1 - Math.exp(-0.5), 1 - Math.exp(0.5), 0], 1e-6, "∂k3/∂logp");
  assert.ok((grad[0] ?? 0) > 0 && (grad[1] ?? 0) < 0);
  tf.dispose([logp, ref]);
});

// ---- aggregation ----

function aggregated(loss: number[][], mask: number[][]): Record<string, number> {
  const l = tf.tensor2d(loss);
  const m = tf.tensor2d(mask);
  const out: Record<string, number> = {};
  for (const mode of ["sequence-mean", "token-mean", "constant"] as const) {
    const value = aggregate(l, m, mode);
    out[mode] = scalarOf(value);
    value.dispose();
  }
  tf.dispose([l, m]);
  return out;
}

function lengths(...used: number[]): number[][] {
  const length = 8;
  return used.map((n) => Array.from({ length }, (_, t) => (t < n ? 1 : 0)));
}

Deno.test("aggregate() of losses all 1 over lengths 2 and 4, T = 8: 1, 1, 0.375 (property 7)", () => {
  const got = aggregated([Array(8).fill(1), Array(8).fill(1)], lengths(2, 4));
  assert.deepEqual(got, { "sequence-mean": 1, "token-mean": 1, constant: 0.375 });
});

Deno.test("aggregate() of losses 1 then 0 over lengths 2 and 4, T = 8: 0.5, 1/3, 0.125 (property 7)", () => {
  const got = aggregated([Array(8).fill(1), Array(8).fill(0)], lengths(2, 4));
  assertClose(got["sequence-mean"] ?? Number.NaN, 0.5, 1e-7, "sequence-mean");
  assertClose(got["token-mean"] ?? Number.NaN, 1 / 3, 1e-7, "token-mean");
  assertClose(got.constant ?? Number.NaN, 0.125, 1e-7, "constant");
});

Deno.test("aggregate() ignores padding and weighs sequences or tokens as each mode says", () => {
  // lengths 1 and 3, T = 4, padding 100: Σ = 4 + 6 = 10
  const mask = [[1, 0, 0, 0], [1, 1, 1, 0]];
  const got = aggregated([[4, 100, 100, 100], [1, 2, 3, 100]], mask);
  assertClose(got["sequence-mean"] ?? Number.NaN, (4 / 1 + 6 / 3) / 2, 1e-6, "sequence-mean"); // 3
  assertClose(got["token-mean"] ?? Number.NaN, 10 / 4, 1e-6, "token-mean"); // 2.5
  assertClose(got.constant ?? Number.NaN, 10 / 8, 1e-6, "constant"); // 1.25
  // one value per sequence ([B, 1]) applies to each of its tokens
  const perSequence = aggregated([[2], [3]], mask);
  assertClose(perSequence["sequence-mean"] ?? Number.NaN, 2.5, 1e-6, "[B, 1] sequence-mean");
  assertClose(perSequence["token-mean"] ?? Number.NaN, 11 / 4, 1e-6, "[B, 1] token-mean");
  assertClose(perSequence.constant ?? Number.NaN, 11 / 8, 1e-6, "[B, 1] constant");
  // an empty sequence counts as a sequence of loss 0; an empty mask gives 0, not NaN
  const empty = aggregated([[1, 1], [1, 1]], [[1, 1], [0, 0]]);
  assert.deepEqual(empty, { "sequence-mean": 0.5, "token-mean": 1, constant: 0.5 });
  const none = aggregated([[1, 1]], [[0, 0]]);
  assert.deepEqual(none, { "sequence-mean": 0, "token-mean": 0, constant: 0 });
});
