/**
 * A run's `report.html`: one self-contained page (inline CSS and SVG, no script, no network)
 * drawn from the files of a run directory — `run.json` (provenance and status), `plan.json`,
 * `metrics.jsonl` and `samples.jsonl`. The header gives the provenance, a short table the
 * metrics at the start and the end of the run, Vega-Lite charts (rendered to SVG here, headless)
 * the reward per source, accuracy, KL, completion length, the groups without signal, the gradient
 * norm before and after clipping and any skipped update against the step, and tables the sampled groups of the first, the
 * middle and the last logged step.
 *
 * What `deno task report <run dir>` writes, and what the trainer rewrites at every checkpoint and
 * at the end of a run. Nothing here loads TensorFlow.js.
 *
 * @example
 * ```ts
 * import { writeReport } from "./analysis/report/mod.ts";
 *
 * const path = await writeReport("runs/addition-gift-20261126-162023");
 * console.log(`wrote ${path}`);
 * ```
 *
 * @module
 */

import { escapeHtml, STYLE } from "./_html.ts";
import {
  digestMetrics,
  MetricsDigest,
  parseLine,
  pickSteps,
  rawLines,
  readSampled,
} from "./_digest.ts";
import { finalTable, header, plots, type ReportData, samples } from "./_sections.ts";
import type { MetricsLine, RunFiles, RunInfo, SampleGroup } from "./_types.ts";

export type { MetricsLine, RunFiles, RunInfo, SampleCompletion, SampleGroup } from "./_types.ts";
export type { ReportData } from "./_sections.ts";
export { MAX_POINTS, MetricsDigest } from "./_digest.ts";

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

async function readText(path: string): Promise<string | null> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
}

async function readJson(path: string): Promise<Record<string, unknown> | null> {
  const text = await readText(path);
  if (text === null) return null;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new Error(`Cannot read ${path} as it is not JSON: ${(e as Error).message}`);
  }
  if (!isObject(value)) throw new Error(`Cannot read ${path} as it is not a JSON object`);
  return value;
}

/**
 * The objects of a JSON Lines file, each with a numeric `step`; a last line that is not one (the
 * writer was interrupted in the middle of it) is left out, and so are blank lines.
 */
async function readJsonl(path: string): Promise<Record<string, unknown>[]> {
  const objects: Record<string, unknown>[] = [];
  for await (const line of rawLines(path)) {
    const value = parseLine(path, line);
    if (value !== null) objects.push(value);
  }
  return objects;
}

/**
 * Reads the files of the run directory `dir`. Tolerant of a run in progress or an older one: a
 * missing file gives null or `[]`, and a partially written last line of a `.jsonl` is left out.
 * Throws when `run.json` or `plan.json` is not a JSON object, or when a line of a `.jsonl` other
 * than the last is not an object with a numeric `step`.
 *
 * @example
 * ```ts
 * const run = await readRunFiles("runs/addition-gift-20261126-162023");
 * console.log(run.info?.status, run.metrics.length);
 * ```
 */
export async function readRunFiles(dir: string): Promise<RunFiles> {
  const [info, plan, metrics, samples] = await Promise.all([
    readJson(`${dir}/run.json`),
    readJson(`${dir}/plan.json`),
    readJsonl(`${dir}/metrics.jsonl`),
    readJsonl(`${dir}/samples.jsonl`),
  ]);
  return {
    info: info as RunInfo | null,
    plan,
    metrics: metrics as MetricsLine[],
    samples: samples.filter((s) => Array.isArray(s.completions)) as unknown as SampleGroup[],
  };
}

/**
 * What the report of the run directory `dir` draws, read in bounded memory: `run.json` and
 * `plan.json`, `metrics.jsonl` a line at a time into a digest (each chart's series downsampled to
 * at most {@linkcode MAX_POINTS} points), and `samples.jsonl` parsed only at the first, middle
 * and last logged steps. Throws as {@linkcode readRunFiles} does, except for lines of
 * `samples.jsonl` at steps the page does not show, which are not parsed.
 *
 * @example
 * ```ts
 * const data = await readReportData("runs/addition-gift-20261126-162023");
 * console.log(data.metrics.steps, data.sampled.steps); // 150 [["start", 1], ["middle", 75], …]
 * ```
 */
export async function readReportData(dir: string): Promise<ReportData> {
  const [info, plan, metrics, sampled] = await Promise.all([
    readJson(`${dir}/run.json`),
    readJson(`${dir}/plan.json`),
    digestMetrics(`${dir}/metrics.jsonl`),
    readSampled(`${dir}/samples.jsonl`),
  ]);
  return { info: info as RunInfo | null, plan, metrics, sampled };
}

/** What the report draws of already-read files: the same as {@linkcode readReportData} reads. */
function reportData(run: RunFiles): ReportData {
  const metrics = new MetricsDigest();
  for (const m of run.metrics) metrics.add(m);
  const steps = pickSteps(run.samples.map((g) => g.step));
  const shown = new Set(steps.map(([, step]) => step));
  const groups = run.samples.filter((g) => shown.has(g.step));
  return { info: run.info, plan: run.plan, metrics, sampled: { steps, groups } };
}

/**
 * The report of a run as one HTML page, from its already-read files, or from what
 * {@linkcode readReportData} read.
 *
 * @example
 * ```ts
 * const html = await reportHtml(await readRunFiles(dir));
 * ```
 */
export async function reportHtml(run: RunFiles | ReportData): Promise<string> {
  const data = "sampled" in run ? run : reportData(run);
  const head = header(data);
  const parts = [
    "<!DOCTYPE html>",
    '<html lang="en">',
    "<head>",
    '<meta charset="utf-8">',
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    `<title>run ${escapeHtml(head.name)}</title>`,
    `<style>${STYLE}</style>`,
    "</head>",
    "<body>",
    head.html,
    "<h2>Result</h2>",
    finalTable(data),
    "<h2>Curves</h2>",
    await plots(data),
    "<h2>Samples</h2>",
    samples(data),
    "</body>",
    "</html>",
  ];
  return parts.join("\n") + "\n";
}

/**
 * Writes `<dir>/report.html` from the run directory's files as {@linkcode readReportData} reads
 * them (bounded however long the run), through a temporary file and a rename (a reader never sees
 * half a page), and returns its path.
 *
 * @example
 * ```ts
 * const path = await writeReport("runs/addition-gift-20261126-162023");
 * // "runs/addition-gift-20261126-162023/report.html"
 * ```
 */
export async function writeReport(dir: string): Promise<string> {
  // Read in bounded memory: a long run rebuilds this at every checkpoint.
  const html = await reportHtml(await readReportData(dir));
  const path = `${dir}/report.html`;
  const temporary = `${path}.${Deno.pid}-${crypto.randomUUID().slice(0, 8)}.tmp`;
  try {
    await Deno.writeTextFile(temporary, html);
    await Deno.rename(temporary, path);
  } catch (e) {
    await Deno.remove(temporary).catch(() => {});
    throw e;
  }
  return path;
}
