/**
 * Problems read from a JSON Lines file: one JSON object per non-blank line, two of whose fields
 * are the prompt and the reference answer. The prompt may be wrapped in a template
 * (`"Q: {prompt}\nA:"`); the answer is kept as written (a GSM8K worked solution ending in
 * `#### 42` stays whole, since the numeric verifier reads the `#### n`; {@linkcode finalAnswer}
 * gives the short form). The rows are shuffled with the recipe's seed and the first `eval` of them
 * held out; a train row whose prompt is also an eval row's is dropped, so the splits never share
 * a problem even when the file repeats one.
 *
 * Every error is one line naming the file and, where there is one, the line:
 * `data/gsm8k.jsonl:7: missing field 'question'`.
 *
 * @module
 */

import type { Rng } from "../engine/random.ts";
import type { Problem, Splits } from "./types.ts";

/** The row of a JSON Lines problem: the line's object as parsed. */
export type JsonlRow = Record<string, unknown>;

/** How a JSON Lines file maps to problems. */
export interface JsonlLoadOptions {
  /** The field holding the prompt (a string). */
  prompt: string;
  /** The field holding the reference answer (a string, or a number written with `String`). */
  answer: string;
  /**
   * A template containing `{prompt}`, which is replaced by the prompt field (every occurrence).
   *
   * @default {"{prompt}"} (the field itself)
   */
  template?: string | undefined;
  /** Rows held out for evaluation, after shuffling; at least one row must be left to train. */
  eval: number;
}

/**
 * A problem with a data file: a one-line message `path:line: reason` (or `path: reason` when it
 * concerns the whole file), with the parts kept as data.
 *
 * @example
 * ```ts
 * try {
 *   parseJsonl('{"q": 1}\n', "data/x.jsonl", { prompt: "q", answer: "a", eval: 0 }, new Rng(1));
 * } catch (e) {
 *   // "data/x.jsonl:1: field 'q' is not a string (got number)"
 *   if (e instanceof DataError) e.message;
 * }
 * ```
 */
export class DataError extends Error {
  /** The file, as given. */
  readonly path: string;
  /** The 1-based line, counting blank lines; undefined when the error concerns the whole file. */
  readonly line: number | undefined;
  /** What is wrong, without the location. */
  readonly reason: string;

  /** An error about `path` (and `line`, when given). */
  constructor(path: string, line: number | undefined, reason: string) {
    super(line === undefined ? `${path}: ${reason}` : `${path}:${line}: ${reason}`);
    this.name = "DataError";
    this.path = path;
    this.line = line;
    this.reason = reason;
  }
}

/**
 * The short form of an answer: the text after the last `####` (GSM8K's final-answer marker),
 * trimmed, or the whole text when there is no marker.
 *
 * @example
 * ```ts
 * finalAnswer("3 + 4 = 7 apples\n#### 7"); // "7"
 * finalAnswer("42"); // "42"
 * ```
 */
export function finalAnswer(text: string): string {
  const at = text.lastIndexOf("####");
  return at === -1 ? text : text.slice(at + 4).trim();
}

/**
 * Reads the JSON Lines file at `path` and splits its problems with `rng` (see
 * {@linkcode parseJsonl}). A file that cannot be read is a {@linkcode DataError}
 * (`data/x.jsonl: cannot read: not found`).
 *
 * @example
 * ```ts
 * const { train, eval: held } = await loadJsonl(
 *   "data/gsm8k.jsonl",
 *   { prompt: "question", answer: "answer", template: "Q: {prompt}\nA:", eval: 200 },
 *   new Rng(1),
 * );
 * finalAnswer(held[0]!.answer); // "72" (for some seed)
 * ```
 */
export async function loadJsonl(
  path: string,
  options: JsonlLoadOptions,
  rng: Rng,
): Promise<Splits<JsonlRow>> {
  return withoutLines(await loadJsonlLines(path, options, rng));
}

/**
 * {@linkcode loadJsonl} with each problem's line in the file, for messages that name it.
 *
 * @example
 * ```ts
 * const options = { prompt: "q", answer: "a", eval: 0 };
 * const { train } = await loadJsonlLines("data/x.jsonl", options, new Rng(1));
 * train[0]!.line; // 3 (for some seed)
 * ```
 */
export async function loadJsonlLines(
  path: string,
  options: JsonlLoadOptions,
  rng: Rng,
): Promise<NumberedSplits> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    throw new DataError(path, undefined, `cannot read: ${readFailure(error)}`);
  }
  return parseJsonlLines(text, path, options, rng);
}

/** A problem and the 1-based line it came from (blank lines counted). */
export interface NumberedProblem {
  problem: Problem<JsonlRow>;
  line: number;
}

/** The train and eval problems of a file, each with its line. */
export interface NumberedSplits {
  train: NumberedProblem[];
  eval: NumberedProblem[];
}

function withoutLines(splits: NumberedSplits): Splits<JsonlRow> {
  return {
    eval: splits.eval.map((p) => p.problem),
    train: splits.train.map((p) => p.problem),
  };
}

/**
 * The problems in `text`, the contents of the JSON Lines file `path` (used only in messages),
 * shuffled with `rng`: the first `options.eval` are the eval split, the rest train (less any row
 * whose prompt is also in eval). Blank lines are skipped; line numbers still count them.
 *
 * @example
 * ```ts
 * const text = '{"q": "1+1", "a": 2}\n{"q": "2+2", "a": 4}\n{"q": "3+3", "a": 6}\n';
 * const splits = parseJsonl(text, "sums.jsonl", { prompt: "q", answer: "a", eval: 1 }, new Rng(1));
 * splits.eval; // [{ prompt: "2+2", answer: "4", row: { q: "2+2", a: 4 } }] (for some seed)
 * splits.train.length; // 2
 * ```
 */
export function parseJsonl(
  text: string,
  path: string,
  options: JsonlLoadOptions,
  rng: Rng,
): Splits<JsonlRow> {
  return withoutLines(parseJsonlLines(text, path, options, rng));
}

/**
 * {@linkcode parseJsonl} with each problem's line in the file; the shuffle and the splits are the
 * same.
 *
 * @example
 * ```ts
 * const text = '{"q": "1+1", "a": 2}\n\n{"q": "2+2", "a": 4}\n';
 * const options = { prompt: "q", answer: "a", eval: 0 };
 * const { train } = parseJsonlLines(text, "sums.jsonl", options, new Rng(1));
 * train.map((p) => p.line).sort(); // [1, 3]
 * ```
 */
export function parseJsonlLines(
  text: string,
  path: string,
  options: JsonlLoadOptions,
  rng: Rng,
): NumberedSplits {
  const template = options.template ?? "{prompt}";
  if (!template.includes("{prompt}")) {
    throw new RangeError(
      `Cannot load ${path} as 'template' must contain '{prompt}': current value is ${
        JSON.stringify(template)
      }`,
    );
  }
  if (!Number.isInteger(options.eval) || options.eval < 0) {
    throw new RangeError(
      `Cannot load ${path} as 'eval' must be an integer >= 0: current value is ${options.eval}`,
    );
  }

  // 1) One problem per non-blank line, in file order.
  const problems: NumberedProblem[] = [];
  const lines = text.replace(/^\uFEFF/, "").split(/\r?\n/);
  for (const [index, line] of lines.entries()) {
    if (line.trim() === "") continue;
    problems.push({
      problem: parseLine(line, path, index + 1, options, template),
      line: index + 1,
    });
  }
  if (problems.length === 0) throw new DataError(path, undefined, "empty file (no problems)");
  const rows = count(problems.length, "row");
  if (options.eval >= problems.length) {
    const reason = `${rows} but eval holds out ${options.eval}, leaving no train problems`;
    throw new DataError(path, undefined, reason);
  }

  // 2) Shuffle, hold out the first `eval`, and keep train free of the eval prompts.
  rng.shuffle(problems);
  const held = problems.slice(0, options.eval);
  const heldPrompts = new Set(held.map((p) => p.problem.prompt));
  const train = problems.slice(options.eval).filter((p) => !heldPrompts.has(p.problem.prompt));
  if (train.length === 0) {
    const reason = `${rows} but the ${options.eval} held out for eval repeat every other prompt, ` +
      "leaving no train problems";
    throw new DataError(path, undefined, reason);
  }
  return { eval: held, train };
}

/** The problem on one non-blank line (`lineNumber` is 1-based), or a {@linkcode DataError}. */
function parseLine(
  line: string,
  path: string,
  lineNumber: number,
  options: JsonlLoadOptions,
  template: string,
): Problem<JsonlRow> {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch (error) {
    // V8 locates the error within the line ("(line 1 column 8)"), which reads like a file line.
    const detail = (error as Error).message.replace(/ \(line \d+ column \d+\)$/, "");
    throw new DataError(path, lineNumber, `invalid JSON (${detail})`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new DataError(path, lineNumber, `a line must be a JSON object, got ${describe(value)}`);
  }
  const row = value as JsonlRow;
  const prompt = field(row, options.prompt, path, lineNumber);
  if (typeof prompt !== "string") {
    throw new DataError(
      path,
      lineNumber,
      `field '${options.prompt}' is not a string (got ${typeName(prompt)})`,
    );
  }
  const answer = field(row, options.answer, path, lineNumber);
  if (typeof answer !== "string" && typeof answer !== "number") {
    throw new DataError(
      path,
      lineNumber,
      `field '${options.answer}' is not a string or number (got ${typeName(answer)})`,
    );
  }
  // split/join rather than replace(): a prompt containing "$&" must not be read as a pattern.
  return { prompt: template.split("{prompt}").join(prompt), answer: String(answer), row };
}

/** The value of `name` in `row`, or a {@linkcode DataError} when the row lacks it. */
function field(row: JsonlRow, name: string, path: string, lineNumber: number): unknown {
  if (!Object.hasOwn(row, name)) throw new DataError(path, lineNumber, `missing field '${name}'`);
  return row[name];
}

/** A JSON value's type as a noun: "null", "array", "object", "string", "number", "boolean". */
function typeName(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  return typeof value;
}

/** A JSON value's type with its article: "an array", "a string", "null". */
function describe(value: unknown): string {
  const name = typeName(value);
  if (name === "null") return "null";
  return /^[aeiou]/.test(name) ? `an ${name}` : `a ${name}`;
}

/** "1 row", "10 rows". */
function count(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? "" : "s"}`;
}

/** Why a read failed, in a few words. */
function readFailure(error: unknown): string {
  if (error instanceof Deno.errors.NotFound) return "not found";
  if (error instanceof Deno.errors.PermissionDenied) return "permission denied";
  if (error instanceof Deno.errors.IsADirectory) return "is a directory";
  return error instanceof Error ? error.message : String(error);
}
