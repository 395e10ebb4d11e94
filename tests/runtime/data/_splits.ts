/** Shared checks of the data sources' splits. */

import assert from "node:assert/strict";
import type { Splits } from "../../../runtime/data/types.ts";

/** Asserts the split sizes, and that no problem repeats in a split or appears in both. */
export function assertDisjointSplits(
  splits: Splits<unknown>,
  want: { train: number; eval: number },
): void {
  const { train, eval: held } = splits;
  assert.equal(train.length, want.train);
  assert.equal(held.length, want.eval);
  const trainPrompts = new Set(train.map((p) => p.prompt));
  assert.equal(trainPrompts.size, train.length, "a repeated train problem");
  assert.equal(new Set(held.map((p) => p.prompt)).size, held.length, "a repeated eval problem");
  assert.ok(held.every((p) => !trainPrompts.has(p.prompt)), "an eval problem in train");
}
