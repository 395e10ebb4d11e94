/**
 * The comparison report's charts from a hand-made summary: each chart's data are the summary's
 * curves (mean over seeds in a band from the lowest to the highest seed), each objective keeps its
 * colour, and the page draws them with their titles, axis titles and legends.
 */

import assert from "node:assert/strict";
import { chartSpec, PALETTE } from "../../../analysis/_charts.ts";
import type { RunCurves } from "../../../analysis/compare/metrics.ts";
import { comparisonCharts, reportHtml } from "../../../analysis/compare/report.ts";
import { type RunRecord, summarize, type Summary } from "../../../analysis/compare/summary.ts";

/**
 * A run of 10 steps evaluated at 0, 5 and 10 with `accuracies`, 96 sampled tokens a step, and KL
 * `kl` × step on each step when given (dyadic values, so means are exact).
 */
function curves(accuracies: [number, number, number], kl: number | null): RunCurves {
  return {
    eval: [0, 5, 10].map((step, i) => ({ step, tokens: 96 * step, accuracy: accuracies[i]! })),
    kl: kl === null ? [] : [1, 2].map((step) => ({ step, value: kl * step })),
    klInitial: [],
    gap: [],
  };
}

/** GIFT and GRPO on two seeds; only GRPO measured KL (GIFT ran without a reference). */
function summary(): Summary {
  const runs: RunRecord[] = [
    ["gift", 1, curves([0.25, 0.5, 0.75], null)],
    ["gift", 2, curves([0.25, 0.75, 1], null)],
    ["grpo", 1, curves([0.25, 0.25, 0.5], 0.125)],
    ["grpo", 2, curves([0.25, 0.5, 0.5], 0.375)],
  ].map(([objective, seed, c]) => ({
    run: `t-${objective}-s${seed}`,
    objective: objective as "gift" | "grpo",
    seed: seed as number,
    lr: 1e-3,
    dir: `runs/t-${objective}-s${seed}`,
    error: null,
    curves: c as RunCurves,
  }));
  return summarize({
    name: "t",
    recipe: "t.json",
    createdAt: "2026-01-01T00:00:00.000Z",
    steps: 10,
    seeds: [1, 2],
    tuningSeed: null,
    objectives: (["gift", "grpo"] as const).map((objective) => ({
      objective,
      lr: 1e-3,
      lrSource: "recipe" as const,
      referenceDropped: false,
      tuning: null,
    })),
    runs,
  });
}

Deno.test("comparisonCharts() draws each objective's mean over seeds in a band from the lowest to the highest seed", () => {
  const s = summary();
  const charts = comparisonCharts(s);
  // No run measured KL to the initial policy or train accuracy: those charts are left out.
  assert.deepEqual(charts.map((c) => c.title), [
    "eval accuracy vs step",
    "eval accuracy vs sampled tokens",
    "KL to the reference vs step",
  ]);
  const [bySteps, byTokens, kl] = charts;

  // By hand: gift (0.25, 0.25) (0.5, 0.75) (0.75, 1); grpo (0.25, 0.25) (0.25, 0.5) (0.5, 0.5).
  assert.deepEqual(bySteps!.series, ["gift", "grpo"]);
  assert.deepEqual(bySteps!.colors, [PALETTE[0], PALETTE[1]]);
  assert.deepEqual(bySteps!.points, [
    { x: 0, series: "gift", value: 0.25, low: 0.25, high: 0.25 },
    { x: 5, series: "gift", value: 0.625, low: 0.5, high: 0.75 },
    { x: 10, series: "gift", value: 0.875, low: 0.75, high: 1 },
    { x: 0, series: "grpo", value: 0.25, low: 0.25, high: 0.25 },
    { x: 5, series: "grpo", value: 0.375, low: 0.25, high: 0.5 },
    { x: 10, series: "grpo", value: 0.5, low: 0.5, high: 0.5 },
  ]);
  assert.deepEqual([bySteps!.xDomain, bySteps!.yDomain, bySteps!.percent], [[0, 10], [0, 1], true]);
  // The same values against the tokens sampled (96 a step).
  assert.deepEqual(
    byTokens!.points.map((p) => [p.x, p.value]),
    bySteps!.points.map((p) => [96 * p.x, p.value]),
  );
  assert.equal(byTokens!.xTitle, "completion tokens sampled");
  // They are the summary's aggregates, point for point.
  for (const [i, o] of s.objectives.entries()) {
    assert.deepEqual(
      bySteps!.points.filter((p) => p.series === o.objective),
      o.aggregate.eval.map((a) => ({
        x: a.step,
        series: o.objective,
        value: a.mean,
        low: a.min,
        high: a.max,
      })),
      o.objective,
    );
    assert.equal(bySteps!.colors![i], PALETTE[i]);
  }

  // KL: GRPO alone, in GRPO's colour (the second), mean of 0.125 and 0.375 per step.
  assert.deepEqual(kl!.series, ["grpo"]);
  assert.deepEqual(kl!.colors, [PALETTE[1]]);
  assert.deepEqual(kl!.points, [
    { x: 1, series: "grpo", value: 0.25, low: 0.125, high: 0.375 },
    { x: 2, series: "grpo", value: 0.5, low: 0.25, high: 0.75 },
  ]);
  assert.deepEqual(
    kl!.points,
    s.objectives[1]!.aggregate.kl.map((a) => ({
      x: a.step,
      series: "grpo",
      value: a.mean,
      low: a.min,
      high: a.max,
    })),
  );

  // The Vega-Lite spec's data are the chart's points; its lines' colours are the objectives'.
  type Scale = { domain: string[]; range: string[] };
  type Layer = { encoding: { color?: { scale: Scale }; fill?: { scale: Scale } } };
  for (const chart of charts) {
    const spec = chartSpec(chart) as unknown as { data: { values: unknown[] }; layer: Layer[] };
    assert.deepEqual(spec.data.values, chart.points);
    const [band, line] = spec.layer; // banded: every point has a low and a high
    const colors = { domain: chart.series, range: chart.colors };
    assert.deepEqual(line!.encoding.color!.scale, colors);
    assert.deepEqual(band!.encoding.fill!.scale, colors);
  }
});

Deno.test("reportHtml() draws the comparison's charts with their titles, axes, legends and bands", async () => {
  const html = await reportHtml(summary());
  const figures = [...html.matchAll(/<figure>\n([\s\S]*?)\n<\/figure>/g)].map((m) => m[1]!);
  assert.equal(figures.length, 3);
  const texts = (svg: string) => [...svg.matchAll(/<text[^>]*>([^<]*)<\/text>/g)].map((m) => m[1]!);
  const [bySteps, byTokens, kl] = figures.map(texts);
  for (
    const [svg, title] of [[figures[0]!, "eval accuracy vs step"], [
      figures[2]!,
      "KL to the reference vs step",
    ]]
  ) {
    assert.match(
      svg!,
      new RegExp(`^<svg role="img" aria-label="${title}" [^>]*><title>${title}</title>`),
    );
  }
  for (const label of ["step", "eval accuracy", "gift", "grpo", "0%", "40%", "100%"]) {
    assert.ok(bySteps!.includes(label), `${label} in ${bySteps!.join("|")}`);
  }
  assert.ok(byTokens!.includes("completion tokens sampled"), byTokens!.join("|"));
  // The x axis spans the tokens sampled, 0 to 960, and no further.
  assert.ok(byTokens!.includes("0") && byTokens!.includes("900"), byTokens!.join("|"));
  assert.ok(!byTokens!.includes("1,000"), byTokens!.join("|"));
  assert.ok(kl!.includes("KL (k3, per token)") && kl!.includes("grpo") && !kl!.includes("gift"));
  // A line and a band per objective.
  const marks = (svg: string, kind: string) =>
    [...svg.matchAll(new RegExp(`aria-roledescription="${kind} mark"`, "g"))].length;
  assert.deepEqual([marks(figures[0]!, "line"), marks(figures[0]!, "area")], [2, 2]);
  assert.deepEqual([marks(figures[2]!, "line"), marks(figures[2]!, "area")], [1, 1]);
  // Self-contained: no script, and no URL but the SVG namespace.
  assert.ok(!/<script/i.test(html));
  assert.deepEqual(
    [...html.matchAll(/https?:\/\/[^"\s<]+/g)].map((m) => m[0]).filter((u) =>
      u !== "http://www.w3.org/2000/svg"
    ),
    [],
  );
  // Each chart's element ids are its own.
  const ids = [...html.matchAll(/\bid="([^"]+)"/g)].map((m) => m[1]!);
  assert.equal(new Set(ids).size, ids.length, ids.join(" "));
});
