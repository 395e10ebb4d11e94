/** Numeric comparisons the runtime tests share. */

import assert from "node:assert/strict";

/** ‖x − y‖∞ / ‖y‖∞: how far `x` is from the reference `y`, relative to y's largest entry. */
export function relativeError(x: ArrayLike<number>, y: ArrayLike<number>): number {
  assert.equal(x.length, y.length);
  let err = 0;
  let scale = 0;
  for (let i = 0; i < y.length; i++) {
    err = Math.max(err, Math.abs(x[i]! - y[i]!));
    scale = Math.max(scale, Math.abs(y[i]!));
  }
  return err / scale;
}

/** How far apart two numbers may be: |a − e| ≤ rtol · |e| + atol; both 0 means bit for bit. */
export interface Tolerance {
  rtol: number;
  atol: number;
}

/** The first place where `a` and `e` differ beyond `tol`, as "path: a vs e", or undefined. */
function firstDifference(a: unknown, e: unknown, tol: Tolerance, path: string): string | undefined {
  if (typeof e === "number" && typeof a === "number") {
    if (Object.is(a, e)) return undefined;
    const exact = tol.rtol === 0 && tol.atol === 0;
    const close = !exact && Number.isFinite(e) &&
      Math.abs(a - e) <= tol.rtol * Math.abs(e) + tol.atol;
    return close ? undefined : `${path || "value"}: ${a} vs ${e}`;
  }
  const listLike = (x: unknown): x is ArrayLike<unknown> =>
    Array.isArray(x) || (ArrayBuffer.isView(x) && !(x instanceof DataView));
  if (listLike(e) && listLike(a)) {
    if (a.length !== e.length) return `${path || "value"}: length ${a.length} vs ${e.length}`;
    for (let i = 0; i < e.length; i++) {
      const d = firstDifference(a[i], e[i], tol, `${path}[${i}]`);
      if (d) return d;
    }
    return undefined;
  }
  if (e !== null && a !== null && typeof e === "object" && typeof a === "object") {
    const [ka, ke] = [Object.keys(a).sort(), Object.keys(e).sort()];
    if (ka.join() !== ke.join()) return `${path || "value"}: keys ${ka} vs ${ke}`;
    for (const k of ke) {
      const d = firstDifference(
        (a as Record<string, unknown>)[k],
        (e as Record<string, unknown>)[k],
        tol,
        path ? `${path}.${k}` : k,
      );
      if (d) return d;
    }
    return undefined;
  }
  return Object.is(a, e) ? undefined : `${path || "value"}: ${String(a)} vs ${String(e)}`;
}

/**
 * Asserts that `actual` has `expected`'s shape and numbers within `tol` (NaN equal to NaN, −0 not
 * +0 when bit for bit): numbers, arrays, typed arrays and plain objects, walked together. Fails
 * with one line naming the first difference, also for arrays of millions of entries (where
 * `assert.deepEqual`'s diff would take minutes).
 *
 * @example
 * ```ts
 * assertClose({ loss: [0.5, NaN] }, { loss: [0.5, NaN] }, "metrics", { rtol: 0, atol: 0 });
 * ```
 */
export function assertClose(
  actual: unknown,
  expected: unknown,
  what: string,
  tol: Tolerance,
): void {
  const d = firstDifference(actual, expected, tol, "");
  if (d) {
    const bound = tol.rtol === 0 && tol.atol === 0
      ? "bit for bit"
      : `within ${tol.rtol}·|e| + ${tol.atol}`;
    assert.fail(`${what}: not equal ${bound} at ${d}`);
  }
}
