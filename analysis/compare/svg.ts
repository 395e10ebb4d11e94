/**
 * `lineChart()`: a line chart as an inline SVG string, drawn by hand (no library, no script): a
 * frame with ticks and grid lines (x spanning the data, y widened to round ticks), one `<path>` per series with an optional band (a `<polygon>`
 * from each point's `low` to its `high`, such as the min–max over seeds), small dots on the points
 * of short series, and a legend on the right.
 *
 * @module
 */

/** A point of a series; `low` and `high` bound its band (both or neither). */
export interface ChartPoint {
  x: number;
  y: number;
  low?: number;
  high?: number;
}

/** One line of a chart. */
export interface ChartSeries {
  label: string;
  points: readonly ChartPoint[];
  /** A CSS colour. @default the palette's next colour */
  color?: string;
}

/** Options of `lineChart()`. */
export interface LineChartOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  series: readonly ChartSeries[];
  /** @default 640 */
  width?: number;
  /** @default 320 */
  height?: number;
  /** The y axis range, widened to hold every point. @default the data's range */
  yRange?: readonly [number, number];
  /** Tick labels. @default `tickLabel()` */
  formatX?: (value: number) => string;
  formatY?: (value: number) => string;
}

/** Ten distinguishable colours (Tableau 10). */
export const PALETTE = [
  "#4e79a7",
  "#f28e2b",
  "#e15759",
  "#76b7b2",
  "#59a14f",
  "#edc948",
  "#b07aa1",
  "#ff9da7",
  "#9c755f",
  "#bab0ac",
] as const;

const MARGIN = { left: 60, right: 150, top: 30, bottom: 44 };

/** Series with at most this many points get a dot on each. */
const MAX_DOTTED = 40;

/**
 * Escapes text for XML and HTML.
 *
 * @example
 * ```ts
 * escapeXml("a < b & c"); // "a &lt; b &amp; c"
 * ```
 */
export function escapeXml(text: string): string {
  return text.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;")
    .replaceAll('"', "&quot;");
}

/**
 * About `count` round tick values (steps of 1, 2 or 5 × 10^k) covering [min, max].
 *
 * @example
 * ```ts
 * niceTicks(0, 0.93, 5); // [0, 0.2, 0.4, 0.6, 0.8, 1]
 * ```
 */
export function niceTicks(min: number, max: number, count = 5): number[] {
  if (!(max > min)) {
    const pad = min === 0 ? 1 : Math.abs(min) / 2;
    return niceTicks(min - pad, max + pad, count);
  }
  const rough = (max - min) / count;
  const power = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= rough) ?? 10 * power;
  const first = Math.floor(min / step + 1e-9);
  const last = Math.ceil(max / step - 1e-9);
  // Rounded to the step's decimals, so that 0.1 + 0.2 prints as 0.3.
  const decimals = Math.max(0, -Math.floor(Math.log10(step)) + 1);
  return Array.from(
    { length: last - first + 1 },
    (_, i) => Number(((first + i) * step).toFixed(decimals)),
  );
}

/**
 * A short label for a tick value: `1.2k`, `3.4M`, `0.05`, `2e-4`.
 *
 * @example
 * ```ts
 * tickLabel(12500); // "12.5k"
 * ```
 */
export function tickLabel(value: number): string {
  const abs = Math.abs(value);
  if (abs === 0) return "0";
  if (abs >= 1e6) return `${trim((value / 1e6).toFixed(2))}M`;
  if (abs >= 1e3) return `${trim((value / 1e3).toFixed(2))}k`;
  if (abs < 1e-3) return value.toExponential(0);
  return trim(value.toPrecision(3));
}

function trim(text: string): string {
  return text.includes(".") ? text.replace(/\.?0+$/, "") : text;
}

function fixed(n: number): string {
  return String(Math.round(n * 10) / 10);
}

/**
 * A line chart as an SVG string, self-contained (inline styles, no script).
 *
 * @example
 * ```ts
 * const svg = lineChart({
 *   title: "eval accuracy",
 *   xLabel: "step",
 *   yLabel: "accuracy",
 *   series: [{ label: "gift", points: [{ x: 0, y: 0.5, low: 0.4, high: 0.6 }, { x: 10, y: 0.8 }] }],
 * });
 * ```
 */
export function lineChart(options: LineChartOptions): string {
  const width = options.width ?? 640;
  const height = options.height ?? 320;
  const formatX = options.formatX ?? tickLabel;
  const formatY = options.formatY ?? tickLabel;
  const plot = {
    left: MARGIN.left,
    top: MARGIN.top,
    right: width - MARGIN.right,
    bottom: height - MARGIN.bottom,
  };

  // 1) The ranges: every point and band edge, widened to round ticks.
  const points = options.series.flatMap((s) => s.points);
  const xs = points.map((p) => p.x);
  const ys = points.flatMap((p) => [p.y, p.low ?? p.y, p.high ?? p.y]);
  if (options.yRange) ys.push(...options.yRange);
  // x spans the data exactly (steps end where the runs end); y widens to round ticks.
  let [x0, x1] = xs.length ? [Math.min(...xs), Math.max(...xs)] : [0, 1];
  if (x1 === x0) [x0, x1] = [x0 - 1, x1 + 1];
  const span = x1 - x0;
  const xTicks = niceTicks(x0, x1).filter((t) => t >= x0 - 1e-9 * span && t <= x1 + 1e-9 * span);
  const yTicks = niceTicks(ys.length ? Math.min(...ys) : 0, ys.length ? Math.max(...ys) : 1);
  const [y0, y1] = [yTicks[0]!, yTicks.at(-1)!];
  const sx = (x: number) => plot.left + ((x - x0) / (x1 - x0)) * (plot.right - plot.left);
  const sy = (y: number) => plot.bottom - ((y - y0) / (y1 - y0)) * (plot.bottom - plot.top);

  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${width} ${height}" width="${width}" ` +
    `height="${height}" role="img" font-family="sans-serif" font-size="11">`,
    `<title>${escapeXml(options.title)}</title>`,
    `<text x="${plot.left}" y="18" font-size="13" font-weight="bold">${
      escapeXml(options.title)
    }</text>`,
  ];

  // 2) Grid lines and ticks.
  for (const t of yTicks) {
    const y = fixed(sy(t));
    parts.push(
      `<line x1="${plot.left}" x2="${plot.right}" y1="${y}" y2="${y}" stroke="#e5e5e5"/>`,
      `<text x="${plot.left - 6}" y="${y}" text-anchor="end" dominant-baseline="middle">${
        escapeXml(formatY(t))
      }</text>`,
    );
  }
  for (const t of xTicks) {
    const x = fixed(sx(t));
    parts.push(
      `<line x1="${x}" x2="${x}" y1="${plot.top}" y2="${plot.bottom}" stroke="#f0f0f0"/>`,
      `<text x="${x}" y="${plot.bottom + 16}" text-anchor="middle">${escapeXml(formatX(t))}</text>`,
    );
  }
  parts.push(
    `<rect x="${plot.left}" y="${plot.top}" width="${plot.right - plot.left}" ` +
      `height="${plot.bottom - plot.top}" fill="none" stroke="#888"/>`,
    `<text x="${(plot.left + plot.right) / 2}" y="${height - 8}" text-anchor="middle">${
      escapeXml(options.xLabel)
    }</text>`,
    `<text transform="translate(14 ${(plot.top + plot.bottom) / 2}) rotate(-90)" ` +
      `text-anchor="middle">${escapeXml(options.yLabel)}</text>`,
  );

  // 3) Bands under the lines, then the lines, their dots and the legend.
  const colored = options.series.map((s, i) => ({ ...s, color: s.color ?? PALETTE[i % 10]! }));
  for (const s of colored) {
    const banded = s.points.filter((p) => p.low !== undefined && p.high !== undefined);
    if (banded.length < 2) continue;
    const edge = [
      ...banded.map((p) => `${fixed(sx(p.x))},${fixed(sy(p.high!))}`),
      ...banded.toReversed().map((p) => `${fixed(sx(p.x))},${fixed(sy(p.low!))}`),
    ];
    parts.push(`<polygon points="${edge.join(" ")}" fill="${s.color}" fill-opacity="0.18"/>`);
  }
  for (const [i, s] of colored.entries()) {
    if (s.points.length > 0) {
      const d = s.points.map((p, j) => `${j === 0 ? "M" : "L"}${fixed(sx(p.x))},${fixed(sy(p.y))}`);
      parts.push(
        `<path d="${d.join(" ")}" fill="none" stroke="${s.color}" stroke-width="2">` +
          `<title>${escapeXml(s.label)}</title></path>`,
      );
      if (s.points.length <= MAX_DOTTED) {
        for (const p of s.points) {
          parts.push(
            `<circle cx="${fixed(sx(p.x))}" cy="${fixed(sy(p.y))}" r="2.5" fill="${s.color}"/>`,
          );
        }
      }
    }
    const ly = plot.top + 8 + 18 * i;
    parts.push(
      `<rect x="${plot.right + 14}" y="${ly - 5}" width="14" height="10" fill="${s.color}"/>`,
      `<text x="${plot.right + 34}" y="${ly}" dominant-baseline="middle">${
        escapeXml(s.label)
      }</text>`,
    );
  }
  parts.push("</svg>");
  return parts.join("\n");
}
