/**
 * The synthetic countdown task: reach a target from given numbers with + - * /. A prompt lists
 * the numbers and the target (`3,7,25,4|72=`); the reference answer is one expression that reaches
 * it (`(25-7)*4`), using a subset of the numbers, each at most as often as given. Any correct
 * expression should score, so the row keeps the numbers and the target for a verifier to check.
 *
 * One problem is drawn in steps: (1) `numbers` values uniform in 1..maxNumber; (2) a random subset
 * of at least two of them in random order; (3) join two random items with a random operator until
 * one expression is left, where an operator is allowed only when its value is a positive integer
 * (subtraction only when positive, division only when exact); (4) the target is its value, and the
 * problem is redrawn from (1) when the target passes maxTarget. The targets are therefore not
 * uniform in 1..maxTarget: small settings of maxTarget favour subtraction and division.
 *
 * A problem is its prompt: the same numbers in the same order with the same target count once,
 * whatever the expression. The eval split is drawn first and the train split after it, never
 * repeating a prompt; the space is not counted up front, so a draw that finds no new problem in
 * {@linkcode MAX_ATTEMPTS} tries in a row gives up with an error naming the settings.
 *
 * @module
 */

import type { Rng } from "../engine/random.ts";
import { checkInteger, decimalDigits } from "./_distinct.ts";
import type { Problem, Splits } from "./types.ts";

/**
 * The row of a countdown problem: the numbers in prompt order and the target (a type, so it is a
 * `Record<string, unknown>`).
 *
 * @example
 * ```ts
 * // Half a point for a completion that names the target at all.
 * const mentions: RewardFn<CountdownRow> = ({ completion, row }) =>
 *   completion.includes(String(row.target)) ? 0.5 : 0;
 * ```
 */
export type CountdownRow = { numbers: number[]; target: number };

/** An operator of a countdown expression. */
export type CountdownOp = "+" | "-" | "*" | "/";

/** A countdown expression: a number, or an operator applied to two expressions. */
export type CountdownExpr = number | { op: CountdownOp; left: CountdownExpr; right: CountdownExpr };

/** The options of {@linkcode countdownSplits}. */
export interface CountdownOptions {
  /** Numbers per problem, at least 2. */
  numbers: number;
  /** The largest number, in [1, 2^32]; numbers are uniform in 1..maxNumber. */
  maxNumber: number;
  /** The largest target, at least 1. */
  maxTarget: number;
  /** Train problems. */
  train: number;
  /** Eval problems. */
  eval: number;
}

/** Every character a countdown prompt or answer uses. */
export const ALPHABET = "0123456789+-*/()|,=";

/** Failed tries in a row (target too large, or a problem already drawn) before giving up. */
export const MAX_ATTEMPTS = 100_000;

const OPS: readonly CountdownOp[] = ["+", "-", "*", "/"];

/**
 * The value of `expr`, or null when some step is not a positive safe integer (a subtraction
 * that is not positive, an inexact division, a product past 2^53).
 *
 * @example
 * ```ts
 * countdownValue({ op: "*", left: { op: "-", left: 25, right: 7 }, right: 4 }); // 72
 * countdownValue({ op: "/", left: 7, right: 2 }); // null
 * ```
 */
export function countdownValue(expr: CountdownExpr): number | null {
  if (typeof expr === "number") {
    return Number.isSafeInteger(expr) && expr > 0 ? expr : null;
  }
  const left = countdownValue(expr.left);
  const right = countdownValue(expr.right);
  return left === null || right === null ? null : apply(expr.op, left, right);
}

/**
 * `expr` as text, each compound operand in parentheses and the whole expression not.
 *
 * @example
 * ```ts
 * const sum: CountdownExpr = { op: "+", left: 3, right: 7 };
 * const product: CountdownExpr = { op: "*", left: sum, right: 4 };
 * formatCountdown({ op: "-", left: product, right: 25 }); // "((3+7)*4)-25"
 * ```
 */
export function formatCountdown(expr: CountdownExpr): string {
  if (typeof expr === "number") return String(expr);
  const operand = (e: CountdownExpr) =>
    typeof e === "number" ? String(e) : `(${formatCountdown(e)})`;
  return `${operand(expr.left)}${expr.op}${operand(expr.right)}`;
}

/**
 * The problem with `numbers` (in prompt order) whose reference answer is `expr` and whose target
 * is its value. Throws when `expr` has no value (see {@linkcode countdownValue}).
 *
 * @example
 * ```ts
 * countdownProblem([3, 7, 25, 4], { op: "*", left: { op: "-", left: 25, right: 7 }, right: 4 });
 * // { prompt: "3,7,25,4|72=", answer: "(25-7)*4", row: { numbers: [3, 7, 25, 4], target: 72 } }
 * ```
 */
export function countdownProblem(numbers: number[], expr: CountdownExpr): Problem<CountdownRow> {
  const target = countdownValue(expr);
  if (target === null) {
    throw new RangeError(
      `Cannot make a countdown problem as '${formatCountdown(expr)}' has a step that is not a ` +
        "positive integer",
    );
  }
  return {
    prompt: `${numbers.join(",")}|${target}=`,
    answer: formatCountdown(expr),
    row: { numbers: [...numbers], target },
  };
}

/**
 * `train` and `eval` distinct countdown problems, disjoint, drawn with `rng`.
 *
 * @example
 * ```ts
 * const { train } = countdownSplits(
 *   { numbers: 4, maxNumber: 25, maxTarget: 100, train: 5000, eval: 500 },
 *   new Rng(1),
 * );
 * train[0]; // for some seed:
 * // { prompt: "3,7,25,4|72=", answer: "(25-7)*4", row: { numbers: [3, 7, 25, 4], target: 72 } }
 * ```
 */
export function countdownSplits(options: CountdownOptions, rng: Rng): Splits<CountdownRow> {
  const what = "countdown problems";
  checkInteger(what, "numbers", options.numbers, { min: 2 });
  checkInteger(what, "maxNumber", options.maxNumber, { min: 1, max: 4294967296 });
  checkInteger(what, "maxTarget", options.maxTarget, { min: 1 });
  checkInteger(what, "train", options.train, { min: 0 });
  checkInteger(what, "eval", options.eval, { min: 0 });
  const wanted = options.train + options.eval;
  const seen = new Set<string>();
  const problems: Problem<CountdownRow>[] = [];
  let tooLarge = 0;
  let repeats = 0;
  while (problems.length < wanted) {
    const problem = drawCountdown(options, rng);
    if (problem.row.target > options.maxTarget) tooLarge++;
    else if (seen.has(problem.prompt)) repeats++;
    else {
      seen.add(problem.prompt);
      problems.push(problem);
      tooLarge = repeats = 0;
      continue;
    }
    if (tooLarge + repeats >= MAX_ATTEMPTS) {
      throw new Error(
        `Cannot draw ${wanted} distinct countdown problems of ${options.numbers} numbers in ` +
          `1..${options.maxNumber} with targets in 1..${options.maxTarget}: found ` +
          `${problems.length}, then ${MAX_ATTEMPTS} tries in a row gave none new (${tooLarge} ` +
          `with a target above ${options.maxTarget}, ${repeats} already drawn)`,
      );
    }
  }
  return { eval: problems.slice(0, options.eval), train: problems.slice(options.eval) };
}

/**
 * The longest prompt in characters: `numbers` numbers of at most D digits (D those of
 * maxNumber), their commas, `|`, a target of at most Dt digits (those of maxTarget) and `=`.
 *
 * @example
 * ```ts
 * maxPromptChars({ numbers: 4, maxNumber: 25, maxTarget: 100 }); // 16, as in "25,25,25,25|100="
 * ```
 */
export function maxPromptChars(
  options: Pick<CountdownOptions, "numbers" | "maxNumber" | "maxTarget">,
): number {
  const n = options.numbers;
  return n * decimalDigits(options.maxNumber) + (n - 1) + 1 + decimalDigits(options.maxTarget) + 1;
}

/**
 * The longest answer in characters: at most `numbers` numbers of at most D digits, one operator
 * fewer, and a pair of parentheses around each of the at most `numbers − 2` compound operands.
 *
 * @example
 * ```ts
 * maxAnswerChars({ numbers: 4, maxNumber: 25 }); // 15, as in "((25+25)*25)-25"
 * ```
 */
export function maxAnswerChars(options: Pick<CountdownOptions, "numbers" | "maxNumber">): number {
  const n = options.numbers;
  return n * decimalDigits(options.maxNumber) + (n - 1) + 2 * (n - 2);
}

/** `left op right`, or null when that is not a positive safe integer. */
function apply(op: CountdownOp, left: number, right: number): number | null {
  let value: number;
  switch (op) {
    case "+":
      value = left + right;
      break;
    case "-":
      value = left - right;
      break;
    case "*":
      value = left * right;
      break;
    case "/":
      if (left % right !== 0) return null;
      value = left / right;
      break;
  }
  return Number.isSafeInteger(value) && value > 0 ? value : null;
}

/** One try, steps (1)–(4) of the module doc; the caller checks the target against maxTarget. */
function drawCountdown(options: CountdownOptions, rng: Rng): Problem<CountdownRow> {
  // 1) The numbers.
  const numbers = Array.from({ length: options.numbers }, () => rng.int(options.maxNumber) + 1);
  // 2) A subset of 2..n of them in random order: a shuffled copy's first `size`.
  const size = 2 + rng.int(options.numbers - 1);
  const items: { expr: CountdownExpr; value: number }[] = rng.shuffle([...numbers])
    .slice(0, size)
    .map((value) => ({ expr: value, value }));
  // 3) Join two random items with a random allowed operator until one is left (`+` always is,
  // unless the sum passes 2^53).
  while (items.length > 1) {
    const left = items.splice(rng.int(items.length), 1)[0]!;
    const right = items.splice(rng.int(items.length), 1)[0]!;
    const allowed = OPS.flatMap((op) => {
      const value = apply(op, left.value, right.value);
      return value === null ? [] : [{ op, value }];
    });
    if (allowed.length === 0) {
      // Only when every operator passes 2^53; start again rather than guess.
      return drawCountdown(options, rng);
    }
    const { op, value } = allowed[rng.int(allowed.length)]!;
    items.push({ expr: { op, left: left.expr, right: right.expr }, value });
  }
  // 4) The target is the expression's value.
  return countdownProblem(numbers, items[0]!.expr);
}
