// runtime/mod.ts is the runtime's entry (`giftwrap/runtime`): every export is documented with an
// example, and the objectives' math is reachable from it.

import assert from "node:assert/strict";
import { exportDocs, undocumented } from "../_entry.ts";
import { tf, useBackend } from "../../runtime/engine/backend.ts";
import { type ObjectiveBatch, objectives } from "../../runtime/mod.ts";

Deno.test("every export of runtime/mod.ts has a doc comment with an @example", async () => {
  const exports = await exportDocs("runtime/mod.ts");
  assert.ok(exports.length > 40, `only ${exports.length} exports found`);
  assert.deepEqual(undocumented(exports), []);
  // Formatting helpers and the trainer's internals stay internal.
  const names = new Set(exports.map((e) => e.name));
  for (const internal of ["tf", "trainStep", "Run", "pct", "duration", "swapLastAxes", "num"]) {
    assert.ok(!names.has(internal), `runtime/mod.ts exports '${internal}'`);
  }
});

Deno.test("runtime/mod.ts exports objectives.gift, callable on plain tensors", async () => {
  await useBackend("cpu");
  // One group of 4: rewards [1, 0, 0, 1]; u = Σ_t (logp − refLogp) = [1, 0, 0, 0].
  const batch: ObjectiveBatch = {
    logp: tf.tensor2d([[0.5, 0.5], [0, 0], [0, 0], [0, 0]]),
    oldLogp: tf.zeros([4, 2]),
    refLogp: tf.zeros([4, 2]),
    mask: tf.ones([4, 2]),
    rewards: tf.tensor1d([1, 0, 0, 1]),
    groupSize: 4,
  };
  const { loss, metrics } = objectives.gift.loss(batch, {});
  // Â = ±1/std([1,0,0,1]) = ±0.8660; ũ = ([1,0,0,0] − 0.25)/0.5 = [1.5, −0.5, −0.5, −0.5].
  const a = 0.5 / Math.sqrt(1 / 3);
  const expected = ((a - 1.5) ** 2 + 2 * (-a + 0.5) ** 2 + (a + 0.5) ** 2) / 4;
  assert.ok(
    Math.abs(loss.dataSync()[0]! - expected) < 1e-5,
    `${loss.dataSync()[0]} vs ${expected}`,
  );
  assert.equal(objectives.gift.name, "gift");
  tf.dispose([
    loss,
    ...Object.values(metrics),
    ...Object.values(batch).filter((t) => t instanceof tf.Tensor),
  ]);
});
