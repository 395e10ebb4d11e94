/**
 * The synthetic addition task: prompts `a+b=` with both operands written with exactly `digits`
 * digits (zero-padded, so every prompt has the same length), answers the plain decimal sum.
 * Problems are drawn without replacement from the 10^(2·digits) pairs with the recipe's seed; the
 * eval split comes first and the train split after it, so the two never share a problem.
 *
 * @module
 */

import type { Rng } from "../engine/random.ts";
import type { Problem, Splits } from "./types.ts";

/**
 * The row of an addition problem: its operands (a type, so it is a `Record<string, unknown>`).
 *
 * @example
 * ```ts
 * // A reward that reads the operands rather than the reference answer.
 * const exact: RewardFn<AdditionRow> = ({ completion, row }) =>
 *   Number(completion.trim()) === row.a + row.b ? 1 : 0;
 * ```
 */
export type AdditionRow = { a: number; b: number };

/** Above this many distinct problems, draw with a rejection set instead of a full permutation. */
const PERMUTE_LIMIT = 2_000_000;

/** The problem with index `k` in [0, 10^(2·digits)): operands `⌊k / 10^d⌋` and `k mod 10^d`. */
export function additionProblem(k: number, digits: number): Problem<AdditionRow> {
  const base = 10 ** digits;
  const a = Math.floor(k / base);
  const b = k % base;
  const pad = (n: number) => String(n).padStart(digits, "0");
  return { prompt: `${pad(a)}+${pad(b)}=`, answer: String(a + b), row: { a, b } };
}

/**
 * `train` and `eval` distinct addition problems, disjoint, drawn with `rng`.
 *
 * @example
 * ```ts
 * const { train, eval: held } = additionSplits({ digits: 2, train: 5000, eval: 500 }, new Rng(1));
 * train[0]; // { prompt: "37+05=", answer: "42" } (for some seed)
 * ```
 */
export function additionSplits(
  options: { digits: number; train: number; eval: number },
  rng: Rng,
): Splits<AdditionRow> {
  const { digits } = options;
  const distinct = 10 ** (2 * digits);
  const wanted = options.train + options.eval;
  if (wanted > distinct) {
    throw new Error(
      `Cannot draw ${wanted} distinct ${digits}-digit addition problems: only ${distinct} exist`,
    );
  }
  let order: number[];
  if (distinct <= PERMUTE_LIMIT) {
    order = rng.shuffle(Array.from({ length: distinct }, (_, k) => k)).slice(0, wanted);
  } else {
    const seen = new Set<number>();
    order = [];
    while (order.length < wanted) {
      const k = rng.int(10 ** digits) * 10 ** digits + rng.int(10 ** digits); // every pair reachable
      if (!seen.has(k)) {
        seen.add(k);
        order.push(k);
      }
    }
  }
  const problems = order.map((k) => additionProblem(k, digits));
  return { eval: problems.slice(0, options.eval), train: problems.slice(options.eval) };
}
