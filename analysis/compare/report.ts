/**
 * `reportHtml()`: a comparison's `report.html`, one self-contained page (inline CSS and SVG, no
 * script, no network): the summary table, the learning rate each objective used (with the tuning
 * table), and charts of eval accuracy against steps and against sampled tokens, KL against steps
 * and the train–eval gap when the runs measured it, each line the mean over seeds in a band from
 * the lowest to the highest seed.
 *
 * @module
 */

import { type ChartSeries, escapeXml, lineChart, PALETTE } from "./svg.ts";
import { type ObjectiveSummary, percent, type Summary, tableCells } from "./summary.ts";
import type { Spread } from "./stats.ts";

const STYLE = `body{font-family:sans-serif;margin:2em auto;max-width:960px;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}th,td{border:1px solid #ccc;padding:3px 8px;
text-align:left}th{background:#f4f4f4}td.num{text-align:right}.muted{color:#777}
figure{margin:1em 0}pre{background:#f8f8f8;padding:.5em}`;

/** A band point from a spread: the mean, between the min and the max. */
function banded(x: number, s: Spread): { x: number; y: number; low?: number; high?: number } {
  return s.min !== null && s.max !== null
    ? { x, y: s.mean!, low: s.min, high: s.max }
    : { x, y: s.mean ?? 0 };
}

function series(
  objectives: readonly ObjectiveSummary[],
  points: (o: ObjectiveSummary) => ChartSeries["points"],
): ChartSeries[] {
  return objectives.map((o, i) => ({
    label: o.objective,
    points: points(o),
    color: PALETTE[i % 10]!,
  }))
    .filter((s) => s.points.length > 0);
}

function chart(
  title: string,
  xLabel: string,
  yLabel: string,
  lines: ChartSeries[],
  format?: (v: number) => string,
  yRange?: readonly [number, number],
): string {
  if (lines.length === 0) return "";
  const svg = lineChart({
    title,
    xLabel,
    yLabel,
    series: lines,
    ...(format === undefined ? {} : { formatY: format }),
    ...(yRange === undefined ? {} : { yRange }),
  });
  return `<figure>\n${svg}\n</figure>`;
}

function percentTick(v: number): string {
  return `${Math.round(v * 1000) / 10}%`;
}

function cell(text: string, numeric = false): string {
  return `<td${numeric ? ' class="num"' : ""}>${escapeXml(text)}</td>`;
}

/** An HTML table; the columns `numeric` says are right-aligned. */
function table(
  header: readonly string[],
  rows: readonly string[][],
  numeric: (column: number) => boolean = (column) => column >= 1,
): string {
  return [
    "<table>",
    `<tr>${header.map((h) => `<th>${escapeXml(h)}</th>`).join("")}</tr>`,
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
 * await Deno.writeTextFile(`${dir}/report.html`, reportHtml(summary));
 * ```
 */
export function reportHtml(summary: Summary): string {
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

  const accuracySteps = series(
    objectives,
    (o) => o.aggregate.eval.map((p) => banded(p.step, p)),
  );
  const accuracyTokens = series(
    objectives,
    (o) => o.aggregate.eval.map((p) => banded(p.tokens, p)),
  );
  const kl = series(objectives, (o) => o.aggregate.kl.map((p) => banded(p.step, p)));
  const klInitial = series(objectives, (o) => o.aggregate.klInitial.map((p) => banded(p.step, p)));
  const gap = series(objectives, (o) => o.aggregate.gap.map((p) => banded(p.step, p)));

  const target = summary.target.accuracy;
  const parts = [
    "<!DOCTYPE html>",
    '<html lang="en">',
    "<head>",
    '<meta charset="utf-8">',
    `<title>compare ${escapeXml(summary.name)}</title>`,
    `<style>${STYLE}</style>`,
    "</head>",
    "<body>",
    `<h1>compare ${escapeXml(summary.name)}</h1>`,
    `<p>${escapeXml(summary.recipe)} · ${summary.steps} steps · seeds ${
      summary.seeds.join(", ")
    } · ${escapeXml(summary.createdAt)}</p>`,
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
      `<h3>Tuning ${escapeXml(o.objective)} on seed ${summary.tuningSeed}</h3>`,
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
    chart("eval accuracy vs step", "step", "eval accuracy", accuracySteps, percentTick, [0, 1]),
    chart(
      "eval accuracy vs sampled tokens",
      "completion tokens sampled",
      "eval accuracy",
      accuracyTokens,
      percentTick,
      [0, 1],
    ),
    chart("KL to the reference vs step", "step", "KL (k3, per token)", kl),
    chart("KL to the initial policy vs step", "step", "KL (k3, per token)", klInitial),
    chart("train − eval accuracy vs step", "step", "train − eval accuracy", gap, percentTick),
    ...(summary.failures.length === 0 ? [] : [
      "<h2>Failed runs</h2>",
      "<ul>",
      ...summary.failures.map((f) => `<li>${escapeXml(f.run)}: ${escapeXml(f.error)}</li>`),
      "</ul>",
    ]),
    "</body>",
    "</html>",
  ];
  return parts.filter((p) => p !== "").join("\n") + "\n";
}
