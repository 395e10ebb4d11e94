/**
 * Drawing distinct problems from a countable space, shared by the synthetic tasks: a shuffled
 * enumeration when the space is small, independent draws with a rejection set when it is large
 * (as `addition.ts` does).
 *
 * @module
 */

import type { Rng } from "../engine/random.ts";

/** Above this many distinct problems, draw with a rejection set instead of a full permutation. */
export const PERMUTE_LIMIT = 2_000_000;

/** A countable problem space, and how many of its problems to draw. */
export interface DistinctSpace<T> {
  /** How many distinct problems exist (may exceed 2^53 for the rejection path: then inexact). */
  distinct: number;
  /** How many to draw; at most `distinct`. */
  wanted: number;
  /** The problem with index `k` in [0, distinct), for the enumeration path. */
  at: (k: number) => T;
  /** One uniform draw from the space, for the rejection path. */
  draw: (rng: Rng) => T;
  /** A problem's identity (two problems with the same key are the same problem). */
  key: (problem: T) => string;
}

/**
 * `space.wanted` distinct problems in a uniformly random order, drawn with `rng`.
 *
 * @example
 * ```ts
 * const picks = drawDistinct(
 *   { distinct: 10, wanted: 3, at: (k) => k, draw: (r) => r.int(10), key: String },
 *   new Rng(1),
 * ); // three distinct digits
 * ```
 */
export function drawDistinct<T>(space: DistinctSpace<T>, rng: Rng): T[] {
  const { distinct, wanted } = space;
  if (distinct <= PERMUTE_LIMIT) {
    const order = rng.shuffle(Array.from({ length: distinct }, (_, k) => k)).slice(0, wanted);
    return order.map(space.at);
  }
  const seen = new Set<string>();
  const out: T[] = [];
  while (out.length < wanted) {
    const problem = space.draw(rng);
    const key = space.key(problem);
    if (!seen.has(key)) {
      seen.add(key);
      out.push(problem);
    }
  }
  return out;
}

/**
 * A RangeError unless `value` is an integer in [min, max], worded like the rest of the runtime:
 * `Cannot draw sorting problems as 'length' must be an integer in [1, 64]: current value is 0`.
 */
export function checkInteger(
  what: string,
  name: string,
  value: number,
  range: { min: number; max?: number },
): void {
  const { min, max } = range;
  if (Number.isInteger(value) && value >= min && (max === undefined || value <= max)) return;
  const wanted = max === undefined ? `an integer >= ${min}` : `an integer in [${min}, ${max}]`;
  throw new RangeError(
    `Cannot draw ${what} as '${name}' must be ${wanted}: current value is ${value}`,
  );
}

/** The number of decimal digits of a non-negative integer (1 for 0). */
export function decimalDigits(n: number): number {
  return String(n).length;
}
