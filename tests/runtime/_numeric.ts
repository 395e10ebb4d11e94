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
