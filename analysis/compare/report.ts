/**
 * `reportHtml()`: a comparison's `report.html`, one self-contained page (inline CSS and SVG, no
 * script, no network): the summary table, the learning rate each objective used (with the tuning
 * table), and charts of eval accuracy against steps and against sampled tokens, KL against steps
 * and the train–eval gap when the runs measured it, each line the mean over seeds in a band from
 * the lowest to the highest seed.
 *
 * @module
 */

import { type Chart, PALETTE, type Point, renderChart } from "../_charts.ts";
import { BASE_STYLE, escapeHtml } from "../_html.ts";
import { type ObjectiveSummary, percent, type Summary, tableCells } from "./summary.ts";
import type { Spread } from "./stats.ts";

/** Sampled curves have a dot on each point up to this many points per series. */
const MAX_DOTTED = 40;

/** A point from a spread: the mean, in a band from the min to the max (none without a mean). */
function banded(x: number, series: string, s: Spread): Point[] {
  if (s.mean === null) return [];
  return s.min !== null && s.max !== null
    ? [{ x, series, value: s.mean, low: s.min, high: s.max }]
    : [{ x, series, value: s.mean }];
}

/**
 * A chart with a line per objective that has points, each objective in its own colour on every
 * chart (its place among all the comparison's objectives).
 */
function objectiveChart(
  objectives: readonly ObjectiveSummary[],
  points: (o: ObjectiveSummary) => Point[],
  chart: Omit<Chart, "series" | "points" | "colors">,
): Chart {
  const drawn = objectives.map((o, i) => ({ o, i, points: points(o) }))
    .filter((d) => d.points.length > 0);
  const longest = Math.max(0, ...drawn.map((d) => d.points.length));
  return {
    ...chart,
    series: drawn.map((d) => d.o.objective),
    colors: drawn.map((d) => PALETTE[d.i % PALETTE.length]!),
    points: drawn.flatMap((d) => d.points),
    dots: longest <= MAX_DOTTED,
    legend: true,
    height: 260,
  };
}

/**
 * The comparison's charts, in page order: eval accuracy against steps and against sampled tokens,
 * KL to the reference and to the initial policy, and the train − eval accuracy gap, each a line per
 * objective (the mean over seeds) in a band from the lowest to the highest seed. Charts no run
 * measured are left out.
 *
 * @example
 * ```ts
 * const [accuracy] = comparisonCharts(summary);
 * accuracy.title; // "eval accuracy vs step"
 * ```
 */
export function comparisonCharts(summary: Summary): Chart[] {
  const objectives = summary.objectives;
  const steps = [0, Math.max(1, summary.steps)] as const;
  const accuracy = { yTitle: "eval accuracy", percent: true, yDomain: [0, 1] } as const;
  const kl = { yTitle: "KL (k3, per token)", xDomain: steps } as const;
  const charts = [
    objectiveChart(
      objectives,
      (o) => o.aggregate.eval.flatMap((p) => banded(p.step, o.objective, p)),
      { title: "eval accuracy vs step", xDomain: steps, ...accuracy },
    ),
    objectiveChart(
      objectives,
      (o) => o.aggregate.eval.flatMap((p) => banded(p.tokens, o.objective, p)),
      {
        title: "eval accuracy vs sampled tokens",
        xTitle: "completion tokens sampled",
        ...accuracy,
      },
    ),
    objectiveChart(
      objectives,
      (o) => o.aggregate.kl.flatMap((p) => banded(p.step, o.objective, p)),
      { title: "KL to the reference vs step", ...kl },
    ),
    objectiveChart(
      objectives,
      (o) => o.aggregate.klInitial.flatMap((p) => banded(p.step, o.objective, p)),
      { title: "KL to the initial policy vs step", ...kl },
    ),
    objectiveChart(
      objectives,
      (o) => o.aggregate.gap.flatMap((p) => banded(p.step, o.objective, p)),
      {
        title: "train − eval accuracy vs step",
        yTitle: "train − eval accuracy",
        percent: true,
        xDomain: steps,
      },
    ),
  ];
  return charts.filter((c) => c.points.length > 0);
}

function cell(text: string, numeric = false): string {
  return `<td${numeric ? ' class="num"' : ""}>${escapeHtml(text)}</td>`;
}

/** An HTML table; the columns `numeric` says are right-aligned. */
function table(
  header: readonly string[],
  rows: readonly string[][],
  numeric: (column: number) => boolean = (column) => column >= 1,
): string {
  return [
    "<table>",
    `<tr>${header.map((h) => `<th>${escapeHtml(h)}</th>`).join("")}</tr>`,
    ...rows.map((r) => `<tr>${r.map((c, i) => cell(c, numeric(i))).join("")}</tr>`),
    "</table>",
  ].join("\n");
}

function maybe(x: number | null, format: (v: number) => string): string {
  return x === null ? "—" : format(x);
}

/**
 * The report of a comparison as one HTML page.
 *
 * @example
 * ```ts
 * await Deno.writeTextFile(`${dir}/report.html`, await reportHtml(summary));
 * ```
 */
export async function reportHtml(summary: Summary): Promise<string> {
  const objectives = summary.objectives;
  const [header, ...rows] = tableCells(summary);
  const tuned = objectives.filter((o) => o.tuning !== null);
  const lrRows = objectives.map((o) => [
    o.objective,
    maybe(o.lr, String),
    o.lrSource === "tuned"
      ? `best of ${o.tuning!.length} on seed ${summary.tuningSeed}`
      : "the recipe's",
    o.referenceDropped ? "dropped (the objective's default)" : "as the recipe says",
    maybe(o.finalAccuracy.mean, percent) +
    (o.finalAccuracy.std === null ? "" : ` ± ${(100 * o.finalAccuracy.std).toFixed(1)}`),
  ]);

  const charts: string[] = [];
  for (const [i, chart] of comparisonCharts(summary).entries()) {
    charts.push(`<figure>\n${await renderChart(chart, `chart${i}`)}\n</figure>`);
  }

  const target = summary.target.accuracy;
  const parts = [
    "<!DOCTYPE html>",
    '<html lang="en">',
    "<head>",
    '<meta charset="utf-8">',
    `<title>compare ${escapeHtml(summary.name)}</title>`,
    `<style>${BASE_STYLE}</style>`,
    "</head>",
    "<body>",
    `<h1>compare ${escapeHtml(summary.name)}</h1>`,
    `<p>${escapeHtml(summary.recipe)} · ${summary.steps} steps · seeds ${
      summary.seeds.join(", ")
    } · ${escapeHtml(summary.createdAt)}</p>`,
    "<h2>Summary</h2>",
    `<p>Eval accuracy with a budget of a fraction of the steps (the last evaluation at or before ` +
    `it), mean ± std over seeds in points; steps to ${
      target === null ? "the target" : percent(target)
    } (${
      summary.target.source === "given" ? "given" : "0.9 × the best final accuracy"
    }): mean over the seeds that reached it.</p>`,
    table(header!, rows),
    "<h2>Learning rates</h2>",
    table(["objective", "lr", "chosen", "reference", "final accuracy"], lrRows, (i) => i === 4),
    ...tuned.flatMap((o) => [
      `<h3>Tuning ${escapeHtml(o.objective)} on seed ${summary.tuningSeed}</h3>`,
      table(
        ["lr", "mean of the last 3 evals", "final accuracy", "run"],
        o.tuning!.map((t) => [
          String(t.lr) + (t.lr === o.lr ? " (chosen)" : ""),
          maybe(t.score, percent),
          maybe(t.finalAccuracy, percent),
          t.error === null ? t.run : `${t.run}: ${t.error}`,
        ]),
        (i) => i === 1 || i === 2,
      ),
    ]),
    "<h2>Curves</h2>",
    '<p class="muted">Lines: mean over seeds; bands: lowest to highest seed.</p>',
    ...charts,
    ...(summary.failures.length === 0 ? [] : [
      "<h2>Failed runs</h2>",
      "<ul>",
      ...summary.failures.map((f) => `<li>${escapeHtml(f.run)}: ${escapeHtml(f.error)}</li>`),
      "</ul>",
    ]),
    "</body>",
    "</html>",
  ];
  return parts.filter((p) => p !== "").join("\n") + "\n";
}
