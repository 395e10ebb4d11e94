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
 * A file is untrusted: it is read as bytes, in pieces, and held to bounds before any of it
 * becomes a string. A file larger than `maxBytes` (256 MiB unless the recipe says) is refused
 * before it is read; a line longer than {@linkcode MAX_LINE_BYTES} (1 MiB) is refused without
 * being held whole; a line that is not UTF-8 is refused at its first invalid byte
 * (`data.jsonl:4: invalid UTF-8 at byte 18 of the line (0xFF)`), never read as U+FFFD.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { shortHash } from "../../dsl/inputs.ts";
import type { Rng } from "../engine/random.ts";
import type { Problem, Splits } from "./types.ts";

/**
 * The longest line `loadJsonl()` reads, in bytes (1 MiB): room for a prompt of the schema's
 * largest `maxPromptTokens` (131,072) written out in JSON, an answer and other fields, while a
 * hostile line is refused before it is held.
 */
export const MAX_LINE_BYTES = 1_048_576;

/** The largest file `loadJsonl()` reads unless told otherwise (the recipe's `data.maxBytes`). */
export const DEFAULT_MAX_BYTES = 268_435_456;

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
  /**
   * The largest file read, in bytes; a larger one is refused before it is read.
   *
   * @default {DEFAULT_MAX_BYTES} (256 MiB)
   */
  maxBytes?: number | undefined;
  /**
   * The longest line read, in bytes; a longer one is refused without being held whole.
   *
   * @default {MAX_LINE_BYTES} (1 MiB)
   */
  maxLineBytes?: number | undefined;
  /**
   * The SHA-256 (hex) the plan recorded of the file: other content is refused, so that a run
   * trains on the file its plan hash names.
   *
   * @default no check
   */
  sha256?: string | undefined;
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
  const template = checkOptions(path, options);
  const problems: NumberedProblem[] = [];
  const sha256 = await readLines(path, options, (text, line) => {
    if (text.trim() === "") return;
    problems.push({ problem: parseLine(text, path, line, options, template), line });
  });
  if (options.sha256 !== undefined && sha256 !== options.sha256) {
    const reason = `changed since the plan was made (sha256 ${shortHash(options.sha256)} then, ` +
      `${shortHash(sha256)} now)`;
    throw new DataError(path, undefined, reason);
  }
  return split(problems, path, options, rng);
}

/**
 * Reads the file at `path` in pieces, calling `each` with every line's text and its 1-based
 * number (a trailing `\r` and a leading byte-order mark removed), and returns the file's
 * SHA-256. Each line is held to `maxLineBytes` and decoded as strict UTF-8; the file to
 * `maxBytes`.
 */
async function readLines(
  path: string,
  options: JsonlLoadOptions,
  each: (text: string, line: number) => void,
): Promise<string> {
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_BYTES;
  const maxLine = options.maxLineBytes ?? MAX_LINE_BYTES;
  const tooLarge = (size: number | string) =>
    new DataError(
      path,
      undefined,
      `expected at most ${bytes(maxBytes)} (data.maxBytes), got ${size}`,
    );
  let file: Deno.FsFile;
  try {
    // Not a FIFO or a device: opening one could wait forever, or read forever.
    const info = await Deno.stat(path);
    if (!info.isFile) {
      const what = info.isDirectory ? "is a directory" : "not a regular file";
      throw new DataError(path, undefined, `cannot read: ${what}`);
    }
    if (info.size > maxBytes) throw tooLarge(info.size.toLocaleString("en-US"));
    file = await Deno.open(path);
  } catch (error) {
    if (error instanceof DataError) throw error;
    throw new DataError(path, undefined, `cannot read: ${readFailure(error)}`);
  }
  // ignoreBOM keeps a U+FEFF inside the file as it is; only the first line's is dropped.
  const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
  const decode = (piece: Uint8Array, line: number) => {
    const content = piece.length > 0 && piece[piece.length - 1] === 13
      ? piece.subarray(0, -1)
      : piece;
    let text: string;
    try {
      text = decoder.decode(content);
    } catch {
      const at = firstInvalidUtf8(content);
      if (at < 0) throw new DataError(path, line, "invalid UTF-8");
      const byte = content[at]!.toString(16).toUpperCase().padStart(2, "0");
      throw new DataError(path, line, `invalid UTF-8 at byte ${at + 1} of the line (0x${byte})`);
    }
    each(line === 1 ? text.replace(/^\uFEFF/, "") : text, line);
  };
  try {
    const hash = createHash("sha256");
    const buffer = new Uint8Array(1 << 20);
    let pieces: Uint8Array[] = [];
    let held = 0; // bytes of the current line in `pieces`
    let line = 1;
    let total = 0;
    for (;;) {
      const n = await file.read(buffer);
      if (n === null) break;
      total += n;
      // The file grew since it was measured.
      if (total > maxBytes) throw tooLarge("more");
      const chunk = buffer.subarray(0, n);
      hash.update(chunk);
      for (let start = 0; start < n;) {
        const newline = chunk.indexOf(10, start);
        const end = newline === -1 ? n : newline;
        if (held + end - start > maxLine) {
          throw new DataError(
            path,
            line,
            `expected a line of at most ${bytes(maxLine)}, got a longer one`,
          );
        }
        if (newline === -1) {
          pieces.push(chunk.slice(start, end));
          held += end - start;
          break;
        }
        decode(
          pieces.length === 0
            ? chunk.subarray(start, end)
            : join([...pieces, chunk.subarray(start, end)]),
          line,
        );
        pieces = [];
        held = 0;
        line++;
        start = newline + 1;
      }
    }
    if (held > 0) decode(join(pieces), line);
    return hash.digest("hex");
  } catch (error) {
    if (error instanceof DataError) throw error;
    throw new DataError(path, undefined, `cannot read: ${readFailure(error)}`);
  } finally {
    file.close();
  }
}

/** "1 byte", "1,048,576 bytes". */
function bytes(n: number): string {
  return `${n.toLocaleString("en-US")} byte${n === 1 ? "" : "s"}`;
}

function join(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, p) => sum + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/**
 * The 0-based offset of the first byte of `bytes` that does not begin a well-formed UTF-8
 * sequence (RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF); -1 when all do.
 */
function firstInvalidUtf8(bytes: Uint8Array): number {
  for (let i = 0; i < bytes.length;) {
    const lead = bytes[i]!;
    if (lead < 0x80) {
      i++;
      continue;
    }
    // The continuation bytes a lead byte takes, and the range of the first of them.
    let more: number;
    let low = 0x80;
    let high = 0xbf;
    if (lead >= 0xc2 && lead <= 0xdf) more = 1;
    else if (lead >= 0xe0 && lead <= 0xef) {
      more = 2;
      if (lead === 0xe0) low = 0xa0; // overlong
      if (lead === 0xed) high = 0x9f; // surrogates
    } else if (lead >= 0xf0 && lead <= 0xf4) {
      more = 3;
      if (lead === 0xf0) low = 0x90; // overlong
      if (lead === 0xf4) high = 0x8f; // above U+10FFFF
    } else return i;
    for (let k = 1; k <= more; k++) {
      const next = bytes[i + k];
      if (next === undefined || next < (k === 1 ? low : 0x80) || next > (k === 1 ? high : 0xbf)) {
        return i;
      }
    }
    i += more + 1;
  }
  return -1;
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
  const template = checkOptions(path, options);
  // One problem per non-blank line, in file order.
  const problems: NumberedProblem[] = [];
  const lines = text.replace(/^\uFEFF/, "").split(/\r?\n/);
  for (const [index, line] of lines.entries()) {
    if (line.trim() === "") continue;
    problems.push({
      problem: parseLine(line, path, index + 1, options, template),
      line: index + 1,
    });
  }
  return split(problems, path, options, rng);
}

/** The template, once `options` are checked. */
function checkOptions(path: string, options: JsonlLoadOptions): string {
  const template = options.template ?? "{prompt}";
  if (!template.includes("{prompt}")) {
    throw new RangeError(
      `Cannot load ${path} as 'template' must contain '{prompt}': current value is ${
        JSON.stringify(template.length > 80 ? template.slice(0, 80) + "…" : template)
      }`,
    );
  }
  if (!Number.isInteger(options.eval) || options.eval < 0) {
    throw new RangeError(
      `Cannot load ${path} as 'eval' must be an integer >= 0: current value is ${options.eval}`,
    );
  }
  return template;
}

/**
 * The problems of a file, in file order, shuffled with `rng`: the first `options.eval` are the
 * eval split, the rest train (less any row whose prompt is also in eval).
 */
function split(
  problems: NumberedProblem[],
  path: string,
  options: JsonlLoadOptions,
  rng: Rng,
): NumberedSplits {
  if (problems.length === 0) throw new DataError(path, undefined, "empty file (no problems)");
  const rows = count(problems.length, "row");
  if (options.eval >= problems.length) {
    const reason = `${rows} but eval holds out ${options.eval}, leaving no train problems`;
    throw new DataError(path, undefined, reason);
  }

  // Shuffle, hold out the first `eval`, and keep train free of the eval prompts.
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
    // V8 quotes a few characters around the error; held to a short excerpt all the same.
    const message = (error as Error).message.replace(/ \(line \d+ column \d+\)$/, "");
    const detail = message.length > 120 ? `${message.slice(0, 120)}…` : message;
    throw new DataError(path, lineNumber, `invalid JSON (${detail})`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new DataError(path, lineNumber, `a line must be a JSON object, got ${describe(value)}`);
  }
  const row = value as JsonlRow;
  // A conversation in the OpenAI shape may stand in for the prompt: the prompt field holding a
  // list of messages, or a `messages` field when the row has no field of the default name.
  const name = !Object.hasOwn(row, options.prompt) && options.prompt === "prompt" &&
      Object.hasOwn(row, "messages")
    ? "messages"
    : options.prompt;
  const prompt = field(row, name, path, lineNumber);
  if (Array.isArray(prompt)) {
    const messages = prompt.map((m, i) => {
      const at = `field '${name}'[${i}]`;
      if (typeof m !== "object" || m === null || Array.isArray(m)) {
        throw new DataError(path, lineNumber, `${at} is not a message object (got ${typeName(m)})`);
      }
      const { role, content } = m as Record<string, unknown>;
      if (typeof role !== "string" || typeof content !== "string") {
        throw new DataError(
          path,
          lineNumber,
          `${at} must have a string 'role' and 'content' (got ${typeName(role)} and ${
            typeName(content)
          })`,
        );
      }
      return { role, content };
    });
    const last = messages.findLast((m) => m.role === "user");
    if (last === undefined) {
      throw new DataError(path, lineNumber, `field '${name}' has no message of role 'user'`);
    }
    return {
      prompt: last.content,
      messages,
      answer: answerOf(row, options, path, lineNumber),
      row,
    };
  }
  if (typeof prompt !== "string") {
    throw new DataError(
      path,
      lineNumber,
      `field '${name}' is not a string or a list of messages (got ${typeName(prompt)})`,
    );
  }
  const answer = answerOf(row, options, path, lineNumber);
  // split/join rather than replace(): a prompt containing "$&" must not be read as a pattern.
  return { prompt: template.split("{prompt}").join(prompt), answer, row };
}

/** The row's answer field as text: a string or a number, else a {@linkcode DataError}. */
function answerOf(
  row: JsonlRow,
  options: JsonlLoadOptions,
  path: string,
  lineNumber: number,
): string {
  const answer = field(row, options.answer, path, lineNumber);
  if (typeof answer !== "string" && typeof answer !== "number") {
    throw new DataError(
      path,
      lineNumber,
      `field '${options.answer}' is not a string or number (got ${typeName(answer)})`,
    );
  }
  return String(answer);
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
