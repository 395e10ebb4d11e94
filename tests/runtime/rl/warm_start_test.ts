import assert from "node:assert/strict";
import { warmStartKey } from "../../../runtime/rl/warm_start.ts";
import { tinyPlan } from "../_tiny.ts";

Deno.test("warmStartKey() names the matmul path, whose sums give other weights, and nothing else", () => {
  const plan = tinyPlan();
  const plain = warmStartKey(plan);
  assert.match(plain, /^[0-9a-f]{16}$/);
  assert.equal(warmStartKey(plan, null), plain);
  const blas = warmStartKey(plan, "OpenBLAS SkylakeX, 2 threads");
  assert.notEqual(blas, plain);
  assert.notEqual(warmStartKey(plan, "OpenBLAS Haswell, 2 threads"), blas);
  // The RL settings do not touch the warm start: the same key.
  assert.equal(warmStartKey(tinyPlan({ steps: 9, optimizer: { lr: 0.5 } })), plain);
  assert.notEqual(warmStartKey(tinyPlan({ seed: 8 })), plain);
});
