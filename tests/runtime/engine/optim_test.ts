import assert from "node:assert/strict";
import { tf, useBackend } from "../../../runtime/engine/backend.ts";
import { adamW, adamWStep, disposeAdamW } from "../../../runtime/engine/optim.ts";

await useBackend("cpu");

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
  const { gradNorm, lr, skipped } = await adamWStep(state, p, { w: g });
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
    const update = await adamWStep(state, p, { w: g });
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
    await adamWStep(state, p, good);
    const before = {
      w: await p.w.data(),
      m: await state.m["w"]!.data(),
      v: await state.v["b"]!.data(),
    };
    const poisoned = { w: tf.tensor1d([0.5, bad]), b: tf.tensor1d([1]) };
    const result = await adamWStep(state, p, poisoned);
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

Deno.test("adamWStep() on wasm as simd.wat's one pass gives the tfjs ops' bits", async () => {
  // decay on matrices only, clipping on the second step, warm-up then cosine decay; sizes that
  // leave 1–3 values after the 4-lane loop
  const options = {
    ...OPTIONS,
    lr: 0.01,
    weightDecay: 0.1,
    clipGradNorm: 1,
    warmupSteps: 2,
    schedule: "cosine" as const,
  };
  const shapes: Record<string, number[]> = { w: [6, 5], gain: [7], e: [4, 3] };
  const values = (seed: number, size: number, scale: number) =>
    Array.from({ length: size }, (_, i) => scale * Math.sin(seed * 7.3 + i * 1.7));
  const size = (shape: number[]) => shape.reduce((a, b) => a * b, 1);
  const run = async (kernels: boolean) => {
    const params = Object.fromEntries(
      Object.entries(shapes).map(([name, shape], j) => [
        name,
        tf.variable(tf.tensor(values(j, size(shape), 1), shape)),
      ]),
    );
    const state = adamW(params, options, 6);
    const norms: number[] = [];
    const before = tf.memory().numTensors;
    for (let t = 0; t < 4; t++) {
      const grads = Object.fromEntries(
        Object.entries(shapes).map(([name, shape], j) => [
          name,
          tf.tensor(values(10 * t + j, size(shape), t % 2 ? 2 : 0.05), shape),
        ]),
      );
      norms.push((await adamWStep(state, params, grads, kernels)).gradNorm);
      tf.dispose(Object.values(grads));
    }
    assert.equal(tf.memory().numTensors, before, "no tensor left behind");
    const all = [...Object.values(params), ...Object.values(state.m), ...Object.values(state.v)];
    const flat = (await Promise.all(all.map((x) => x.data()))).map((a) => Array.from(a));
    tf.dispose(Object.values(params));
    disposeAdamW(state);
    return { flat, norms };
  };
  try {
    await useBackend("wasm");
    const simd = await run(true);
    const plain = await run(false);
    assert.ok(simd.norms[0]! < 1 && simd.norms[1]! > 1, `clipping on step 2 only: ${simd.norms}`);
    assert.deepEqual(simd.norms, plain.norms);
    assert.deepEqual(simd.flat, plain.flat);
  } finally {
    await useBackend("cpu");
  }
});
