/**
 * The built-in verifiers and the length penalty, as functions of one sample. They are pure and
 * synchronous; `mod.ts` turns them into batch scorers next to user code (`fn.ts`), remote
 * endpoints (`http.ts`) and reward models.
 *
 * The option types here are this module's own and match the recipe's reward sources
 * structurally, so a resolved recipe source can be passed as it is.
 *
 * @module
 */

import { countdownScore } from "./countdown.ts";
import type { Sample } from "./types.ts";

export type { Sample };

/** A scorer: one number per sample. It may throw when the sample's row cannot be read. */
export type Scorer = (sample: Sample) => number;

/** A rule-based check of a completion against the reference answer or the row. */
export type VerifierSource =
  | {
    kind: "exactMatch";
    /** @default {true} */
    trim?: boolean;
    /** @default {true} */
    caseSensitive?: boolean;
    /** @default {false} */
    collapseWhitespace?: boolean;
  }
  | {
    kind: "numericAnswer";
    /** Absolute tolerance. @default {0} */
    tolerance?: number;
  }
  | {
    kind: "regexFormat";
    pattern: string;
    /** @default {""} */
    flags?: string;
  }
  | { kind: "countdown" };

// A number: thousands separators only in groups of three, a sign only when no digit precedes it
// (so "2024-12" is 2024 and then 12, and "3,4" is 3 and then 4, never 34).
const NUMBER_SOURCE = String.raw`(?:(?<![\d.])-)?(?:\d{1,3}(?:,\d{3})+(?![\d,])|\d+)(?:\.\d+)?`;
const NUMBER = new RegExp(NUMBER_SOURCE, "g");
const MARKED = new RegExp(String.raw`####\s*(${NUMBER_SOURCE})`);
const BOXED = new RegExp(String.raw`\\boxed\{\s*(${NUMBER_SOURCE})\s*\}`);

function parseNumber(text: string): number | null {
  const value = Number(text.replaceAll(",", ""));
  return Number.isFinite(value) ? value : null;
}

/**
 * The final answer of a completion as a number: the `#### n` marker, else `\boxed{n}`, else the
 * last number in the text; null when there is none. Numbers are whole tokens: "190" is 190, never
 * a 90 inside it.
 *
 * @example
 * ```ts
 * extractNumber("so 2+2 is 4"); // 4
 * extractNumber("#### 1,234"); // 1234
 * extractNumber("no digits"); // null
 * ```
 */
export function extractNumber(text: string): number | null {
  const marked = MARKED.exec(text);
  if (marked) return parseNumber(marked[1]!);
  const boxed = BOXED.exec(text);
  if (boxed) return parseNumber(boxed[1]!);
  const all = text.match(NUMBER);
  return all ? parseNumber(all[all.length - 1]!) : null;
}

function countdownRow(row: unknown): { numbers: number[]; target: number } {
  const { numbers, target } = (row ?? {}) as Record<string, unknown>;
  if (!Array.isArray(numbers) || !numbers.every((n) => Number.isSafeInteger(n))) {
    throw new Error("countdown: the row's 'numbers' is not an array of integers");
  }
  if (!Number.isSafeInteger(target)) {
    throw new Error("countdown: the row's 'target' is not an integer");
  }
  return { numbers: numbers as number[], target: target as number };
}

/**
 * The scorer of a built-in verifier; options left out take their defaults. `countdown` reads
 * `sample.row` (`{ numbers, target }`) and throws for a row without them.
 *
 * @example
 * ```ts
 * const score = verifier({ kind: "numericAnswer" });
 * score({ prompt: "", completion: "#### 42", answer: "42", row: {}, tokens: 4, truncated: false }); // 1
 * ```
 */
export function verifier(source: VerifierSource): Scorer {
  switch (source.kind) {
    case "numericAnswer": {
      const tolerance = source.tolerance ?? 0;
      return ({ completion, answer }) => {
        // an empty or missing reference is not a number, and nothing matches it
        if (typeof completion !== "string" || typeof answer !== "string") return 0;
        const got = extractNumber(completion);
        const want = extractNumber(answer);
        return got !== null && want !== null && Math.abs(got - want) <= tolerance ? 1 : 0;
      };
    }
    case "exactMatch": {
      const trim = source.trim ?? true;
      const caseSensitive = source.caseSensitive ?? true;
      const collapse = source.collapseWhitespace ?? false;
      const norm = (s: string) => {
        let t = trim ? s.trim() : s;
        if (collapse) t = t.replace(/\s+/g, " ");
        return caseSensitive ? t : t.toLowerCase();
      };
      return ({ completion, answer }) => norm(completion) === norm(answer) ? 1 : 0;
    }
    case "regexFormat": {
      const re = new RegExp(source.pattern, source.flags ?? "");
      return ({ completion }) => {
        re.lastIndex = 0; // a `g` or `y` flag must not carry state from one sample to the next
        return re.test(completion) ? 1 : 0;
      };
    }
    case "countdown":
      return ({ completion, row }) => countdownScore(completion, countdownRow(row));
  }
}

/**
 * DAPO's soft overlong penalty of a completion of `tokens` tokens: 0 up to `max - buffer`, then
 * linear down to -1 at `max`, -1 beyond.
 *
 * @example
 * ```ts
 * overlongPenalty(7, 4, 10); // -0.25
 * ```
 */
export function overlongPenalty(tokens: number, buffer: number, max: number): number {
  const soft = max - buffer;
  return tokens <= soft ? 0 : tokens > max ? -1 : (soft - tokens) / buffer;
}
