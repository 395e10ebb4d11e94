/**
 * The synthetic sorting task: prompts are `length` values in 0..maxValue joined by "," and ended
 * by "=" (`3,1,4,1,5=`), answers the same values sorted ascending (`1,1,3,4,5`). Values are
 * written plainly, not padded. Problems are drawn without replacement from the
 * (maxValue+1)^length sequences with the recipe's seed; the eval split comes first and the train
 * split after it, so the two never share a problem.
 *
 * @module
 */

import type { Rng } from "../engine/random.ts";
import { checkInteger, decimalDigits, drawDistinct } from "./_distinct.ts";
import type { Problem, Splits } from "./types.ts";

/**
 * The row of a sorting problem: the values in prompt order (a type, so it is a
 * `Record<string, unknown>`).
 *
 * @example
 * ```ts
 * // The fraction of the values the completion lists at all.
 * const coverage: RewardFn<SortingRow> = ({ completion, row }) =>
 *   row.values.filter((v) => completion.split(",").includes(String(v))).length / row.values.length;
 * ```
 */
export type SortingRow = { values: number[] };

/** The options of {@linkcode sortingSplits}. */
export interface SortingOptions {
  /** Values per problem, at least 1. */
  length: number;
  /** The largest value, in [0, 2^32 − 1]; values are uniform in 0..maxValue. */
  maxValue: number;
  /** Train problems. */
  train: number;
  /** Eval problems. */
  eval: number;
}

/** Every character a sorting prompt or answer uses. */
export const ALPHABET = "0123456789,=";

/**
 * The problem for `values`, in prompt order.
 *
 * @example
 * ```ts
 * sortingProblem([3, 1, 4, 1, 5]);
 * // { prompt: "3,1,4,1,5=", answer: "1,1,3,4,5", row: { values: [3, 1, 4, 1, 5] } }
 * ```
 */
export function sortingProblem(values: number[]): Problem<SortingRow> {
  const sorted = [...values].sort((x, y) => x - y);
  return { prompt: `${values.join(",")}=`, answer: sorted.join(","), row: { values: [...values] } };
}

/**
 * `train` and `eval` distinct sorting problems, disjoint, drawn with `rng`.
 *
 * @example
 * ```ts
 * const { train } = sortingSplits({ length: 5, maxValue: 9, train: 5000, eval: 500 }, new Rng(1));
 * train[0]; // for some seed:
 * // { prompt: "3,1,4,1,5=", answer: "1,1,3,4,5", row: { values: [3, 1, 4, 1, 5] } }
 * ```
 */
export function sortingSplits(options: SortingOptions, rng: Rng): Splits<SortingRow> {
  const what = "sorting problems";
  const { length, maxValue } = options;
  checkInteger(what, "length", length, { min: 1 });
  checkInteger(what, "maxValue", maxValue, { min: 0, max: 4294967295 });
  checkInteger(what, "train", options.train, { min: 0 });
  checkInteger(what, "eval", options.eval, { min: 0 });
  const base = maxValue + 1;
  const distinct = base ** length; // inexact (or Infinity) past 2^53, where only its size matters
  const wanted = options.train + options.eval;
  if (wanted > distinct) {
    throw new Error(
      `Cannot draw ${wanted} distinct sorting problems of ${length} values in 0..${maxValue}: ` +
        `only ${distinct} exist`,
    );
  }
  const problems = drawDistinct({
    distinct,
    wanted,
    // Index k in [0, base^length) is the sequence of its base-`base` digits, most significant
    // first.
    at: (k) => {
      const values = new Array<number>(length);
      for (let i = length - 1; i >= 0; i--) {
        values[i] = k % base;
        k = Math.floor(k / base);
      }
      return sortingProblem(values);
    },
    draw: (r) => sortingProblem(Array.from({ length }, () => r.int(base))),
    key: (p) => p.prompt,
  }, rng);
  return { eval: problems.slice(0, options.eval), train: problems.slice(options.eval) };
}

/**
 * The longest prompt in characters: `length` values of at most D digits (D those of maxValue),
 * `length − 1` commas and `=`.
 *
 * @example
 * ```ts
 * maxPromptChars({ length: 5, maxValue: 99 }); // 15, as in "99,99,99,99,99="
 * ```
 */
export function maxPromptChars(options: Pick<SortingOptions, "length" | "maxValue">): number {
  return maxAnswerChars(options) + 1;
}

/**
 * The longest answer in characters: `length` values of at most D digits and `length − 1` commas.
 *
 * @example
 * ```ts
 * maxAnswerChars({ length: 5, maxValue: 99 }); // 14, as in "99,99,99,99,99"
 * ```
 */
export function maxAnswerChars(options: Pick<SortingOptions, "length" | "maxValue">): number {
  return options.length * decimalDigits(options.maxValue) + options.length - 1;
}
