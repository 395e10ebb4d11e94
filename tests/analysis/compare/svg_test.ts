/** The hand-drawn SVG line chart, on a tiny dataset. */

import assert from "node:assert/strict";
import { escapeXml, lineChart, niceTicks, tickLabel } from "../../../analysis/compare/svg.ts";

const SERIES = [
  {
    label: "gift",
    points: [
      { x: 0, y: 0.2, low: 0.1, high: 0.3 },
      { x: 5, y: 0.5, low: 0.4, high: 0.6 },
      { x: 10, y: 0.7, low: 0.6, high: 0.8 },
    ],
  },
  { label: "grpo", points: [{ x: 0, y: 0.2 }, { x: 5, y: 0.3 }, { x: 10, y: 0.45 }] },
  { label: "a<b & c", points: [{ x: 0, y: 0.1 }, { x: 10, y: 0.2 }] },
];

function count(text: string, pattern: RegExp): number {
  return [...text.matchAll(pattern)].length;
}

Deno.test("lineChart() draws one path per series, a band where given, and a legend", () => {
  const svg = lineChart({
    title: "eval accuracy vs step",
    xLabel: "step",
    yLabel: "accuracy",
    series: SERIES,
  });
  assert.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg" viewBox="0 0 640 320"/);
  assert.ok(svg.endsWith("</svg>"));
  assert.equal(count(svg, /<path /g), 3, "one path per series");
  assert.equal(count(svg, /<polygon /g), 1, "a band for the series with low and high");
  // The legend: a swatch and the label of each series, escaped.
  for (const label of ["gift", "grpo", "a&lt;b &amp; c"]) {
    assert.match(svg, new RegExp(`<text [^>]*>${label}</text>`), label);
  }
  assert.ok(!svg.includes("a<b"), "an unescaped label");
  assert.match(svg, /<title>eval accuracy vs step<\/title>/);
  assert.match(svg, />step<\/text>/);
  assert.match(svg, />accuracy<\/text>/);
  // Ticks: x spans the data (0 to 10); y widens to round values.
  for (const tick of ["0", "4", "10"]) {
    assert.match(svg, new RegExp(`text-anchor="middle">${tick}</text>`), tick);
  }
  assert.doesNotMatch(svg, /text-anchor="middle">12<\/text>/, "an x tick beyond the data");
  assert.match(svg, /end" dominant-baseline="middle">0.8<\/text>/);
  // Every coordinate is a number.
  assert.ok(!/NaN|Infinity|undefined/.test(svg), svg);
});

Deno.test("lineChart() puts each point where its value says", () => {
  const svg = lineChart({
    title: "t",
    xLabel: "x",
    yLabel: "y",
    series: [{ label: "s", points: [{ x: 0, y: 0 }, { x: 10, y: 1 }] }],
    width: 260,
    height: 104,
  });
  // Plot area: x 60…110 (260 − 150), y 30…60 (104 − 44); (0, 0) bottom left, (10, 1) top right.
  assert.match(svg, /<path d="M60,60 L110,30"/);
});

Deno.test("lineChart() draws an empty chart and a single point without NaN", () => {
  const empty = lineChart({ title: "none", xLabel: "x", yLabel: "y", series: [] });
  assert.equal(count(empty, /<path /g), 0);
  const one = lineChart({
    title: "one",
    xLabel: "x",
    yLabel: "y",
    series: [{ label: "s", points: [{ x: 3, y: 0.5 }] }],
  });
  assert.equal(count(one, /<path /g), 1);
  assert.equal(count(one, /<circle /g), 1);
  for (const svg of [empty, one]) assert.ok(!/NaN|Infinity/.test(svg), svg);
});

Deno.test("niceTicks() covers the range in steps of 1, 2 or 5 × 10^k", () => {
  assert.deepEqual(niceTicks(0, 0.93), [0, 0.2, 0.4, 0.6, 0.8, 1]);
  assert.deepEqual(niceTicks(0, 150), [0, 50, 100, 150]);
  assert.deepEqual(niceTicks(0.1, 0.3), [0.1, 0.15, 0.2, 0.25, 0.3]);
  assert.deepEqual(niceTicks(2, 2), [1, 1.5, 2, 2.5, 3]);
});

Deno.test("tickLabel() and escapeXml() write short, safe text", () => {
  assert.equal(tickLabel(12500), "12.5k");
  assert.equal(tickLabel(3_400_000), "3.4M");
  assert.equal(tickLabel(0.05), "0.05");
  assert.equal(tickLabel(0.0002), "2e-4");
  assert.equal(tickLabel(0), "0");
  assert.equal(escapeXml(`<a href="x">&</a>`), "&lt;a href=&quot;x&quot;&gt;&amp;&lt;/a&gt;");
});
