/**
 * The run report's plots: one Vega-Lite line chart per quantity against `step`, compiled with
 * vega-lite and drawn to an SVG string by vega's headless view (renderer "none": no DOM, no
 * canvas, text widths estimated).
 *
 * @module
 */

import * as vega from "vega";
import * as vl from "vega-lite";
import { escapeHtml } from "./_html.ts";

/** One value of one series. */
export interface Point {
  step: number;
  series: string;
  value: number;
}

/** What one chart draws. */
export interface Plot {
  title: string;
  yTitle: string;
  /** The series in legend and colour order; a chart of one series has no legend. */
  series: readonly string[];
  points: readonly Point[];
  /** The x axis runs from 0 to this (the plan's total, so a running run shows how far it is). */
  steps: number;
  /** Values are fractions: the y axis is [0, 1] in percent. */
  fraction?: boolean;
  /** A log y axis when every value is positive and they span more than two decades. */
  logWhenWide?: boolean;
  /** Marks each point (for sparse series such as evaluations). */
  dots?: boolean;
  /** Values are counts: whole-number ticks. */
  integer?: boolean;
}

const WIDTH = 900;
const HEIGHT = 190;

/** The powers of ten a log axis labels, or null for a linear axis. */
function decades(plot: Plot): number[] | null {
  if (!plot.logWhenWide || plot.points.length === 0) return null;
  let low = Infinity;
  let high = 0;
  for (const p of plot.points) {
    if (!(p.value > 0)) return null;
    low = Math.min(low, p.value);
    high = Math.max(high, p.value);
  }
  if (high / low <= 100) return null;
  const ticks = [];
  for (let k = Math.floor(Math.log10(low)); k <= Math.ceil(Math.log10(high)); k++) {
    ticks.push(10 ** k);
  }
  return ticks;
}

function yScale(plot: Plot, log: number[] | null): Record<string, unknown> {
  if (plot.fraction) return { scale: { domain: [0, 1] }, axis: { format: ".0%" } };
  if (log !== null) {
    const domain = [log[0]!, log[log.length - 1]!];
    return { scale: { type: "log", domain }, axis: { values: log, format: ",~g" } };
  }
  return {
    scale: { zero: plot.integer === true },
    ...(plot.integer ? { axis: { tickMinStep: 1, format: "d" } } : {}),
  };
}

/** The Vega-Lite spec of `plot`. */
export function plotSpec(plot: Plot): vl.TopLevelSpec {
  const log = decades(plot);
  const several = plot.series.length > 1;
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    width: WIDTH,
    height: HEIGHT,
    autosize: { type: "fit-x", contains: "padding" },
    background: "white",
    title: { text: plot.title, anchor: "start", fontSize: 14, offset: 8 },
    data: { values: plot.points.map((p) => ({ ...p })) },
    mark: {
      type: "line",
      strokeWidth: 1.5,
      ...(plot.dots ? { point: { size: 24, filled: true } } : {}),
    },
    encoding: {
      x: {
        field: "step",
        type: "quantitative",
        title: "step",
        scale: { domain: [0, Math.max(1, plot.steps)], nice: false },
        axis: { tickMinStep: 1 },
      },
      y: {
        field: "value",
        type: "quantitative",
        title: plot.yTitle + (log ? " (log scale)" : ""),
        ...yScale(plot, log),
      },
      color: {
        field: "series",
        type: "nominal",
        title: null,
        scale: { domain: [...plot.series] },
        ...(several ? { legend: { orient: "bottom", direction: "horizontal" } } : { legend: null }),
      },
    },
    config: {
      axis: { labelFontSize: 11, titleFontSize: 12, titleFontWeight: "normal" },
      // The same room for every chart's y labels, so the plot areas line up.
      axisY: { minExtent: 44 },
      legend: { labelFontSize: 12, symbolStrokeWidth: 2 },
      view: { stroke: "#ccc" },
    },
  };
}

/** Makes the element ids of an SVG (Vega numbers its clip paths from 1 in every view) unique. */
function prefixIds(svg: string, prefix: string): string {
  return svg.replace(/\bid="([^"]+)"/g, `id="${prefix}$1"`)
    .replace(/url\(#([^)]+)\)/g, `url(#${prefix}$1)`)
    .replace(/href="#([^"]+)"/g, `href="#${prefix}$1"`);
}

/**
 * `plot` drawn as an SVG element; `id` prefixes its element ids, so several charts can share a
 * page.
 */
export async function renderPlot(plot: Plot, id: string): Promise<string> {
  const compiled = vl.compile(plotSpec(plot)).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: "none" });
  try {
    const svg = await view.toSVG();
    return prefixIds(svg, `${id}-`)
      .replace("<svg ", `<svg role="img" aria-label="${escapeHtml(plot.title)}" `);
  } finally {
    view.finalize();
  }
}
