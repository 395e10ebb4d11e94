/** Both reports' charts: a chart's Vega-Lite spec from its points, and its SVG. */

import assert from "node:assert/strict";
import { type Chart, chartSpec, PALETTE, renderChart } from "../../analysis/_charts.ts";

/** Two series of three steps, no bands. */
const CHART: Chart = {
  title: "KL",
  yTitle: "KL (k3)",
  series: ["to the reference", "to the initial policy"],
  points: [1, 2, 3].flatMap((step) => [
    { x: step, series: "to the reference", value: 0.01 * step },
    { x: step, series: "to the initial policy", value: 0.02 * step },
  ]),
  xDomain: [0, 10],
};

/** What these tests read of a single-layer spec. */
interface UnitSpec {
  data: { values: unknown[] };
  mark: { type: string; point?: unknown };
  encoding: {
    x: { field: string; title: string; scale: { domain?: number[] } };
    y: {
      field: string;
      title: string;
      scale: { type?: string; domain?: number[] };
      axis?: { values?: number[]; format?: string };
    };
    color: { field: string; scale: { domain: string[]; range: string[] }; legend: unknown };
  };
}

function unit(chart: Chart): UnitSpec {
  return chartSpec(chart) as unknown as UnitSpec;
}

Deno.test("chartSpec() draws the chart's points as its data, a line per series", () => {
  const spec = unit(CHART);
  assert.deepEqual(spec.data.values, CHART.points);
  assert.equal(spec.mark.type, "line");
  assert.equal(spec.mark.point, undefined);
  assert.deepEqual([spec.encoding.x.field, spec.encoding.x.title], ["x", "step"]);
  assert.deepEqual(spec.encoding.x.scale.domain, [0, 10]);
  assert.deepEqual([spec.encoding.y.field, spec.encoding.y.title], ["value", "KL (k3)"]);
  // The series in their order, in the palette's first colours; two series have a legend.
  assert.deepEqual(spec.encoding.color.scale, {
    domain: ["to the reference", "to the initial policy"],
    range: [PALETTE[0], PALETTE[1]],
  });
  assert.notEqual(spec.encoding.color.legend, null);
  // One series has none, unless asked for; given colours replace the palette's.
  const one = { ...CHART, series: ["to the reference"], colors: ["#000000"] };
  assert.equal(unit(one).encoding.color.legend, null);
  assert.deepEqual(unit(one).encoding.color.scale.range, ["#000000"]);
  assert.notEqual(unit({ ...one, legend: true }).encoding.color.legend, null);
  // Fractions: percent ticks on the given range; dots on each point.
  const fraction = unit({ ...CHART, percent: true, yDomain: [0, 1], dots: true });
  assert.deepEqual(fraction.encoding.y.scale.domain, [0, 1]);
  assert.equal(fraction.encoding.y.axis?.format, ".1~%");
  assert.ok(fraction.mark.point !== undefined);
});

Deno.test("chartSpec() puts positive values spanning more than two decades on a log axis", () => {
  const wide = (values: number[]): Chart => ({
    title: "Gradient norm",
    yTitle: "gradient norm",
    series: ["before clipping"],
    points: values.map((value, i) => ({ x: i + 1, series: "before clipping", value })),
    logWhenWide: true,
  });
  const log = unit(wide([0.5, 3, 5000]));
  assert.equal(log.encoding.y.scale.type, "log");
  // Labelled at the powers of ten around the data: 0.1 ≤ 0.5 and 5000 ≤ 10⁴.
  assert.deepEqual(log.encoding.y.scale.domain, [0.1, 10000]);
  assert.deepEqual(log.encoding.y.axis?.values, [0.1, 1, 10, 100, 1000, 10000]);
  assert.equal(log.encoding.y.title, "gradient norm (log scale)");
  // Two decades exactly, a zero, or a chart that did not ask: linear.
  for (
    const chart of [wide([1, 100]), wide([0, 1, 5000]), {
      ...wide([0.5, 5000]),
      logWhenWide: false,
    }]
  ) {
    const spec = unit(chart);
    assert.equal(spec.encoding.y.scale.type, undefined);
    assert.equal(spec.encoding.y.title, "gradient norm");
  }
});

Deno.test("chartSpec() draws a band under each line from the points' low to their high", () => {
  const chart: Chart = {
    title: "eval accuracy vs step",
    yTitle: "eval accuracy",
    series: ["gift"],
    points: [
      { x: 0, series: "gift", value: 0.25, low: 0.25, high: 0.25 },
      { x: 5, series: "gift", value: 0.5, low: 0.25, high: 0.75 },
    ],
  };
  const spec = chartSpec(chart) as unknown as {
    data: { values: unknown[] };
    layer: { mark: { type: string }; encoding: Record<string, { field: string }> }[];
  };
  assert.deepEqual(spec.data.values, chart.points);
  assert.deepEqual(spec.layer.map((l) => l.mark.type), ["area", "line"]);
  const [band, line] = spec.layer;
  assert.deepEqual([band!.encoding.y!.field, band!.encoding.y2!.field], ["low", "high"]);
  assert.equal(line!.encoding.y!.field, "value");
});

Deno.test("renderChart() draws the titles and series names, escaped, and no link", async () => {
  const hostile = { ...CHART, title: 'a<b & "c" $1', series: ["x<y", "to the initial policy"] };
  hostile.points = CHART.points.map((p) =>
    p.series === "to the reference" ? { ...p, series: "x<y" } : p
  );
  const svg = await renderChart(hostile, "kl");
  const title = "a&lt;b &amp; &quot;c&quot; $1"; // `$1` as it is, not a replacement pattern
  assert.ok(
    svg.startsWith(`<svg role="img" aria-label="${title}" `) &&
      svg.includes(`><title>${title}</title>`),
    svg.slice(0, 300),
  );
  const texts = [...svg.matchAll(/<text[^>]*>([^<]*)<\/text>/g)].map((m) => m[1]!);
  for (const label of ["step", "KL (k3)", "x&lt;y", "to the initial policy"]) {
    assert.ok(texts.includes(label), `${label} in ${texts.join("|")}`);
  }
  assert.ok(!svg.includes("x<y") && !svg.includes("a<b"), "unescaped text");
  // Two lines, and no namespace but SVG's (nothing links).
  assert.equal([...svg.matchAll(/aria-roledescription="line mark"/g)].length, 2);
  assert.ok(svg.includes('xmlns="http://www.w3.org/2000/svg"') && !svg.includes("xlink"));
});
