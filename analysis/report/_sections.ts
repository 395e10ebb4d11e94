/**
 * The sections of a run's `report.html`: the provenance header, the table of the run's start and
 * end, the charts, and the sampled groups of the first, middle and last logged step. The files
 * are data from disk, possibly of an older or unfinished run, so every field is read defensively.
 *
 * @module
 */

import { type Cell, escapeHtml, fmt, num, percent, table, text } from "./_html.ts";
import { type Chart, type Point, renderChart } from "../_charts.ts";
import { finite, MAX_POINTS, type MetricsDigest, type Sampled } from "./_digest.ts";
import type { RunInfo, SampleGroup } from "./_types.ts";

/**
 * What the sections draw: `run.json` and `plan.json` as read, the digest of `metrics.jsonl` and
 * the groups of `samples.jsonl` at the steps shown (`_digest.ts`), each bounded however long the
 * run.
 */
export interface ReportData {
  info: RunInfo | null;
  plan: unknown | null;
  metrics: MetricsDigest;
  sampled: Sampled;
}

function str(x: unknown): string | null {
  return typeof x === "string" ? x : null;
}

/** `plan[a][b]…`, or undefined where a link is missing. */
function at(plan: unknown, ...path: string[]): unknown {
  let x = plan;
  for (const key of path) {
    if (typeof x !== "object" || x === null) return undefined;
    x = (x as Record<string, unknown>)[key];
  }
  return x;
}

/** The plan's total of steps: run.json's, else plan.json's, else the last step logged. */
function totalSteps(run: ReportData): number {
  return finite(run.info?.steps) ?? finite(at(run.plan, "schedule", "steps")) ??
    run.metrics.maxStep;
}

/** The reward sources in the plan's order, then any other the metrics name. */
function sourceNames(run: ReportData): string[] {
  const names: string[] = [];
  const planned = at(run.plan, "rewards");
  if (Array.isArray(planned)) {
    for (const r of planned) {
      const name = str(at(r, "name"));
      if (name !== null && !names.includes(name)) names.push(name);
    }
  }
  for (const name of run.metrics.sources) if (!names.includes(name)) names.push(name);
  return names;
}

/** An ISO time as `2026-11-26 16:20:23 UTC`; anything else as it is. */
function time(iso: unknown): string {
  const s = str(iso);
  if (s === null) return "—";
  const t = new Date(s);
  return Number.isNaN(t.getTime()) ? s : `${t.toISOString().slice(0, 19).replace("T", " ")} UTC`;
}

/** Seconds as `3m20s`, `1h02m` or `42s`. */
function duration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s >= 3600) {
    return `${Math.floor(s / 3600)}h${String(Math.floor(s / 60) % 60).padStart(2, "0")}m`;
  }
  return s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s` : `${s}s`;
}

/**
 * The backend as one phrase. The runtime's description names the backend first ("wasm (SIMD, 1
 * thread) · matmul: OpenBLAS"), or is the name alone: then it is shown as it is. Another (the
 * plan's reason, "auto: the fastest present of …") follows the name.
 */
function backendText(name: string, description: string | null): string {
  if (description === null || description.trim() === "") return name;
  const rest = description.startsWith(name) ? description.slice(name.length) : null;
  if (rest !== null && (rest === "" || !/^[\p{L}\p{N}_-]/u.test(rest))) return description;
  return `${name} — ${description}`;
}

/** The page's heading and provenance table; `name` for the page title. */
export function header(run: ReportData): { name: string; html: string } {
  const { info, plan } = run;
  const name = str(info?.name) ?? str(at(plan, "name")) ?? "(unnamed)";
  const status = str(info?.status) ?? "unknown";
  const total = totalSteps(run);
  const done = finite(info?.step) ?? run.metrics.lastStep ?? 0;
  const objective = str(at(plan, "objective", "kind"));
  const rows: [string, string][] = []; // [label, escaped HTML]
  const row = (label: string, value: string | null) => {
    if (value !== null) rows.push([label, escapeHtml(value)]);
  };

  rows.push([
    "status",
    `<span class="status status-${escapeHtml(status)}">${escapeHtml(status)}</span>` +
    (info === null ? ' <span class="muted">(no run.json: provenance from plan.json)</span>' : ""),
  ]);
  row("recipe", str(info?.recipe?.source) ?? (info === null ? null : "—"));
  row("objective", objective);
  row("plan hash", str(info?.planHash) ?? str(at(plan, "hash")));
  const seed = finite(info?.seed) ?? finite(at(plan, "seed"));
  row("seed", seed === null ? null : String(seed));
  const backend = str(info?.backend?.name) ?? str(at(plan, "backend", "name"));
  const description = str(info?.backend?.description) ?? str(at(plan, "backend", "reason"));
  row("backend", backend === null ? null : backendText(backend, description));
  const v = info?.versions;
  if (v !== undefined && v !== null) {
    row(
      "versions",
      [
        ["giftwrap", v.giftwrap],
        ["Deno", v.deno],
        ["V8", v.v8],
        ["TypeScript", v.typescript],
        ["TensorFlow.js", v.tfjs],
      ].filter(([, x]) => typeof x === "string").map(([k, x]) => `${k} ${x}`).join(" · "),
    );
  }
  row("steps", `${done} / ${total}` + (total > 0 ? ` (${percent(done / total)})` : ""));
  if (info !== null) {
    const cp = info.checkpoint;
    row("last checkpoint", cp ? `step ${cp.step} (${cp.dir})` : "none");
    row("started", time(info.started));
    row("updated", time(info.updated));
    if (Array.isArray(info.resumes) && info.resumes.length > 0) {
      row(
        "resumed",
        info.resumes.map((r) => `from step ${r.fromStep} at ${time(r.at)}`).join("; "),
      );
    }
    const seconds = finite(info.result?.seconds);
    if (seconds !== null) row("run time", duration(seconds));
    if (str(info.host) !== null) row("host", `${info.host} (pid ${info.pid})`);
  }
  const error = str(info?.error);
  const html = [
    `<h1>run ${escapeHtml(name)}</h1>`,
    '<table class="info">',
    ...rows.map(([label, value]) => `<tr><th>${escapeHtml(label)}</th><td>${value}</td></tr>`),
    "</table>",
    ...(error === null ? [] : [`<div class="error">error: ${escapeHtml(error)}</div>`]),
  ].join("\n");
  return { name, html };
}

function mean(xs: readonly number[]): number | null {
  return xs.length === 0 ? null : xs.reduce((a, b) => a + b, 0) / xs.length;
}

/** A change as `+0.123` (or `+12.3 pts` for fractions). */
function change(a: number | null, b: number | null, fraction: boolean): string {
  if (a === null || b === null) return "—";
  const d = b - a;
  const sign = d > 0 ? "+" : d < 0 ? "−" : "±";
  return fraction ? `${sign}${Math.abs(100 * d).toFixed(1)} pts` : `${sign}${fmt(Math.abs(d), 3)}`;
}

/** The start and end of the run: accuracy before → after, and per-step means at both ends. */
export function finalTable(run: ReportData): string {
  const digest = run.metrics;
  const k = Math.max(1, Math.min(10, Math.floor(digest.steps / 2)));
  const rows: Cell[][] = [];

  const accuracy = (label: string, field: "evalAccuracy" | "trainAccuracy", result?: unknown) => {
    const evals = digest.accuracy[field];
    const first = evals.first;
    const last = evals.last === evals.first ? undefined : evals.last;
    const before = first === undefined ? finite(at(result, "accuracyBefore")) : first.value;
    const after = last === undefined ? finite(at(result, "accuracyAfter")) : last.value;
    if (before === null && after === null) return;
    const when = (m: { step: number } | undefined) => m === undefined ? "" : ` (step ${m.step})`;
    rows.push([
      text(label),
      num(percent(before) + when(first)),
      num(percent(after) + when(last)),
      num(change(before, after, true)),
    ]);
  };
  accuracy("eval accuracy", "evalAccuracy", run.info?.result);
  accuracy("train accuracy", "trainAccuracy");

  const means = (label: string, key: string, fraction = false) => {
    const xs = digest.ends(key);
    if (xs.first.length === 0) return;
    const m = Math.min(k, xs.first.length);
    const start = mean(xs.first.slice(0, m));
    const end = mean(xs.last.slice(-m));
    const show = fraction ? percent : (x: number | null) => fmt(x);
    rows.push([text(label), num(show(start)), num(show(end)), num(change(start, end, fraction))]);
  };
  means("reward (total)", "rewardMean");
  const sources = sourceNames(run);
  for (const name of sources) means(`reward: ${name}`, `source:${name}`);
  means("success rate", "successRate", true);
  means("KL to the reference", "kl");
  means("KL to the initial policy", "klInitial");
  means("completion length (tokens)", "completionLength");
  means("truncated", "truncated", true);
  means("groups with all-equal rewards", "zeroStdGroups", true);

  if (rows.length === 0) return '<p class="muted">No metrics yet.</p>';
  const facts: string[] = [];
  const seconds = finite(run.info?.result?.seconds) ?? digest.stepSeconds;
  if (seconds > 0) {
    facts.push(
      run.info?.result ? `${duration(seconds)} in all` : `steps took ${duration(seconds)}`,
    );
  }
  const { sum, count } = digest.tokensPerSecond;
  const speed = count === 0 ? null : sum / count;
  if (speed !== null) facts.push(`${Math.round(speed)} sampled tokens per second`);
  const skipped = digest.skipped.sum;
  if (digest.skipped.logged) {
    facts.push(`${skipped} skipped update${skipped === 1 ? "" : "s"}`);
  }
  return [
    table(["metric", "start", "end", "change"], rows),
    `<p class="muted">Accuracy: the first and the last evaluation. Other rows: means over the ` +
    `first and the last ${k} step${k === 1 ? "" : "s"} logged.${
      facts.length === 0 ? "" : ` ${escapeHtml(facts.join(" · "))}.`
    }</p>`,
  ].join("\n");
}

/** A series of a chart: its name, and its key in the digest (`_digest.ts`). */
type Series = [string, string];

/** The points of each named series, and whether any was downsampled. */
function points(
  digest: MetricsDigest,
  series: readonly Series[],
): { points: Point[]; downsampled: boolean } {
  const out: Point[] = [];
  let downsampled = false;
  for (const [name, key] of series) {
    const { points, seen } = digest.series(key);
    if (points.length < seen) downsampled = true;
    for (const p of points) out.push({ x: p.x, series: name, value: p.value });
  }
  return { points: out, downsampled };
}

/**
 * The reward chart's series: the total, then each source. One source whose mean is the total's at
 * every step (its weight is 1) would draw the same line twice, the total's on top of it: it is
 * one line then, named for both.
 */
function rewardSeries(run: ReportData): Series[] {
  const total: Series = ["total", "rewardMean"];
  const sources = sourceNames(run).map((name): Series => [name, `source:${name}`]);
  const [only] = sources;
  if (sources.length === 1 && run.metrics.sameAsTotal(only![0])) {
    return [[`${only![0]} (= total)`, total[1]]];
  }
  return [total, ...sources];
}

/**
 * What the gradient norm chart shows, and why the norm before clipping may be huge without the
 * run diverging: GIFT divides each group's implicit rewards by their std + ε, and a group whose
 * implicit rewards are all equal (u ≡ 0 where the policy has not moved from the reference) has
 * std ≈ 0, so its gradient is scaled by ~1/ε.
 */
function gradientNote(run: ReportData): string {
  const clip = finite(at(run.plan, "optimizer", "clipGradNorm"));
  const after = clip === null
    ? "scaled down to at most optimizer.clipGradNorm"
    : clip > 0
    ? `scaled down to at most ${fmt(clip)} (optimizer.clipGradNorm)`
    : "the same: clipping is off (optimizer.clipGradNorm 0)";
  const parts = [
    "Before clipping: the global norm of the loss's gradient, as computed. After clipping: the " +
    `norm of the gradient the update used, ${after}. Each is the mean over the step's ` +
    "updates. A large norm before clipping is not divergence: clipping bounds every update.",
  ];
  if (at(run.plan, "objective", "kind") === "gift") {
    const epsilon = finite(at(run.plan, "objective", "options", "stdEpsilon")) ?? 1e-6;
    const power = (x: number) => Number(x.toPrecision(3)).toExponential().replace("e+", "e");
    parts.push(
      "GIFT standardises each group's implicit rewards u as (u − mean) / (std + ε), " +
        `ε = ${power(epsilon)}: a group whose implicit rewards are all equal (u ≡ 0 where the ` +
        "policy has not moved from the reference: at the first step, and at each group's first " +
        "update with the rollout policy as reference) has std ≈ 0, so its gradient is scaled " +
        `by about 1/ε = ${power(1 / epsilon)}. A norm before clipping ` +
        "orders of magnitude above the one after is that scale, not a policy running away.",
    );
  }
  return `<p class="muted note">${escapeHtml(parts.join(" "))}</p>`;
}

/** The charts (the gradient norm's with a note under it); one without any value says so instead. */
export async function plots(run: ReportData): Promise<string> {
  const steps = totalSteps(run);
  type Options = Pick<Chart, "percent" | "yDomain" | "logWhenWide" | "dots" | "integer" | "legend">;
  const downsampled = new Set<string>();
  const chart = (title: string, yTitle: string, series: Series[], options: Options = {}) => {
    const { points: ps, downsampled: fewer } = points(run.metrics, series);
    if (fewer) downsampled.add(title);
    const present = series.map(([name]) => name).filter((n) => ps.some((p) => p.series === n));
    const xDomain = [0, Math.max(1, steps)] as const;
    return { title, yTitle, series: present, points: ps, xDomain, ...options } satisfies Chart;
  };
  const fraction = { percent: true, yDomain: [0, 1] } as const;

  const charts: ({ chart: Chart; note?: string } | string)[] = [
    // The legend even for one line: it says which source the line is.
    { chart: chart("Reward per source", "mean reward", rewardSeries(run), { legend: true }) },
    {
      chart: chart("Accuracy (greedy)", "accuracy", [
        ["eval", "evalAccuracy"],
        ["train", "trainAccuracy"],
      ], { ...fraction, dots: true }),
    },
    {
      chart: chart("KL (k3, per completion token)", "KL", [
        ["to the reference", "kl"],
        ["to the initial policy", "klInitial"],
      ]),
    },
    {
      chart: chart("Completion length", "mean tokens", [
        ["completion length", "completionLength"],
      ]),
    },
    {
      chart: chart("Groups with all-equal rewards (no learning signal)", "fraction of groups", [
        ["all-equal groups", "zeroStdGroups"],
      ], fraction),
    },
    {
      // The legend even for one line: a run from before the clipped norm was logged has only
      // the norm before clipping, and says so.
      chart: chart("Gradient norm", "gradient norm", [
        ["before clipping", "gradNorm"],
        ["after clipping", "gradNormClipped"],
      ], { logWhenWide: true, legend: true }),
      note: gradientNote(run),
    },
  ];
  const skipped = chart("Skipped updates", "updates skipped", [
    ["skipped updates", "skippedUpdates"],
  ], { dots: true, integer: true });
  if (run.metrics.anySkipped) charts.push({ chart: skipped });
  else if (skipped.points.length > 0) charts.push('<p class="muted">Skipped updates: none.</p>');

  const html: string[] = [];
  for (const [i, c] of charts.entries()) {
    if (typeof c === "string") html.push(c);
    else if (c.chart.points.length === 0) {
      html.push(`<p class="muted">${escapeHtml(c.chart.title)}: not measured.</p>`);
    } else {
      html.push(`<figure>\n${await renderChart(c.chart, `plot${i}`)}\n</figure>`);
      if (downsampled.has(c.chart.title)) {
        // A long run's report stays the same size: each line through at most MAX_POINTS points.
        html.push(
          `<p class="muted">Downsampled: each line is drawn through at most ${MAX_POINTS} ` +
            `evenly spaced of its logged points, the first and the last included.</p>`,
        );
      }
      if (c.note !== undefined) html.push(c.note);
    }
  }
  return html.join("\n");
}

function groupTable(g: SampleGroup, sources: readonly string[]): string {
  const completions = Array.isArray(g.completions) ? g.completions : [];
  const names = [...sources];
  for (const c of completions) {
    if (typeof c?.rewards !== "object" || c.rewards === null) continue;
    for (const n of Object.keys(c.rewards)) if (!names.includes(n)) names.push(n);
  }
  const rows = completions.map((c, i): Cell[] => [
    num(String(i + 1)),
    { html: `<div>${escapeHtml(str(c?.text) ?? "")}</div>`, class: "text" },
    num(fmt(finite(c?.reward), 3)),
    ...names.map((n) => num(fmt(finite(at(c?.rewards, n)), 3))),
    num(fmt(finite(c?.advantage), 3)),
    num(fmt(finite(c?.length))),
    text(c?.truncated === true ? "yes" : c?.truncated === false ? "no" : "—"),
  ]);
  const title = `<h4>step ${escapeHtml(String(g.step))} · group ${
    escapeHtml(String(g.group))
  }</h4>`;
  const problem = `<p>prompt <code>${escapeHtml(str(g.prompt) ?? "")}</code> · answer <code>${
    escapeHtml(str(g.answer) ?? "")
  }</code></p>`;
  return [
    title,
    problem,
    table(
      [
        "#",
        "completion",
        "reward",
        ...names.map((n) => `reward: ${n}`),
        "advantage",
        "length",
        "truncated",
      ],
      rows,
      "samples",
    ),
  ].join("\n");
}

/** The groups logged at the first, the middle and the last step of `samples.jsonl`. */
export function samples(run: ReportData): string {
  const picked = run.sampled.steps;
  if (picked.length === 0) return '<p class="muted">No sampled groups logged (samples.jsonl).</p>';
  const sources = sourceNames(run);
  const html: string[] = [];
  for (const [label, step] of picked) {
    html.push(`<h3>${label[0]!.toUpperCase()}${label.slice(1)}: step ${step}</h3>`);
    const groups = run.sampled.groups.filter((g) => g.step === step);
    groups.sort((a, b) => (finite(a.group) ?? 0) - (finite(b.group) ?? 0));
    for (const g of groups) html.push(groupTable(g, sources));
  }
  return html.join("\n");
}
