/** The statistics of a comparison and the learning-rate rule, on hand-made numbers. */

import assert from "node:assert/strict";
import type { EvalPoint } from "../../../analysis/compare/metrics.ts";
import {
  accuracyAt,
  lastEvaluationsMean,
  selectLr,
  spread,
  stepsToTarget,
} from "../../../analysis/compare/stats.ts";

/** An eval curve from (step, accuracy) pairs. */
function curve(...points: [number, number][]): EvalPoint[] {
  return points.map(([step, accuracy]) => ({ step, tokens: 10 * step, accuracy }));
}

function close(actual: number | null, expected: number, what = ""): void {
  assert.ok(
    actual !== null && Math.abs(actual - expected) < 1e-12,
    `${what}: ${actual} ≠ ${expected}`,
  );
}

Deno.test("spread() gives mean, min, max and the sample standard deviation", () => {
  const s = spread([0.5, 0.7, 0.6]);
  close(s.mean, 0.6, "mean");
  close(s.std, 0.1, "std (n − 1)");
  assert.equal(s.min, 0.5);
  assert.equal(s.max, 0.7);
  assert.equal(s.n, 3);
  assert.deepEqual(spread([0.4]), { mean: 0.4, min: 0.4, max: 0.4, std: null, n: 1 });
  assert.deepEqual(spread([]), { mean: null, min: null, max: null, std: null, n: 0 });
});

Deno.test("accuracyAt() takes the last evaluation at or before the budget", () => {
  const c = curve([0, 0.1], [10, 0.4], [20, 0.6]);
  assert.equal(accuracyAt(c, 9)?.accuracy, 0.1);
  assert.equal(accuracyAt(c, 10)?.accuracy, 0.4);
  assert.equal(accuracyAt(c, 25)?.accuracy, 0.6);
  assert.equal(accuracyAt(curve([5, 0.3]), 4), null);
});

Deno.test("stepsToTarget() is the first evaluated step at or above the target", () => {
  const c = curve([0, 0.1], [10, 0.5], [20, 0.4], [30, 0.7]);
  assert.equal(stepsToTarget(c, 0.5), 10);
  assert.equal(stepsToTarget(c, 0.6), 30);
  assert.equal(stepsToTarget(c, 0.1), 0);
  assert.equal(stepsToTarget(c, 0.8), null);
});

Deno.test("lastEvaluationsMean() averages the last 3 evaluations, or fewer", () => {
  close(lastEvaluationsMean(curve([0, 0.1], [5, 0.5], [10, 0.6], [15, 0.7])), 0.6);
  close(lastEvaluationsMean(curve([0, 0.2], [5, 0.4])), 0.3);
  assert.equal(lastEvaluationsMean([]), null);
});

Deno.test("selectLr() takes the highest score, the smaller lr on a tie, and skips failures", () => {
  // Hand-made metrics of three tuning runs: the last three evaluations of each.
  const trials = [
    { lr: 1e-4, curve: curve([0, 0.2], [10, 0.5], [20, 0.6], [30, 0.7]) }, // 0.6
    { lr: 2e-4, curve: curve([0, 0.2], [10, 0.6], [20, 0.7], [30, 0.8]) }, // 0.7
    { lr: 5e-4, curve: curve([0, 0.2], [10, 0.9], [20, 0.6], [30, 0.3]) }, // 0.6
  ].map(({ lr, curve }) => ({ lr, score: lastEvaluationsMean(curve) }));
  assert.equal(selectLr(trials), 2e-4);

  // A tie goes to the smaller lr, whatever the order.
  assert.equal(selectLr([{ lr: 5e-4, score: 0.8 }, { lr: 1e-4, score: 0.8 }]), 1e-4);
  assert.equal(selectLr([{ lr: 1e-4, score: 0.8 }, { lr: 5e-4, score: 0.8 }]), 1e-4);
  // A failed run (null) never wins; all failed: none.
  assert.equal(selectLr([{ lr: 1e-4, score: null }, { lr: 5e-4, score: 0 }]), 5e-4);
  assert.equal(selectLr([{ lr: 1e-4, score: null }]), null);
  assert.equal(selectLr([]), null);
});
