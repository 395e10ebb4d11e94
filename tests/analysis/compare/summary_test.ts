/**
 * Summary statistics of a comparison from hand-made `metrics.jsonl` files: curves, mean and spread
 * over seeds, accuracy at budgets, steps to the target, and the printed table.
 */

import assert from "node:assert/strict";
import {
  parseMetrics,
  readMetrics,
  type RunCurves,
  runCurves,
} from "../../../analysis/compare/metrics.ts";
import {
  formatTable,
  type RunRecord,
  summarize,
  type SummaryInput,
} from "../../../analysis/compare/summary.ts";
import { withTempDir } from "../../_helpers.ts";

const SHAPE = { rows: 8, groupSize: 4 };

/**
 * A run of 10 steps evaluated at 0, 5 and 10, with `accuracies` there; each step samples
 * completions of 2 tokens (16 tokens for 8 rows) and measures KL 0.01 × step.
 */
function metricsText(
  accuracies: [number, number, number],
  extra: (step: number) => object = () => ({}),
): string {
  const lines: object[] = [{ step: 0, evalAccuracy: accuracies[0] }];
  for (let step = 1; step <= 10; step++) {
    const evalAccuracy = step === 5 ? accuracies[1] : step === 10 ? accuracies[2] : undefined;
    lines.push({
      step,
      rewardMean: 0.5,
      kl: 0.01 * step,
      completionLength: 2,
      promptsResampled: 0,
      ...(evalAccuracy === undefined ? {} : { evalAccuracy }),
      ...extra(step),
    });
  }
  return lines.map((l) => JSON.stringify(l)).join("\n") + "\n";
}

function close(actual: number | null | undefined, expected: number, what = ""): void {
  assert.ok(
    typeof actual === "number" && Math.abs(actual - expected) < 1e-12,
    `${what}: ${actual} ≠ ${expected}`,
  );
}

/** Writes hand-made metrics files and reads them back as run records. */
async function records(dir: string): Promise<RunRecord[]> {
  const runs: { objective: "gift" | "grpo"; seed: number; text: string; error?: string }[] = [
    {
      objective: "gift",
      seed: 1,
      // Train accuracy on evaluated steps, KL to the initial policy, and one DAPO-style resample.
      text: metricsText([0.2, 0.5, 0.8], (step) => ({
        klInitial: 0.02 * step,
        ...(step === 5 || step === 10 ? { trainAccuracy: step === 5 ? 0.6 : 0.9 } : {}),
        ...(step === 3 ? { promptsResampled: 2 } : {}),
      })),
    },
    { objective: "gift", seed: 2, text: metricsText([0.2, 0.4, 0.6]) },
    { objective: "gift", seed: 3, text: metricsText([0.2, 0.6, 0.7]) },
    { objective: "grpo", seed: 1, text: metricsText([0.2, 0.3, 0.5], () => ({ kl: null })) },
    { objective: "grpo", seed: 2, text: metricsText([0.2, 0.3, 0.4], () => ({ kl: null })) },
    // A run that failed after its first evaluation: its curve is kept, out of the statistics.
    {
      objective: "grpo",
      seed: 3,
      text: metricsText([0.9, 0.9, 0.9]).split("\n").slice(0, 6).join("\n") + '\n{"step":6,"rew',
      error: "reward 'http' failed on 16 of 16 samples",
    },
  ];
  const out: RunRecord[] = [];
  for (const r of runs) {
    const path = `${dir}/${r.objective}-${r.seed}.jsonl`;
    await Deno.writeTextFile(path, r.text);
    out.push({
      run: `t-${r.objective}-s${r.seed}`,
      objective: r.objective,
      seed: r.seed,
      lr: 1e-3,
      dir: `runs/t-${r.objective}-s${r.seed}`,
      error: r.error ?? null,
      curves: runCurves(await readMetrics(path), SHAPE),
    });
  }
  return out;
}

function input(runs: RunRecord[], changes: Partial<SummaryInput> = {}): SummaryInput {
  return {
    name: "t",
    recipe: "t.json",
    createdAt: "2026-01-01T00:00:00.000Z",
    steps: 10,
    seeds: [1, 2, 3],
    tuningSeed: null,
    objectives: (["gift", "grpo"] as const).map((objective) => ({
      objective,
      lr: 1e-3,
      lrSource: "recipe" as const,
      referenceDropped: false,
      tuning: null,
    })),
    runs,
    ...changes,
  };
}

Deno.test("parseMetrics() skips blank lines and a line cut short", () => {
  assert.deepEqual(parseMetrics('{"step":0,"evalAccuracy":0.5}\n\n{"step":1,"kl":0.1}\n{"st'), [
    { step: 0, evalAccuracy: 0.5 },
    { step: 1, kl: 0.1 },
  ]);
});

Deno.test("runCurves() counts sampled tokens and reads KL and the train–eval gap", async () => {
  await withTempDir(async (dir) => {
    const [gift1, , , grpo1] = await records(dir);
    const curves: RunCurves = gift1!.curves;
    // 16 tokens a step, and 16 more at step 3 for the 2 prompts × 4 completions resampled.
    assert.deepEqual(curves.eval, [
      { step: 0, tokens: 0, accuracy: 0.2 },
      { step: 5, tokens: 96, accuracy: 0.5 },
      { step: 10, tokens: 176, accuracy: 0.8 },
    ]);
    assert.equal(curves.kl.length, 10);
    close(curves.kl[4]!.value, 0.05);
    close(curves.klInitial[9]!.value, 0.2);
    assert.equal(curves.gap.length, 2);
    assert.equal(curves.gap[0]!.step, 5);
    close(curves.gap[0]!.gap, 0.1);
    close(curves.gap[1]!.gap, 0.1);
    // kl null: no KL curve; no klInitial or trainAccuracy: none either.
    assert.deepEqual(grpo1!.curves.kl, []);
    assert.deepEqual(grpo1!.curves.klInitial, []);
    assert.deepEqual(grpo1!.curves.gap, []);
  });
});

Deno.test("summarize() gives mean and spread over seeds, budgets and steps to target", async () => {
  await withTempDir(async (dir) => {
    const summary = summarize(input(await records(dir)));
    const [gift, grpo] = summary.objectives;
    assert.equal(gift!.objective, "gift");

    // Final accuracy: gift 0.8, 0.6, 0.7; grpo 0.5, 0.4 (its failed seed left out).
    close(gift!.finalAccuracy.mean, 0.7, "gift mean");
    close(gift!.finalAccuracy.std, 0.1, "gift std");
    assert.equal(gift!.finalAccuracy.min, 0.6);
    assert.equal(gift!.finalAccuracy.max, 0.8);
    close(grpo!.finalAccuracy.mean, 0.45, "grpo mean");
    assert.equal(grpo!.finalAccuracy.n, 2);

    // At each evaluation step.
    assert.deepEqual(gift!.aggregate.eval.map((p) => p.step), [0, 5, 10]);
    const mid = gift!.aggregate.eval[1]!;
    close(mid.mean, 0.5);
    close(mid.std, 0.1);
    assert.equal(mid.min, 0.4);
    assert.equal(mid.max, 0.6);
    close(mid.tokens, (96 + 80 + 80) / 3, "mean tokens");
    assert.equal(gift!.aggregate.eval[0]!.std, 0);
    assert.equal(gift!.aggregate.kl.length, 10);
    close(gift!.aggregate.kl[9]!.mean, 0.1);
    assert.equal(gift!.aggregate.klInitial[0]!.n, 1); // one seed tracked it
    assert.equal(gift!.aggregate.klInitial[0]!.std, null);
    assert.deepEqual(gift!.aggregate.gap.map((p) => [p.step, p.n]), [[5, 1], [10, 1]]);
    assert.deepEqual(grpo!.aggregate.kl, []);

    // Budgets: 25% of 10 steps is step 2, whose last evaluation is step 0.
    assert.deepEqual(gift!.budgets.map((b) => [b.fraction, b.budgetStep, b.evalStep]), [
      [0.25, 2, 0],
      [0.5, 5, 5],
      [1, 10, 10],
    ]);
    close(gift!.budgets[1]!.mean, 0.5);
    close(gift!.budgets[1]!.std, 0.1);
    close(gift!.budgets[2]!.mean, 0.7);
    close(grpo!.budgets[2]!.mean, 0.45);

    // Target: 0.9 × the best mean final accuracy (gift's 0.7) = 0.63.
    assert.equal(summary.target.source, "auto");
    close(summary.target.accuracy, 0.63);
    assert.deepEqual(gift!.stepsToTarget.perSeed, [10, null, 10]);
    assert.equal(gift!.stepsToTarget.mean, 10);
    assert.equal(gift!.stepsToTarget.reached, 2);
    assert.equal(gift!.stepsToTarget.n, 3);
    assert.deepEqual(grpo!.stepsToTarget, { mean: null, reached: 0, n: 2, perSeed: [null, null] });

    // The failed run: listed with its error and partial curve, out of the statistics.
    const failed = grpo!.runs[2]!;
    assert.equal(failed.error, "reward 'http' failed on 16 of 16 samples");
    assert.equal(failed.finalAccuracy, null);
    assert.deepEqual(failed.eval.map((p) => p.step), [0, 5]);
    assert.deepEqual(summary.failures, [
      { run: "t-grpo-s3", error: "reward 'http' failed on 16 of 16 samples" },
    ]);
    assert.equal(summary.table.length, 2);
    assert.deepEqual(summary.table[0]!.stepsToTarget, { mean: 10, reached: 2, n: 3 });
  });
});

Deno.test("summarize() takes a given target; formatTable() prints mean ± std per budget", async () => {
  await withTempDir(async (dir) => {
    const summary = summarize(input(await records(dir), { target: 0.45 }));
    assert.deepEqual(summary.target, { accuracy: 0.45, source: "given" });
    assert.deepEqual(summary.objectives[0]!.stepsToTarget.perSeed, [5, 10, 5]);
    assert.deepEqual(formatTable(summary), [
      "objective  lr     @25% (step 0)  @50% (step 5)  @100% (step 10)  steps to 45.0%",
      "gift       0.001  20.0% ± 0.0    50.0% ± 10.0   70.0% ± 10.0     7 (3/3 seeds)",
      "grpo       0.001  20.0% ± 0.0    30.0% ± 0.0    45.0% ± 7.1      10 (1/2 seeds)",
    ]);
  });
});
