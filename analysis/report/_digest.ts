/**
 * What the report reads from a run's logs, kept bounded however long the run: `metrics.jsonl` is
 * read a line at a time into a {@linkcode MetricsDigest} (the sums, the first and last values the
 * result table needs, and each chart's series downsampled to at most {@linkcode MAX_POINTS}
 * points), and `samples.jsonl` is parsed only at the steps the page shows. A report rebuilt at
 * every checkpoint of a long run would otherwise parse, hold and chart the whole history each
 * time, and the process's memory grew with it.
 *
 * @module
 */

import type { MetricsLine, SampleGroup } from "./_types.ts";

/** The most points a chart's line is drawn through; more are downsampled. */
export const MAX_POINTS = 2000;

/** Step lines whose first and last values the result table averages: at most this many each. */
const ENDS = 10;

/** One point of a series: its step and value. */
export interface SeriesPoint {
  x: number;
  value: number;
}

/**
 * A series downsampled as it arrives: every `stride`-th point is kept, the stride doubling each
 * time more than twice `max` are kept, so memory stays under 2·max points; at the end an even
 * stride over those picks at most `max`, the first and the last point included.
 *
 * @example
 * ```ts
 * const d = new Downsample(3);
 * for (let i = 0; i < 10; i++) d.push(i, i * i);
 * d.points(); // [{ x: 0, value: 0 }, { x: 6, value: 36 }, { x: 9, value: 81 }]
 * ```
 */
export class Downsample {
  #kept: SeriesPoint[] = [];
  #stride = 1;
  #seen = 0;
  #last: SeriesPoint | null = null;

  constructor(readonly max: number = MAX_POINTS) {}

  /** Points pushed so far. */
  get seen(): number {
    return this.#seen;
  }

  push(x: number, value: number): void {
    const point = { x, value };
    if (this.#seen % this.#stride === 0) {
      this.#kept.push(point);
      if (this.#kept.length > 2 * this.max) {
        this.#kept = this.#kept.filter((_, i) => i % 2 === 0);
        this.#stride *= 2;
      }
    }
    this.#last = point;
    this.#seen++;
  }

  /** At most `max` points, in order, the first and the last pushed among them. */
  points(): SeriesPoint[] {
    const all = [...this.#kept];
    if (this.#last !== null && all.at(-1) !== this.#last) all.push(this.#last);
    if (all.length <= this.max) return all;
    const n = all.length;
    if (this.max === 1) return [all[n - 1]!];
    return Array.from(
      { length: this.max },
      (_, i) => all[Math.round(i * (n - 1) / (this.max - 1))]!,
    );
  }
}

/** `x` when it is a finite number, else null. */
export function finite(x: unknown): number | null {
  return typeof x === "number" && Number.isFinite(x) ? x : null;
}

/** A reward source's mean on a line. */
export function sourceMean(m: MetricsLine, name: string): number | null {
  const r = m.rewards as Record<string, unknown> | undefined;
  const s = typeof r === "object" && r !== null ? r[name] : undefined;
  return typeof s === "object" && s !== null ? finite((s as { mean?: unknown }).mean) : null;
}

/** The fields the result table averages over the first and last step lines. */
export const MEAN_FIELDS = [
  "rewardMean",
  "successRate",
  "kl",
  "klInitial",
  "completionLength",
  "truncated",
  "zeroStdGroups",
] as const;

/** The fields drawn as chart series, on every line (step 0's evaluation included). */
export const SERIES_FIELDS = [
  "rewardMean",
  "evalAccuracy",
  "trainAccuracy",
  "kl",
  "klInitial",
  "completionLength",
  "zeroStdGroups",
  "gradNorm",
  "gradNormClipped",
  "skippedUpdates",
] as const;

/** A line's step and value of an accuracy field. */
export interface Evaluated {
  step: number;
  value: number;
}

/** The first `ENDS` values of a quantity over the step lines, and the last `ENDS`. */
class Ends {
  first: number[] = [];
  last: number[] = [];
  push(x: number): void {
    if (this.first.length < ENDS) this.first.push(x);
    this.last.push(x);
    if (this.last.length > ENDS) this.last.shift();
  }
}

/**
 * Everything the report needs of `metrics.jsonl`, gathered one line at a time in bounded memory.
 * A key is a field of {@linkcode MEAN_FIELDS} or {@linkcode SERIES_FIELDS}, or `source:<name>`
 * for a reward source's mean.
 */
export class MetricsDigest {
  /** Lines read, step 0's evaluation included. */
  lines = 0;
  /** The largest step of any line (0 with none). */
  maxStep = 0;
  /** Lines of a step (with a reward mean). */
  steps = 0;
  /** The last step line's step, null with none. */
  lastStep: number | null = null;
  /** Reward sources in the order the lines first name them. */
  sources: string[] = [];
  /** Sum of `stepSeconds` over the step lines. */
  stepSeconds = 0;
  /** Sum and count of `tokensPerSecond` over the step lines. */
  tokensPerSecond = { sum: 0, count: 0 };
  /** Sum of `skippedUpdates` over the step lines, and whether any logged it. */
  skipped = { sum: 0, logged: false };
  /** Whether any line logged more than zero skipped updates. */
  anySkipped = false;
  /** The first and the last line with each accuracy. */
  accuracy: Record<"evalAccuracy" | "trainAccuracy", { first?: Evaluated; last?: Evaluated }> = {
    evalAccuracy: {},
    trainAccuracy: {},
  };
  #ends = new Map<string, Ends>();
  #series = new Map<string, Downsample>();
  /** Per source: its mean equals the total on every line that has either (and one has). */
  #same = new Map<string, { same: boolean; any: boolean }>();
  #totalSeen = false;

  constructor(readonly maxPoints: number = MAX_POINTS) {}

  /** Adds the next line of `metrics.jsonl`. */
  add(m: MetricsLine): void {
    this.lines++;
    this.maxStep = Math.max(this.maxStep, m.step);
    const total = finite(m.rewardMean);
    const rewards = typeof m.rewards === "object" && m.rewards !== null ? m.rewards : {};
    for (const name of Object.keys(rewards)) {
      if (this.sources.includes(name)) continue;
      this.sources.push(name);
      // Earlier lines with a total and no mean of this source already differ.
      this.#same.set(name, { same: !this.#totalSeen, any: false });
    }
    for (const name of this.sources) {
      const state = this.#same.get(name)!;
      const y = sourceMean(m, name);
      if (total === null && y === null) continue;
      if (
        total === null || y === null || Math.abs(total - y) > 1e-9 * Math.max(1, Math.abs(total))
      ) {
        state.same = false;
      } else state.any = true;
    }
    if (total !== null) this.#totalSeen = true;

    for (const field of SERIES_FIELDS) this.#point(field, m.step, finite(m[field]));
    for (const name of this.sources) this.#point(`source:${name}`, m.step, sourceMean(m, name));
    if ((finite(m.skippedUpdates) ?? 0) > 0) this.anySkipped = true;
    for (const field of ["evalAccuracy", "trainAccuracy"] as const) {
      const value = finite(m[field]);
      if (value === null) continue;
      // One object for a single evaluation: the table tells first and last apart by identity.
      const point = { step: m.step, value };
      const seen = this.accuracy[field];
      seen.first ??= point;
      seen.last = point;
    }

    if (total === null) return; // step 0's evaluation: no step
    this.steps++;
    this.lastStep = m.step;
    for (const field of MEAN_FIELDS) this.#end(field, finite(m[field]));
    for (const name of this.sources) this.#end(`source:${name}`, sourceMean(m, name));
    this.stepSeconds += finite(m.stepSeconds) ?? 0;
    const speed = finite(m.tokensPerSecond);
    if (speed !== null) {
      this.tokensPerSecond.sum += speed;
      this.tokensPerSecond.count++;
    }
    const skipped = finite(m.skippedUpdates);
    if (skipped !== null) {
      this.skipped.sum += skipped;
      this.skipped.logged = true;
    }
  }

  /** The first and last (up to 10) values of `key` over the step lines that have one. */
  ends(key: string): { first: number[]; last: number[] } {
    const e = this.#ends.get(key);
    return e === undefined ? { first: [], last: [] } : { first: e.first, last: e.last };
  }

  /** The points of `key`, at most `maxPoints`, and how many lines had one. */
  series(key: string): { points: SeriesPoint[]; seen: number } {
    const d = this.#series.get(key);
    return d === undefined ? { points: [], seen: 0 } : { points: d.points(), seen: d.seen };
  }

  /** Whether source `name`'s mean is the total on every line with either, and on one at least. */
  sameAsTotal(name: string): boolean {
    const s = this.#same.get(name);
    return s !== undefined && s.same && s.any;
  }

  #point(key: string, step: number, value: number | null): void {
    if (value === null) return;
    let d = this.#series.get(key);
    if (d === undefined) this.#series.set(key, d = new Downsample(this.maxPoints));
    d.push(step, value);
  }

  #end(key: string, value: number | null): void {
    if (value === null) return;
    let e = this.#ends.get(key);
    if (e === undefined) this.#ends.set(key, e = new Ends());
    e.push(value);
  }
}

/** One line of a JSON Lines file as read: its text, its 1-based number, and whether it is last. */
export interface RawLine {
  text: string;
  number: number;
  /** The last line that is not blank: a writer interrupted mid-line may have left it partial. */
  last: boolean;
}

/**
 * The non-blank lines of the file at `path`, streamed (the file is never held whole); nothing
 * when it does not exist.
 */
export async function* rawLines(path: string): AsyncGenerator<RawLine> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return;
    throw e;
  }
  let pending: { text: string; number: number } | null = null;
  let rest = "";
  let number = 0;
  const decoder = new TextDecoder();
  // The stream closes the file when it ends, and when a reader stops early (its cancel).
  for await (const chunk of file.readable) {
    rest += decoder.decode(chunk, { stream: true });
    let start = 0;
    let newline: number;
    while ((newline = rest.indexOf("\n", start)) >= 0) {
      const text = rest.slice(start, newline);
      start = newline + 1;
      number++;
      if (text.trim() === "") continue;
      if (pending !== null) yield { ...pending, last: false };
      pending = { text, number };
    }
    rest = rest.slice(start);
  }
  rest += decoder.decode();
  number++;
  if (rest.trim() !== "") {
    if (pending !== null) yield { ...pending, last: false };
    pending = { text: rest, number };
  }
  if (pending !== null) yield { ...pending, last: true };
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

/**
 * A line of a `.jsonl` log as an object with a numeric `step`, or null for a last line that is
 * not one (the writer was interrupted in the middle of it); throws for any other line that is not.
 */
export function parseLine(path: string, line: RawLine): Record<string, unknown> | null {
  let value: unknown;
  try {
    value = JSON.parse(line.text);
  } catch {
    value = undefined;
  }
  if (isObject(value) && typeof value.step === "number" && Number.isFinite(value.step)) {
    return value;
  }
  if (line.last) return null;
  const shown = line.text.length > 60 ? `${line.text.slice(0, 60)}…` : line.text;
  throw new Error(
    `Cannot read ${path} as line ${line.number} is not a JSON object with a numeric 'step': ` +
      `current value is ${shown}`,
  );
}

/** `metrics.jsonl` of `dir` read into a digest, a line at a time. */
export async function digestMetrics(path: string): Promise<MetricsDigest> {
  const digest = new MetricsDigest();
  for await (const line of rawLines(path)) {
    const m = parseLine(path, line);
    if (m !== null) digest.add(m as MetricsLine);
  }
  return digest;
}

/** A line as this runtime writes it: `{"step":N,…"completions":[…`, read without parsing it. */
const WRITTEN = /^\{"step":(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?),/;

/**
 * The step of a line of `samples.jsonl` that holds a group (with `completions`), or null for a
 * line without one. A line as the runtime writes it is read from its first characters; any other
 * (and the last, which may be partial) is parsed.
 */
function sampleStep(path: string, line: RawLine): number | null {
  const written = line.last ? null : WRITTEN.exec(line.text);
  if (written !== null) return line.text.includes('"completions":[') ? Number(written[1]) : null;
  const value = parseLine(path, line);
  return value !== null && Array.isArray(value.completions) ? value.step as number : null;
}

/** The first, middle and last of the steps that logged groups, with their labels. */
export function pickSteps(logged: Iterable<number>): [string, number][] {
  const steps = [...new Set(logged)].sort((a, b) => a - b);
  if (steps.length === 0) return [];
  const picked: [string, number][] = [["start", steps[0]!]];
  if (steps.length >= 3) picked.push(["middle", steps[Math.floor((steps.length - 1) / 2)]!]);
  if (steps.length >= 2) picked.push(["end", steps[steps.length - 1]!]);
  return picked;
}

/** The groups logged at the steps the report shows, and those steps. */
export interface Sampled {
  steps: [string, number][];
  /** The groups of those steps, in file order. */
  groups: SampleGroup[];
}

/**
 * The groups of `samples.jsonl` at its first, middle and last logged steps: one pass reads each
 * line's step from its first characters, a second parses the lines of those steps only.
 */
export async function readSampled(path: string): Promise<Sampled> {
  const logged = new Set<number>();
  for await (const line of rawLines(path)) {
    const step = sampleStep(path, line);
    if (step !== null) logged.add(step);
  }
  const steps = pickSteps(logged);
  const shown = new Set(steps.map(([, s]) => s));
  const groups: SampleGroup[] = [];
  for await (const line of rawLines(path)) {
    const step = sampleStep(path, line);
    if (step === null || !shown.has(step)) continue;
    const value = parseLine(path, line);
    if (value !== null && Array.isArray(value.completions)) {
      groups.push(value as unknown as SampleGroup);
    }
  }
  return { steps, groups };
}
