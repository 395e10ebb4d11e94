/** A run's report.html, from a synthetic run directory (no training needed). */

import assert from "node:assert/strict";
import {
  MAX_POINTS,
  type MetricsLine,
  readReportData,
  readRunFiles,
  reportHtml,
  type RunFiles,
  writeReport,
} from "../../../analysis/report/mod.ts";
import { Downsample } from "../../../analysis/report/_digest.ts";
import { withTempDir } from "../../_helpers.ts";
import { HOSTILE, syntheticRun, writeRun } from "./_fixture.ts";

function count(text: string, pattern: RegExp): number {
  return [...text.matchAll(pattern)].length;
}

/** The titles of the charts drawn, in page order. */
function chartTitles(html: string): string[] {
  return [...html.matchAll(/<svg role="img" aria-label="([^"]*)"/g)].map((m) => m[1]!);
}

/** A synthetic run directory's files, once its report is written. */
const RUN_FILES = ["metrics.jsonl", "plan.json", "report.html", "run.json", "samples.jsonl"];

Deno.test("reportHtml() draws a chart per measured quantity and says which are not measured", async () => {
  const html = await reportHtml(syntheticRun());
  assert.deepEqual(chartTitles(html), [
    "Reward per source",
    "Accuracy (greedy)",
    "Completion length",
    "Groups with all-equal rewards (no learning signal)",
    "Gradient norm",
    "Skipped updates",
  ]);
  assert.equal(count(html, /<svg\b/g), 6);
  // The run had no reference: kl is null on every line.
  assert.match(html, /KL \(k3, per completion token\): not measured\./);
  // One line per series: the reward chart's legend names the total and both sources.
  for (const label of ["total", "correct", "format"]) {
    assert.match(html, new RegExp(`>${label}</text>`), label);
  }
  // The x axis runs to the plan's total; the gradient norm spans 4 decades, so it is on a log axis.
  assert.match(html, />gradient norm \(log scale\)</);
});

Deno.test("reportHtml() draws KL when measured and leaves out skipped updates when there were none", async () => {
  const html = await reportHtml(syntheticRun({ kl: true, skipped: 0 }));
  const titles = chartTitles(html);
  assert.ok(titles.includes("KL (k3, per completion token)"), titles.join(", "));
  assert.ok(!titles.includes("Skipped updates"), titles.join(", "));
  assert.match(html, /Skipped updates: none\./);
  assert.ok(!html.includes("not measured"));
});

Deno.test("reportHtml() gives element ids unique to each chart", async () => {
  const html = await reportHtml(syntheticRun({ kl: true }));
  const ids = [...html.matchAll(/\bid="([^"]+)"/g)].map((m) => m[1]!);
  assert.equal(new Set(ids).size, ids.length, `repeated ids: ${ids.join(" ")}`);
  for (const m of html.matchAll(/url\(#([^)]+)\)/g)) assert.ok(ids.includes(m[1]!), m[1]);
});

Deno.test("reportHtml() shows the groups of the start, middle and end steps of samples.jsonl", async () => {
  const run = syntheticRun({ sampleSteps: [1, 5, 10, 15, 20] });
  const html = await reportHtml(run);
  assert.match(html, /<h3>Start: step 1<\/h3>/);
  assert.match(html, /<h3>Middle: step 10<\/h3>/);
  assert.match(html, /<h3>End: step 20<\/h3>/);
  assert.ok(!/step 5 ·|step 15 ·/.test(html), "only the first, middle and last step");
  // Two groups per shown step, four completions each, one column per reward source.
  assert.equal(count(html, /<h4>step \d+ · group \d<\/h4>/g), 6);
  assert.equal(count(html, /<td class="text">/g), 24);
  assert.match(html, /<th>reward: correct<\/th><th>reward: format<\/th><th>advantage<\/th>/);
  assert.match(html, /prompt <code>20\+21=<\/code> · answer <code>41<\/code>/);
  // A completion's row: text, total reward, per source, advantage, length, truncated.
  assert.match(
    html,
    /<div>31<\/div><\/td><td class="num">1<\/td><td class="num">1<\/td><td class="num">1<\/td><td class="num">1\.5<\/td><td class="num">3<\/td><td>no<\/td>/,
  );
});

Deno.test("reportHtml() escapes completions, prompts, names and errors", async () => {
  const run = syntheticRun({ status: "failed", name: "a<b>&c" });
  run.samples[0]!.prompt = "<img src=x onerror=alert(1)>";
  run.samples[0]!.completions[0]!.text = "bell\u0007 and nul\u0000";
  run.samples[0]!.completions[1]!.advantage = null;
  run.samples[0]!.completions[1]!.rewards.format = null;
  const html = await reportHtml(run);
  assert.ok(!html.includes("<script"), "a raw <script");
  assert.ok(!html.includes("<img"), "a raw <img");
  assert.ok(!html.includes("<b>bold"), "raw markup from a completion");
  assert.ok(html.includes(
    HOSTILE.replaceAll("&", "&amp;").replaceAll("<", "&lt;")
      .replaceAll(">", "&gt;").replaceAll('"', "&quot;"),
  ));
  assert.match(html, /<title>run a&lt;b&gt;&amp;c<\/title>/);
  assert.match(html, /<div class="error">error: Cannot step as the loss is NaN: &lt;nan&gt;/);
  assert.match(html, /status-failed">failed</);
  // No advantage, and a source that could not score: dashes.
  assert.match(
    html,
    /<div>31<\/div><\/td><td class="num">1<\/td><td class="num">1<\/td><td class="num">—<\/td><td class="num">—<\/td>/,
  );
  // Control characters show as their pictures.
  assert.match(html, /bell\u2407 and nul\u2400/);
  assert.ok(!html.includes("\u0000") && !html.includes("\u0007"));
});

Deno.test("reportHtml() shows the provenance and the accuracy before and after", async () => {
  const html = await reportHtml(syntheticRun());
  for (
    const fact of [
      "3dfc49152e7c2685",
      "recipes/addition_grpo.ts",
      "cpu — TensorFlow.js CPU backend",
      "giftwrap 0.1.0 · Deno 2.9.6 · V8 14.0 · TypeScript 5.9 · TensorFlow.js 4.22.0",
      "20 / 20 (100.0%)",
      "step 20 (checkpoints/final)",
      "2026-11-26 16:20:23 UTC",
      "3m20s",
    ]
  ) assert.ok(html.includes(fact), fact);
  assert.match(
    html,
    /<td>eval accuracy<\/td><td class="num">60\.0% \(step 0\)<\/td><td class="num">80\.0% \(step 20\)<\/td><td class="num">\+20\.0 pts<\/td>/,
  );
  assert.match(html, /<td>train accuracy<\/td><td class="num">58\.0% \(step 0\)/);
  assert.match(html, /<td>reward: correct<\/td>/);
  assert.match(html, /1 skipped update\b/);
});

Deno.test("reportHtml() takes the accuracy after from run.json when only step 0 evaluated", async () => {
  const run = syntheticRun();
  const metrics = run.metrics.map(({ evalAccuracy, ...m }) =>
    (m.step === 0 ? { ...m, evalAccuracy } : m) as MetricsLine
  );
  assert.match(
    await reportHtml({ ...run, metrics }),
    /<td>eval accuracy<\/td><td class="num">60\.0% \(step 0\)<\/td><td class="num">80\.0%<\/td><td class="num">\+20\.0 pts<\/td>/,
  );
});

Deno.test("reportHtml() draws a run that has not started, or has no run.json", async () => {
  const empty: RunFiles = { info: null, plan: null, metrics: [], samples: [] };
  const html = await reportHtml(empty);
  assert.equal(count(html, /<svg\b/g), 0);
  assert.match(html, /No metrics yet\./);
  assert.match(html, /Reward per source: not measured\./);
  assert.match(html, /No sampled groups logged/);

  const run = syntheticRun({ status: "running" });
  const running = await reportHtml({ ...run, info: null, metrics: run.metrics.slice(0, 8) });
  assert.match(running, /unknown<\/span> <span class="muted">\(no run\.json/);
  assert.match(running, /7 \/ 20 \(35\.0%\)/, "steps done from metrics.jsonl, total from the plan");
});

Deno.test("readRunFiles() reads what writeRun() wrote", async () => {
  await withTempDir(async (dir) => {
    const run = syntheticRun();
    await writeRun(dir, run);
    assert.deepEqual(await readRunFiles(dir), JSON.parse(JSON.stringify(run)));
  });
});

Deno.test("readRunFiles() gives null and [] for missing files", async () => {
  await withTempDir(async (dir) => {
    assert.deepEqual(await readRunFiles(dir), { info: null, plan: null, metrics: [], samples: [] });
  });
});

Deno.test("readRunFiles() skips a partially written last line of a .jsonl", async () => {
  await withTempDir(async (dir) => {
    const run = syntheticRun();
    await writeRun(dir, run);
    await Deno.writeTextFile(`${dir}/metrics.jsonl`, '{"step":21,"rewardMe', { append: true });
    await Deno.writeTextFile(`${dir}/samples.jsonl`, '{"step":21,"group":0,"pro', { append: true });
    const read = await readRunFiles(dir);
    assert.equal(read.metrics.length, run.metrics.length);
    assert.equal(read.metrics.at(-1)!.step, 20);
    assert.equal(read.samples.length, run.samples.length);
    // The page is still drawn.
    assert.equal(count(await reportHtml(read), /<svg\b/g), 6);
  });
});

Deno.test("readRunFiles() rejects a broken line before the last, naming it", async () => {
  await withTempDir(async (dir) => {
    const lines: MetricsLine[] = [{ step: 0, evalAccuracy: 0.5 }, { step: 1, rewardMean: 0.1 }];
    await Deno.writeTextFile(
      `${dir}/metrics.jsonl`,
      `${JSON.stringify(lines[0])}\nnot json\n${JSON.stringify(lines[1])}\n`,
    );
    await assert.rejects(
      readRunFiles(dir),
      /Cannot read .*metrics\.jsonl as line 2 is not a JSON object with a numeric 'step': current value is not json/,
    );
  });
});

Deno.test("writeReport() writes report.html through a temporary file and returns its path", async () => {
  await withTempDir(async (dir) => {
    await writeRun(dir, syntheticRun());
    await Deno.writeTextFile(`${dir}/report.html`, "old");
    const path = await writeReport(dir);
    assert.equal(path, `${dir}/report.html`);
    const html = await Deno.readTextFile(path);
    assert.ok(html.startsWith("<!DOCTYPE html>") && html.endsWith("</html>\n"));
    assert.equal(html, await reportHtml(await readRunFiles(dir)));
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name).sort(), RUN_FILES);
  });
});

Deno.test("writeReport() leaves no temporary file behind when it cannot write", async () => {
  await withTempDir(async (dir) => {
    await writeRun(dir, syntheticRun());
    await Deno.mkdir(`${dir}/report.html/taken`, { recursive: true });
    await assert.rejects(writeReport(dir));
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name).sort(), RUN_FILES);
  });
});

Deno.test("writeReport() takes well under 2 s on a 150-step run", async () => {
  await withTempDir(async (dir) => {
    await writeRun(dir, syntheticRun({ steps: 150, kl: true, sampleSteps: [1, 50, 100, 150] }));
    await writeReport(dir); // loads and compiles vega once
    const started = performance.now();
    await writeReport(dir);
    const seconds = (performance.now() - started) / 1000;
    assert.ok(seconds < 2, `${seconds.toFixed(2)} s`);
  });
});

Deno.test("analysis/report/mod.ts loads nothing but analysis/ files, the run formats, vega and vega-lite", async () => {
  const mod = new URL("../../../analysis/report/mod.ts", import.meta.url);
  const { code, stdout } = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", mod.href],
    stdout: "piped",
    stderr: "null",
  }).output();
  assert.equal(code, 0);
  const info = JSON.parse(new TextDecoder().decode(stdout)) as { modules: { specifier: string }[] };
  const dir = new URL("../", mod).href; // analysis/: the charts and the escaping both reports share
  const runDir = new URL("../../runtime/run/run_dir.ts", mod).href; // the file formats, which import nothing
  const outside = info.modules.map((m) => m.specifier)
    .filter((s) => !s.startsWith(dir) && s !== runDir && !/^npm:\/?vega(-lite)?@/.test(s));
  assert.deepEqual(outside, []);
  assert.ok(info.modules.length >= 5, "the module graph");
});

/** The `<figure>` of the chart titled `title`. */
function figure(html: string, title: string): string {
  const found = [...html.matchAll(/<figure>\n([\s\S]*?)\n<\/figure>/g)].map((m) => m[1]!)
    .find((svg) => svg.includes(`aria-label="${title}"`));
  assert.ok(found !== undefined, `no chart titled ${title}`);
  return found;
}

/** The legend's labels of a chart's SVG, in order. */
function legend(svg: string): string[] {
  return [...svg.matchAll(/role-legend-label[^>]*><text[^>]*>([^<]*)<\/text>/g)].map((m) => m[1]!);
}

/** The lines a chart's SVG draws. */
function lineCount(svg: string): number {
  return count(svg, /aria-roledescription="line mark"/g);
}

Deno.test("reportHtml() shows the backend once, however its description names it", async () => {
  const backendRow = async (backend: { name: string; description: string } | null) => {
    const run = syntheticRun();
    const info = backend === null ? null : { ...run.info!, backend };
    const plan = { ...(run.plan as object), backend: { name: "wasm", reason: "requested" } };
    const html = await reportHtml({ ...run, info, plan });
    return /<tr><th>backend<\/th><td>([^<]*)<\/td><\/tr>/.exec(html)?.[1];
  };
  assert.equal(await backendRow({ name: "wasm", description: "wasm" }), "wasm");
  assert.equal(
    await backendRow({ name: "wasm", description: "wasm (SIMD, 1 thread) · matmul: OpenBLAS" }),
    "wasm (SIMD, 1 thread) · matmul: OpenBLAS",
  );
  assert.equal(
    await backendRow({ name: "cpu", description: "TensorFlow.js CPU backend" }),
    "cpu — TensorFlow.js CPU backend",
  );
  // A description that starts with another word is not the name repeated.
  assert.equal(await backendRow({ name: "wasm", description: "wasmtime" }), "wasm — wasmtime");
  assert.equal(await backendRow({ name: "wasm", description: "" }), "wasm");
  // Without run.json: the plan's backend and its reason.
  assert.equal(await backendRow(null), "wasm — requested");
});

/** The synthetic run with one reward source, `correct`, the total `weight` × it. */
function oneSource(weight: number): RunFiles {
  const run = syntheticRun();
  const metrics = run.metrics.map((m): MetricsLine => {
    if (m.rewards === undefined) return m;
    const correct = m.rewards["correct"]!;
    return { ...m, rewards: { correct }, rewardMean: weight * correct.mean! };
  });
  const plan = { ...(run.plan as object), rewards: [{ name: "correct", weight }] };
  return { ...run, plan, metrics };
}

Deno.test("reportHtml() draws the total once when the only reward source is the total", async () => {
  const same = figure(await reportHtml(oneSource(1)), "Reward per source");
  assert.deepEqual(legend(same), ["correct (= total)"]);
  assert.equal(lineCount(same), 1);
  // Weighted, the total is another line: both drawn, both in the legend.
  const weighted = figure(await reportHtml(oneSource(0.5)), "Reward per source");
  assert.deepEqual(legend(weighted), ["total", "correct"]);
  assert.equal(lineCount(weighted), 2);
  // Two sources: the total and each.
  const two = figure(await reportHtml(syntheticRun()), "Reward per source");
  assert.deepEqual(legend(two), ["total", "correct", "format"]);
  assert.equal(lineCount(two), 3);
});

Deno.test("reportHtml() draws the gradient norm before and after clipping, and says what they mean", async () => {
  const run = syntheticRun();
  const html = await reportHtml(run);
  const svg = figure(html, "Gradient norm");
  assert.deepEqual(legend(svg), ["before clipping", "after clipping"]);
  assert.equal(lineCount(svg), 2);
  // 5000 before clipping at step 1, about 1 after: 4 decades, a log axis.
  assert.match(svg, />gradient norm \(log scale\)</);
  const note = /<\/figure>\n<p class="muted note">([^<]*)<\/p>/.exec(
    html.slice(html.indexOf('aria-label="Gradient norm"')),
  )?.[1];
  assert.ok(note !== undefined, "a note under the chart");
  assert.match(
    note,
    /After clipping: the norm of the gradient the update used, scaled down to at most 1 \(optimizer\.clipGradNorm\)\./,
  );
  assert.match(
    note,
    /A large norm before clipping is not divergence: clipping bounds every update\./,
  );
  assert.doesNotMatch(note, /GIFT/, "GRPO has no implicit rewards");

  // GIFT: why its norm before clipping is ~1/ε.
  const plan = {
    ...(run.plan as object),
    objective: { kind: "gift", options: { stdEpsilon: 1e-6 } },
  };
  const gift = await reportHtml({ ...run, plan });
  assert.match(
    gift,
    /has std ≈ 0, so its gradient is scaled by about 1\/ε = 1e6\. A norm before clipping orders of magnitude above/,
  );
  assert.match(gift, /\(u − mean\) \/ \(std \+ ε\), ε = 1e-6:/);
  // The plan's ε, not the default's.
  const wider = { ...plan, objective: { kind: "gift", options: { stdEpsilon: 1e-4 } } };
  assert.match(await reportHtml({ ...run, plan: wider }), /ε = 1e-4: .* 1\/ε = 1e4\./);

  // A run from before the clipped norm was logged: the norm before clipping alone, named so.
  const old = {
    ...run,
    metrics: run.metrics.map(({ gradNormClipped: _, ...m }) => m as MetricsLine),
  };
  const before = figure(await reportHtml(old), "Gradient norm");
  assert.deepEqual(legend(before), ["before clipping"]);
  assert.equal(lineCount(before), 1);
});

Deno.test("Downsample keeps at most its bound of points, evenly, the first and the last among them", () => {
  const d = new Downsample(3);
  for (let i = 0; i < 10; i++) d.push(i, i * i);
  // Kept as they came: 0..6, then past 2 × 3 every 2nd (0 2 4 6), then 8; the last, 9; then an
  // even stride over those 6 picks indices 0, round(2.5) = 3 and 5.
  assert.deepEqual(d.points(), [{ x: 0, value: 0 }, { x: 6, value: 36 }, { x: 9, value: 81 }]);
  assert.equal(d.seen, 10);
  const few = new Downsample(3);
  few.push(1, 1);
  few.push(2, 4);
  assert.deepEqual(few.points(), [{ x: 1, value: 1 }, { x: 2, value: 4 }]);
});

/** The vertices of each line a page's charts draw. */
function lineVertices(html: string): number[] {
  return [...html.matchAll(/aria-roledescription="line mark" d="([^"]*)"/g)]
    .map((m) => 1 + count(m[1]!, /L/g));
}

Deno.test("writeReport() of a 100,000-step run draws at most MAX_POINTS per line and parses only the samples it shows", async () => {
  await withTempDir(async (dir) => {
    const steps = 100_000;
    const run = syntheticRun({ steps, kl: true, sampleSteps: [] });
    await writeRun(dir, { ...run, metrics: [], samples: [] });
    // metrics.jsonl, written in slices: 100,001 lines (~60 MB).
    const metrics = await Deno.open(`${dir}/metrics.jsonl`, { write: true, truncate: true });
    const encoder = new TextEncoder();
    for (let i = 0; i < run.metrics.length; i += 10_000) {
      const text = run.metrics.slice(i, i + 10_000).map((m) => JSON.stringify(m) + "\n").join("");
      await metrics.write(encoder.encode(text));
    }
    metrics.close();
    // samples.jsonl: two groups every 20 steps (10,000 lines, ~20 MB). Only the first, middle
    // and last of the 5,000 logged steps are whole JSON: a report that parsed any other line
    // would fail on it, as readRunFiles() does.
    const shown = [20, 50_000, 100_000];
    const samples = await Deno.open(`${dir}/samples.jsonl`, { write: true, create: true });
    const padding = "x".repeat(2000);
    for (let step = 20; step <= steps; step += 20) {
      let text = "";
      for (let group = 0; group < 2; group++) {
        const g = { step, group, prompt: `${step}+${group}=`, answer: "?", completions: [] };
        text += shown.includes(step)
          ? JSON.stringify(g) + "\n"
          : `${JSON.stringify(g).slice(0, -2)}["not parsed ${padding}\n`;
      }
      await samples.write(encoder.encode(text));
    }
    samples.close();
    await assert.rejects(readRunFiles(dir), /samples\.jsonl as line 3 is not a JSON object/);

    const html = await Deno.readTextFile(await writeReport(dir));
    const vertices = lineVertices(html);
    assert.ok(vertices.length >= 8, `${vertices.length} lines drawn`);
    assert.ok(vertices.every((n) => n <= MAX_POINTS), `vertices per line: ${vertices}`);
    assert.ok(vertices.some((n) => n === MAX_POINTS), `vertices per line: ${vertices}`);
    assert.match(html, /Downsampled: each line is drawn through at most 2000 evenly spaced/);
    assert.deepEqual(
      [...html.matchAll(/<h3>(\w+): step (\d+)<\/h3>/g)].map((m) => `${m[1]} ${m[2]}`),
      ["Start 20", "Middle 50000", "End 100000"],
    );
    assert.equal(count(html, /<h4>step /g), 6);

    // The chart data: the first and last steps kept, every value the logged one at its step.
    const data = await readReportData(dir);
    const completion = data.metrics.series("completionLength");
    assert.equal(completion.seen, steps);
    assert.equal(completion.points.length, MAX_POINTS);
    assert.equal(completion.points[0]!.x, 1);
    assert.equal(completion.points.at(-1)!.x, steps);
    for (const p of completion.points) assert.equal(p.value, 12 - 4 * (p.x / steps));
    // The result table's sums and ends are over every line all the same: 0.5 s a step.
    assert.equal(data.metrics.stepSeconds, 0.5 * steps);
    assert.equal(data.metrics.steps, steps);
  });
});
