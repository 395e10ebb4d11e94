import assert from "node:assert/strict";
import { tf, useBackend } from "../../../runtime/engine/backend.ts";
import { adamW, adamWStep, disposeAdamW } from "../../../runtime/engine/optim.ts";

// (Each kernel set's AdamW update against the tfjs ops: kernels/_conformance.ts.)
const { kernels } = await useBackend("cpu");

const OPTIONS = {
  lr: 0.1,
  betas: [0.9, 0.999] as [number, number],
  eps: 1e-8,
  weightDecay: 0,
  clipGradNorm: 0,
  warmupSteps: 0,
  schedule: "constant" as const,
};

Deno.test("adamWStep() takes AdamW's first step by hand: p − lr · sign(g)", async () => {
  const p = { w: tf.variable(tf.tensor1d([1, -2])) };
  const state = adamW(p, OPTIONS, 10);
  const g = tf.tensor1d([0.5, -4]);
  const { gradNorm, lr, skipped } = await adamWStep(kernels, state, p, { w: g });
  // m̂ = g and v̂ = g², so the step is lr · g / (|g| + ε).
  assert.deepEqual([skipped, lr, state.t], [false, 0.1, 1]);
  assert.ok(Math.abs(gradNorm - Math.hypot(0.5, 4)) < 1e-6);
  const w = await p.w.data();
  assert.ok(Math.abs(w[0]! - 0.9) < 1e-6 && Math.abs(w[1]! - -1.9) < 1e-6, `${w}`);
  tf.dispose([g, p.w]);
  disposeAdamW(state);
});

Deno.test("adamWStep() returns the norm before clipping and the exact norm after it", async () => {
  // ‖(3, 4)‖ = 5: over maxNorm 1, scaled by 1 / (5 + 1e-6); under maxNorm 10, or with clipping
  // off, as it is.
  const after = async (clipGradNorm: number) => {
    const p = { w: tf.variable(tf.tensor1d([1, -2])) };
    const state = adamW(p, { ...OPTIONS, clipGradNorm }, 10);
    const g = tf.tensor1d([3, 4]);
    const update = await adamWStep(kernels, state, p, { w: g });
    tf.dispose([g, p.w]);
    disposeAdamW(state);
    assert.equal(update.gradNorm, 5);
    return update.gradNormClipped;
  };
  // 5 / 5.000001 = 1 / (1 + 2e-7) = 1 − 2e-7 + 4e-14 − …
  assert.ok(Math.abs((await after(1)) - 0.99999980000004) < 1e-15);
  assert.equal(await after(10), 5);
  assert.equal(await after(0), 5);
});

Deno.test("adamWStep() skips a gradient with a NaN or an infinity, changing nothing", async () => {
  for (const bad of [NaN, Infinity]) {
    const p = { w: tf.variable(tf.tensor1d([1, -2])), b: tf.variable(tf.tensor1d([3])) };
    const state = adamW(p, OPTIONS, 10);
    const good = { w: tf.tensor1d([0.5, -4]), b: tf.tensor1d([1]) };
    await adamWStep(kernels, state, p, good);
    const before = {
      w: await p.w.data(),
      m: await state.m["w"]!.data(),
      v: await state.v["b"]!.data(),
    };
    const poisoned = { w: tf.tensor1d([0.5, bad]), b: tf.tensor1d([1]) };
    const result = await adamWStep(kernels, state, p, poisoned);
    assert.equal(result.skipped, true);
    assert.ok(!Number.isFinite(result.gradNorm));
    assert.ok(!Number.isFinite(result.gradNormClipped));
    assert.equal(state.t, 1);
    assert.deepEqual(await p.w.data(), before.w);
    assert.deepEqual(await state.m["w"]!.data(), before.m);
    assert.deepEqual(await state.v["b"]!.data(), before.v);
    tf.dispose([...Object.values(good), ...Object.values(poisoned), p.w, p.b]);
    disposeAdamW(state);
  }
});
