import assert from "node:assert/strict";
import { type BackendName, tf, useBackend } from "../../../runtime/engine/backend.ts";
import {
  initParams,
  modelConfig,
  tokenLogProbs,
} from "../../../runtime/engine/model/transformer.ts";
import { objectives, stopGradient } from "../../../runtime/rl/objectives/mod.ts";
import { Rng } from "../../../runtime/engine/random.ts";
import { freeDuringBackprop } from "../../../runtime/engine/tape.ts";
import { tinyPlan } from "../_tiny.ts";

/** A GIFT train step's gradients (and their peak tensor bytes) on a 2-layer model, 64 rows. */
async function step(backend: BackendName, free: boolean) {
  const { kernels } = await useBackend(backend);
  freeDuringBackprop(free);
  try {
    const config = modelConfig(
      tinyPlan({
        policy: { kind: "tinyGpt", layers: 2, dModel: 32, heads: 2 },
      }).model,
    );
    const params = initParams(config, new Rng(11));
    const vars = Object.values(params);
    const rng = new Rng(12);
    const B = 64; // rows: enough that activations, not parameters, make the peak
    const ids = tf.tensor2d(Array.from({ length: B * 8 }, () => 3 + rng.int(12)), [B, 8], "int32");
    const rewards = tf.tensor1d(Array.from({ length: B }, () => rng.int(2)));
    const mask = tf.ones([B, 3]) as tf.Tensor2D;
    const refLogp = tf.fill([B, 3], -2.5) as tf.Tensor2D;
    const before = tf.memory().numTensors;
    let grads: Record<string, Float32Array> = {};
    const profile = await tf.profile(async () => {
      const { value, grads: g } = tf.variableGrads(() =>
        tf.tidy(() => {
          const logp = tokenLogProbs(kernels, params, config, ids, 5);
          return objectives.gift.loss(
            { logp, oldLogp: stopGradient(logp), refLogp, mask, rewards, groupSize: 4 },
            { betaC: 1, stdEpsilon: 1e-6 } as never,
          ).loss;
        }), vars);
      // by parameter name (variableGrads keys them by the variables' global names)
      grads = Object.fromEntries(
        await Promise.all(
          Object.entries(params).map(async ([name, v]) => [name, await g[v.name]!.data()]),
        ),
      );
      tf.dispose([value, ...Object.values(g)]);
    });
    const leaked = tf.memory().numTensors - before;
    tf.dispose([ids, rewards, mask, refLogp, ...vars]);
    return { grads, peakBytes: profile.peakBytes, leaked };
  } finally {
    freeDuringBackprop(true);
  }
}

for (const backend of ["cpu", "wasm"] as BackendName[]) {
  Deno.test(`freeing backprop gives tfjs's gradients bit for bit, at a lower peak, on ${backend}`, async () => {
    const kept = await step(backend, false);
    const freed = await step(backend, true);
    assert.deepEqual(Object.keys(freed.grads), Object.keys(kept.grads));
    for (const [name, g] of Object.entries(kept.grads)) {
      assert.deepEqual(freed.grads[name], g, name);
    }
    assert.equal(kept.leaked, 0);
    assert.equal(freed.leaked, 0);
    // Without freeing, the backward pass's peak holds every saved activation and every gradient
    // at once; freeing brings the peak down to the forward pass's (here 11% lower).
    assert.ok(
      freed.peakBytes < 0.95 * kept.peakBytes,
      `peak ${freed.peakBytes} bytes freeing, ${kept.peakBytes} keeping`,
    );
  });
}

Deno.test("freeing backprop keeps higher-order gradients: d²(x³)/dx² = 6x", async () => {
  await useBackend("cpu");
  freeDuringBackprop(true);
  const x = tf.tensor1d([1, 2, -3]);
  const second = tf.grad(tf.grad((t: tf.Tensor) => tf.pow(t, 3)));
  const result = second(x);
  assert.deepEqual(Array.from(await result.data()), [6, 12, -18]);
  tf.dispose([x, result]);
});

Deno.test("freeing backprop survives gradients handed through unchanged and fan-out", async () => {
  await useBackend("cpu");
  freeDuringBackprop(true);
  // A custom op whose gradient is dy itself (the same tensor object), used twice: the accumulated
  // gradient of x must not be disposed along with dy.
  const pass = tf.customGrad(
    ((x: tf.Tensor) => ({
      value: tf.clone(x),
      gradFunc: (dy: tf.Tensor) => dy,
    })) as Parameters<typeof tf.customGrad>[0],
  );
  const x = tf.variable(tf.tensor1d([1, 2, 3]));
  const before = tf.memory().numTensors;
  const { value, grads } = tf.variableGrads(() => {
    const y = pass(x) as tf.Tensor;
    return tf.sum(tf.add(tf.mul(y, y), pass(y) as tf.Tensor)) as tf.Scalar; // Σ (x² + x)
  }, [x]);
  assert.deepEqual(Array.from(await grads[x.name]!.data()), [3, 5, 7]); // 2x + 1
  assert.equal((await value.data())[0], 1 + 4 + 9 + 1 + 2 + 3);
  tf.dispose([value, ...Object.values(grads)]);
  assert.equal(tf.memory().numTensors, before);
  x.dispose();
});
