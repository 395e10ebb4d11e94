/**
 * The synthetic multiplication task: prompts `a*b=` with both operands written with exactly
 * `digits` digits (zero-padded, so every prompt has the same length), answers the plain decimal
 * product. Problems are drawn without replacement from the 10^(2·digits) pairs with the recipe's
 * seed; the eval split comes first and the train split after it, so the two never share a
 * problem.
 *
 * @module
 */

import type { Rng } from "../engine/random.ts";
import { checkInteger, drawDistinct } from "./_distinct.ts";
import type { Problem, Splits } from "./types.ts";

/**
 * The row of a multiplication problem: its operands (a type, so it is a
 * `Record<string, unknown>`).
 *
 * @example
 * ```ts
 * const exact: RewardFn<MultiplicationRow> = ({ completion, row }) =>
 *   Number(completion.trim()) === row.a * row.b ? 1 : 0;
 * ```
 */
export type MultiplicationRow = { a: number; b: number };

/** The options of {@linkcode multiplicationSplits}. */
export interface MultiplicationOptions {
  /** Digits of each operand, in [1, 9]; operands are zero-padded to it. */
  digits: number;
  /** Train problems. */
  train: number;
  /** Eval problems. */
  eval: number;
}

/** Every character a multiplication prompt or answer uses. */
export const ALPHABET = "0123456789*=";

/**
 * The problem with index `k` in [0, 10^(2·digits)): operands `⌊k / 10^d⌋` and `k mod 10^d`.
 *
 * @example
 * ```ts
 * multiplicationProblem(1207, 2); // { prompt: "12*07=", answer: "84", row: { a: 12, b: 7 } }
 * ```
 */
export function multiplicationProblem(k: number, digits: number): Problem<MultiplicationRow> {
  const base = 10 ** digits;
  return multiplicationOf(Math.floor(k / base), k % base, digits);
}

/**
 * `train` and `eval` distinct multiplication problems, disjoint, drawn with `rng`.
 *
 * @example
 * ```ts
 * const { train } = multiplicationSplits({ digits: 2, train: 5000, eval: 500 }, new Rng(1));
 * train[0]; // { prompt: "37*05=", answer: "185", row: { a: 37, b: 5 } } (for some seed)
 * ```
 */
export function multiplicationSplits(
  options: MultiplicationOptions,
  rng: Rng,
): Splits<MultiplicationRow> {
  const what = "multiplication problems";
  const { digits } = options;
  checkInteger(what, "digits", digits, { min: 1, max: 9 });
  checkInteger(what, "train", options.train, { min: 0 });
  checkInteger(what, "eval", options.eval, { min: 0 });
  const distinct = 10 ** (2 * digits);
  const wanted = options.train + options.eval;
  if (wanted > distinct) {
    throw new Error(
      `Cannot draw ${wanted} distinct ${digits}-digit multiplication problems: only ${distinct} ` +
        "exist",
    );
  }
  const base = 10 ** digits;
  const problems = drawDistinct({
    distinct,
    wanted,
    at: (k) => multiplicationProblem(k, digits),
    draw: (r) => {
      const a = r.int(base);
      return multiplicationOf(a, r.int(base), digits);
    },
    key: (p) => p.prompt,
  }, rng);
  return { eval: problems.slice(0, options.eval), train: problems.slice(options.eval) };
}

/**
 * The longest prompt in characters: two `digits`-digit operands, `*` and `=`.
 *
 * @example
 * ```ts
 * maxPromptChars({ digits: 3 }); // 8, as in "999*999="
 * ```
 */
export function maxPromptChars(options: Pick<MultiplicationOptions, "digits">): number {
  return 2 * options.digits + 2;
}

/**
 * The longest answer in characters: a product of two numbers below 10^d is below 10^(2d).
 *
 * @example
 * ```ts
 * maxAnswerChars({ digits: 3 }); // 6, as in "998001"
 * ```
 */
export function maxAnswerChars(options: Pick<MultiplicationOptions, "digits">): number {
  return 2 * options.digits;
}

/** The problem `a*b=`; the product is exact (BigInt) where it passes 2^53. */
function multiplicationOf(a: number, b: number, digits: number): Problem<MultiplicationRow> {
  const pad = (n: number) => String(n).padStart(digits, "0");
  const product = a * b;
  const answer = Number.isSafeInteger(product) ? String(product) : String(BigInt(a) * BigInt(b));
  return { prompt: `${pad(a)}*${pad(b)}=`, answer, row: { a, b } };
}
