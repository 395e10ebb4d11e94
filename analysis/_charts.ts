/**
 * The charts of both reports (a run's, analysis/report/, and a comparison's,
 * analysis/compare/report.ts): one Vega-Lite line chart per quantity, compiled with vega-lite and
 * drawn to an SVG string by vega's headless view (renderer "none": no DOM, no canvas, text widths
 * estimated), so a report is one self-contained page with no script.
 *
 * A chart is plain data ({@linkcode Chart}); {@linkcode chartSpec} is its Vega-Lite spec, whose
 * data are the chart's points, and {@linkcode renderChart} its SVG.
 *
 * @module
 */

import * as vega from "vega";
import * as vl from "vega-lite";
import { escapeHtml } from "./_html.ts";

/** One value of one series; `low` and `high` bound its band (both or neither). */
export interface Point {
  x: number;
  series: string;
  value: number;
  low?: number;
  high?: number;
}

/** What one chart draws. */
export interface Chart {
  title: string;
  /** @default "step" */
  xTitle?: string;
  yTitle: string;
  /** The series in legend and colour order. */
  series: readonly string[];
  points: readonly Point[];
  /** Each series' colour, by its index in `series`. @default the palette's, in order */
  colors?: readonly string[];
  /** The x axis's range (a run's: 0 to the plan's steps). @default the data's */
  xDomain?: readonly [number, number];
  /** The y axis's range. @default the data's */
  yDomain?: readonly [number, number];
  /** Values are fractions: y ticks in percent. */
  percent?: boolean;
  /** A log y axis when every value is positive and they span more than two decades. */
  logWhenWide?: boolean;
  /** Marks each point (for sparse series such as evaluations). */
  dots?: boolean;
  /** Values are counts: whole-number ticks. */
  integer?: boolean;
  /** Shows the legend. @default with more than one series */
  legend?: boolean;
  /** @default 190 */
  height?: number;
}

/** Vega's ten categorical colours ("tableau10"), the default order of a chart's series. */
export const PALETTE: readonly string[] = [
  "#4c78a8",
  "#f58518",
  "#e45756",
  "#72b7b2",
  "#54a24b",
  "#eeca3b",
  "#b279a2",
  "#ff9da6",
  "#9d755d",
  "#bab0ac",
];

const WIDTH = 900;
const HEIGHT = 190;

/** The powers of ten a log axis labels, or null for a linear axis. */
function decades(chart: Chart): number[] | null {
  if (!chart.logWhenWide || chart.points.length === 0) return null;
  let low = Infinity;
  let high = 0;
  for (const p of chart.points) {
    for (const v of [p.value, p.low ?? p.value, p.high ?? p.value]) {
      if (!(v > 0)) return null;
      low = Math.min(low, v);
      high = Math.max(high, v);
    }
  }
  if (high / low <= 100) return null;
  const ticks = [];
  for (let k = Math.floor(Math.log10(low)); k <= Math.ceil(Math.log10(high)); k++) {
    ticks.push(10 ** k);
  }
  return ticks;
}

function yScale(chart: Chart, log: number[] | null): Record<string, unknown> {
  if (log !== null) {
    const domain = [log[0]!, log[log.length - 1]!];
    return { scale: { type: "log", domain }, axis: { values: log, format: ",~g" } };
  }
  const axis = chart.percent
    ? { format: ".1~%" }
    : chart.integer
    ? { tickMinStep: 1, format: "d" }
    : undefined;
  return {
    scale: chart.yDomain ? { domain: [...chart.yDomain] } : { zero: chart.integer === true },
    ...(axis ? { axis } : {}),
  };
}

/**
 * The Vega-Lite spec of `chart`: its points as the data (one row per point), a line per series
 * and, where points have `low` and `high`, a band under it.
 *
 * @example
 * ```ts
 * const spec = chartSpec({
 *   title: "eval accuracy vs step",
 *   yTitle: "eval accuracy",
 *   series: ["gift"],
 *   points: [{ x: 0, series: "gift", value: 0.5, low: 0.4, high: 0.6 }],
 *   percent: true,
 * });
 * ```
 */
export function chartSpec(chart: Chart): vl.TopLevelSpec {
  const log = decades(chart);
  const legend = chart.legend ?? chart.series.length > 1;
  const banded = chart.points.some((p) => p.low !== undefined && p.high !== undefined);
  const y = {
    field: "value",
    type: "quantitative",
    title: chart.yTitle + (log ? " (log scale)" : ""),
    ...yScale(chart, log),
  } as const;
  const x = {
    field: "x",
    type: "quantitative",
    title: chart.xTitle ?? "step",
    scale: chart.xDomain
      ? { domain: [...chart.xDomain], nice: false }
      : { zero: false, nice: false },
    axis: { tickMinStep: 1 },
  } as const;
  const color = {
    field: "series",
    type: "nominal",
    title: null,
    scale: {
      domain: [...chart.series],
      range: chart.series.map((_, i) => chart.colors?.[i] ?? PALETTE[i % PALETTE.length]!),
    },
    legend: legend ? { orient: "bottom", direction: "horizontal" } : null,
  } as const;
  const line = {
    mark: {
      type: "line",
      strokeWidth: 1.5,
      ...(chart.dots ? { point: { size: 24, filled: true } } : {}),
    },
    encoding: { y, color },
  } as const;
  // The band's colour is a fill of its own field, without a legend: the lines' legend stands for
  // both (Vega-Lite would merge a legend of the same field, and show the band's faint fill).
  const band = {
    transform: [
      { filter: "isValid(datum.low) && isValid(datum.high)" },
      { calculate: "datum.series", as: "band" },
    ],
    mark: { type: "area", opacity: 0.18 } as const,
    encoding: {
      y: { ...y, field: "low" },
      y2: { field: "high" },
      fill: { ...color, field: "band", legend: null },
    } as const,
  };
  const common = {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    width: WIDTH,
    height: chart.height ?? HEIGHT,
    autosize: { type: "fit-x", contains: "padding" },
    background: "white",
    title: { text: chart.title, anchor: "start", fontSize: 14, offset: 8 },
    data: { values: chart.points.map((p) => ({ ...p })) },
    config: {
      axis: { labelFontSize: 11, titleFontSize: 12, titleFontWeight: "normal" },
      // The same room for every chart's y labels, so the plot areas line up.
      axisY: { minExtent: 44 },
      legend: { labelFontSize: 12, labelLimit: 600, symbolStrokeWidth: 2 },
      view: { stroke: "#ccc" },
    },
  } as const;
  // The bands under the lines; a chart without any is a single line mark.
  return banded
    ? { ...common, encoding: { x }, layer: [band, line] }
    : { ...common, mark: line.mark, encoding: { x, ...line.encoding } };
}

/**
 * Makes the element ids of an SVG (Vega numbers its clip paths from 1 in every view) unique, and
 * drops the XLink namespace when nothing uses it (HTML needs neither, and a page that names no
 * URL is easier to check for network access).
 */
function tidy(svg: string, prefix: string): string {
  const prefixed = svg.replace(/\bid="([^"]+)"/g, `id="${prefix}$1"`)
    .replace(/url\(#([^)]+)\)/g, `url(#${prefix}$1)`)
    .replace(/href="#([^"]+)"/g, `href="#${prefix}$1"`);
  const plain = prefixed.replace(/ xmlns:xlink="[^"]*"/, "");
  return plain.includes("xlink:") ? prefixed : plain;
}

/**
 * `chart` drawn as an SVG element with its title (an image with a label, and a `<title>`
 * element a browser shows on hover); `id` prefixes its element ids, so several charts can share
 * a page.
 *
 * @example
 * ```ts
 * const svg = await renderChart({ title: "KL", yTitle: "KL", series: ["gift"], points }, "kl");
 * html.push(`<figure>\n${svg}\n</figure>`);
 * ```
 */
export async function renderChart(chart: Chart, id: string): Promise<string> {
  const compiled = vl.compile(chartSpec(chart)).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: "none" });
  try {
    const svg = tidy(await view.toSVG(), `${id}-`);
    const title = escapeHtml(chart.title);
    // A function, not a pattern string: a title's `$` stays as it is.
    return svg.replace(
      /^<svg ([^>]*)>/,
      (_, attributes) =>
        `<svg role="img" aria-label="${title}" ${attributes}><title>${title}</title>`,
    );
  } finally {
    view.finalize();
  }
}
