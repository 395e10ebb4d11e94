// trainStep() with LoRA adapters (`Run.adapters`), on the tiny recipe's run (tests/runtime/_run.ts):
// the step samples from the merged model (W + s·A·B) exactly as a run of those merged weights
// does, takes the loss that run takes (to 1e-5: the adapters' forward and the merged weights' agree
// to float rounding), and updates only the adapters, the base bitwise as it was.

import assert from "node:assert/strict";
import { tf } from "../../../runtime/engine/backend.ts";
import {
  initLoraAdapters,
  type LoraAdapters,
  loraConfig,
  mergeLora,
} from "../../../runtime/engine/model/lora.ts";
import { adamW, disposeAdamW } from "../../../runtime/engine/optim.ts";
import { Rng } from "../../../runtime/engine/random.ts";
import { type Run, trainedParams, trainStep } from "../../../runtime/rl/train_step.ts";
import { releaseRun, tinyRun, valuesOf } from "../_run.ts";

/** Rank-2 adapters on every projection of `run`'s model, each B drawn ≠ 0 so they matter. */
function adaptersOf(run: Run): LoraAdapters {
  const lora = loraConfig({
    rank: 2,
    alpha: 4,
    targets: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
  });
  const adapters = initLoraAdapters(run.config, lora, new Rng(11), run.kernels.layout);
  for (const [name, p] of Object.entries(adapters.params)) {
    if (name.endsWith("lora_B.weight")) p.assign(tf.randomNormal(p.shape, 0, 0.2, "float32", 5));
  }
  return adapters;
}

/** Frozen copies of a run's weights, as plain tensors. */
function frozen(params: Run["params"]): Run["params"] {
  return Object.fromEntries(Object.entries(params).map(([n, p]) => [n, tf.clone(p)]));
}

Deno.test("trainStep() with LoRA samples from the merged model, takes its loss, and updates only the adapters", async () => {
  const lora = await tinyRun({ miniBatches: 2 });
  const merged = await tinyRun({ miniBatches: 2 });
  // The LoRA run: the tiny run's weights frozen as its base, adapters with B ≠ 0 trained.
  const base = frozen(lora.params);
  const adapters = adaptersOf(lora);
  releaseRun(lora);
  const loraRun: Run = {
    ...lora,
    params: base,
    adapters,
    optimizer: adamW(adapters.params, lora.plan.optimizer, 2),
  };
  // Its twin: the merged weights as the variables of a full fine-tuning run, the same seed.
  const weights = tf.tidy(() => mergeLora(base, adapters));
  const variables = Object.fromEntries(
    Object.entries(weights).map(([n, w]) => [n, tf.variable(tf.clone(w), true)]),
  );
  tf.dispose(Object.values(weights).filter((w) => !Object.values(base).includes(w)));
  tf.dispose(Object.values(merged.params));
  disposeAdamW(merged.optimizer);
  const twin: Run = {
    ...merged,
    params: variables,
    optimizer: adamW(variables, merged.plan.optimizer, 2),
  };
  try {
    const baseBefore = valuesOf(base);
    const adaptersBefore = valuesOf(adapters.params);
    assert.deepEqual(Object.keys(trainedParams(loraRun)), Object.keys(adapters.params));
    const [a, b] = [await trainStep(loraRun, 1), await trainStep(twin, 1)];
    // The same completions, drawn from the same stream: sampling reads the merged weights.
    const texts = (r: typeof a) => r.samples.flatMap((g) => g.completions.map((c) => c.text));
    assert.deepEqual(texts(a), texts(b));
    assert.equal(a.metrics.rewardMean, b.metrics.rewardMean);
    assert.equal(a.metrics.completionLength, b.metrics.completionLength);
    // The same loss: π_old and the update's π under the adapters are the merged model's.
    assert.ok(a.metrics.loss !== 0, "a step with a signal");
    assert.ok(
      Math.abs(a.metrics.loss - b.metrics.loss) < 1e-5,
      `${a.metrics.loss} vs ${b.metrics.loss}`,
    );
    // Only the adapters moved: every A and B, the base bitwise as it was.
    assert.deepEqual(valuesOf(base), baseBefore);
    const after = valuesOf(adapters.params);
    for (const [name, values] of Object.entries(adaptersBefore)) {
      assert.notDeepEqual(after[name], values, name);
    }
    assert.equal(loraRun.optimizer.t, 2);
    assert.deepEqual(Object.keys(loraRun.optimizer.m), Object.keys(adapters.params));
  } finally {
    tf.dispose([...Object.values(base), ...Object.values(adapters.params)]);
    disposeAdamW(loraRun.optimizer);
    releaseRun(twin);
  }
});
