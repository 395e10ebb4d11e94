// Micro-batches for the update: whole-group slices whose losses, weighted by their share of the
// batch average, give the full mini-batch's loss and every gradient (GIFT, GRPO, DAPO, Dr. GRPO).

import assert from "node:assert/strict";
import { tf, useBackend } from "../../../runtime/engine/backend.ts";
import { initParams, tokenLogProbs } from "../../../runtime/engine/model/transformer.ts";
import { Rng } from "../../../runtime/engine/random.ts";
import { initLoraAdapters, loraConfig } from "../../../runtime/engine/model/lora.ts";
import { objectiveAxes, resolveObjective } from "../../../dsl/objectives.ts";
import { type Objective, objectives } from "../../../runtime/rl/objectives/mod.ts";
import {
  microBatchRanges,
  microBatchShares,
  microBatchWeighting,
  type UpdateBatch,
  updateGradients,
  type UpdateGradientsOptions,
  type UpdatePolicy,
} from "../../../runtime/rl/micro_batches.ts";
import { type Run, trainStep } from "../../../runtime/rl/train_step.ts";
import { dapo as dapoRecipe, gift as giftRecipe, grpo as grpoRecipe } from "../../../mod.ts";
import { GQA_CONFIG } from "../_tiny.ts";
import { releaseRun, tinyRun } from "../_run.ts";

const CONFIG = GQA_CONFIG;
const G = 2; // completions per prompt
const ROWS = 6; // three groups
const PROMPT = 5;
const C = 4; // completion tokens

Deno.test("microBatchRanges() cuts whole groups, the last one short", () => {
  assert.deepEqual(microBatchRanges(6, 2, 4), [{ start: 0, rows: 4 }, { start: 4, rows: 2 }]);
  assert.deepEqual(microBatchRanges(6, 3, 3), [{ start: 0, rows: 3 }, { start: 3, rows: 3 }]);
  assert.deepEqual(microBatchRanges(4, 2, 8), [{ start: 0, rows: 4 }]);
  assert.throws(
    () => microBatchRanges(6, 2, 3),
    /'microBatchRows' must be a positive multiple of the group size 2: current value is 3/,
  );
  assert.throws(() => microBatchRanges(6, 4, 4), /whole groups of 4: current value is 6/);
});

Deno.test("microBatchShares() weighs micro-batches by rows or by completion tokens", () => {
  const mask = Float32Array.from([1, 1, 1, 0, 1, 0, 0, 0]); // [4, 2]: 3 tokens, then 1
  const halves = [{ start: 0, rows: 2 }, { start: 2, rows: 2 }];
  assert.deepEqual(microBatchShares(halves, mask, "rows"), [0.5, 0.5]);
  assert.deepEqual(microBatchShares(halves, mask, "tokens"), [0.75, 0.25]);
  assert.deepEqual(microBatchShares(halves, new Float32Array(8), "tokens"), [0.5, 0.5]);
});

Deno.test("microBatchWeighting() is rows for row means, tokens for token-mean, refused for pairs", () => {
  const axes = (kind: "gift" | "grpo" | "dapo" | "drGrpo" | "una" | "onlineDpo") =>
    objectiveAxes(resolveObjective({ kind }));
  assert.equal(microBatchWeighting(axes("gift")), "rows");
  assert.equal(microBatchWeighting(axes("grpo")), "rows");
  assert.equal(microBatchWeighting(axes("drGrpo")), "rows");
  assert.equal(microBatchWeighting(axes("una")), "rows");
  assert.equal(microBatchWeighting(axes("dapo")), "tokens");
  assert.throws(() => microBatchWeighting(axes("onlineDpo")), /current value is 'pair-mean'/);
});

/** A batch of three groups with ragged completions, old and reference log-probs near π's. */
function makeBatch(policy: UpdatePolicy): UpdateBatch {
  const rng = new Rng(31);
  const width = PROMPT + C;
  const ids = tf.tensor2d(
    Int32Array.from({ length: ROWS * width }, () => rng.int(CONFIG.vocab)),
    [ROWS, width],
    "int32",
  ); // [B, P + C]
  const lengths = [4, 1, 3, 2, 4, 0]; // completion tokens of each row
  const mask = tf.tensor2d(
    Float32Array.from(
      { length: ROWS * C },
      (_, j) => (j % C < lengths[Math.floor(j / C)]! ? 1 : 0),
    ),
    [ROWS, C],
  ); // [B, C]
  const rewards = tf.tensor1d([1, 0, 0.25, 0.75, 0.5, 0]); // [B]
  const padding = [0, 1, 0, 2, 0, 0];
  const noise = (seed: number, scale: number) => {
    const r = new Rng(seed);
    return tf.tensor2d(Float32Array.from({ length: ROWS * C }, () => (r.uniform() - 0.5) * scale), [
      ROWS,
      C,
    ]);
  };
  const logp = tf.tidy(() =>
    tokenLogProbs(
      policy.kernels,
      policy.params,
      CONFIG,
      ids,
      PROMPT,
      policy.temperature,
      padding,
      policy.adapters ? { adapters: policy.adapters } : {},
    )
  );
  // π_old off by up to ±0.3 nats, so GRPO's ratio is clipped on some tokens and not on others
  const old = tf.tidy(() => tf.add(logp, noise(32, 0.6))) as tf.Tensor2D;
  const ref = tf.tidy(() => tf.add(logp, noise(33, 0.4))) as tf.Tensor2D;
  logp.dispose();
  return { ids, mask, rewards, padding, old, ref };
}

/** Loss and every gradient of `objective` over micro-batches of `microBatchRows` (all: one pass). */
async function run(
  objective: Objective<unknown>,
  kind: "gift" | "grpo" | "dapo" | "drGrpo",
  microBatchRows: number | undefined,
  weighting?: "rows" | "tokens",
  gradientCheckpointing = false,
) {
  const { kernels } = await useBackend("cpu");
  const params = initParams(CONFIG, new Rng(30));
  const policy: UpdatePolicy = {
    kernels,
    params,
    config: CONFIG,
    promptLength: PROMPT,
    temperature: 0.9,
    gradientCheckpointing,
  };
  const batch = makeBatch(policy);
  const resolved = resolveObjective({ kind });
  const options: UpdateGradientsOptions = {
    objectiveOptions: resolved,
    groupSize: G,
    rolloutReference: false,
    ...(microBatchRows ? { microBatchRows } : {}),
    weighting: weighting ?? microBatchWeighting(objectiveAxes(resolved)),
  };
  const result = await updateGradients(policy, objective, batch, options);
  const grads: Record<string, Float32Array> = {};
  for (const [name, v] of Object.entries(params)) {
    grads[name] = (await result.grads[v.name]!.data()) as Float32Array;
  }
  const metrics: Record<string, number> = {};
  for (const [k, m] of Object.entries(result.metrics)) metrics[k] = (await m.data())[0]!;
  const out = {
    loss: (await result.value.data())[0]!,
    kl: (await result.kl!.data())[0]!,
    grads,
    metrics,
  };
  tf.dispose([
    result.value,
    result.kl!,
    ...Object.values(result.grads),
    ...Object.values(result.metrics),
    batch.ids,
    batch.mask,
    batch.rewards,
    batch.old!,
    batch.ref!,
    ...Object.values(params),
  ]);
  return out;
}

const { gift, grpo, dapo, drGrpo } = objectives;
const CASES = [
  { kind: "gift", objective: gift },
  { kind: "grpo", objective: grpo },
  { kind: "dapo", objective: dapo },
  { kind: "drGrpo", objective: drGrpo },
] as const;

for (const { kind, objective } of CASES) {
  Deno.test(`updateGradients() over micro-batches gives the full batch's loss and gradients for ${kind}`, async () => {
    const before = tf.memory().numTensors;
    const full = await run(objective as Objective<unknown>, kind, undefined);
    assert.ok(full.loss !== 0 && Number.isFinite(full.loss), `loss ${full.loss}`);
    for (const rows of [2, 4]) { // one group at a time; two groups then one
      const micro = await run(objective as Objective<unknown>, kind, rows);
      const at = `${kind}, ${rows} rows`;
      assert.ok(
        Math.abs(micro.loss - full.loss) <= 1e-5,
        `${at}: loss ${micro.loss} vs ${full.loss}`,
      );
      assert.ok(Math.abs(micro.kl - full.kl) <= 1e-6, `${at}: kl ${micro.kl} vs ${full.kl}`);
      for (const [name, expected] of Object.entries(full.grads)) {
        const got = micro.grads[name]!;
        let worst = 0;
        let scale = 0;
        for (let i = 0; i < expected.length; i++) {
          worst = Math.max(worst, Math.abs(got[i]! - expected[i]!));
          scale = Math.max(scale, Math.abs(expected[i]!));
        }
        assert.ok(scale > 0, `${at}: ${name} has no gradient`);
        assert.ok(
          worst <= 1e-5 * Math.max(1, scale),
          `${at}: ${name} max |Δ| ${worst} (max ${scale})`,
        );
      }
    }
    assert.equal(tf.memory().numTensors, before, "tensors leaked");
  });
}

Deno.test("updateGradients() with micro-batches weighted by rows misses DAPO's token-mean loss", async () => {
  const full = await run(dapo as Objective<unknown>, "dapo", undefined);
  const wrong = await run(dapo as Objective<unknown>, "dapo", 2, "rows");
  assert.ok(Math.abs(wrong.loss - full.loss) > 1e-4, `${wrong.loss} vs ${full.loss}`);
});

Deno.test("updateGradients() averages GIFT's row-mean diagnostics exactly over micro-batches", async () => {
  const full = await run(gift as Objective<unknown>, "gift", undefined);
  const micro = await run(gift as Objective<unknown>, "gift", 2);
  for (const name of ["implicitReward", "implicitStd", "advantageAbs"]) {
    const [a, b] = [micro.metrics[name]!, full.metrics[name]!];
    assert.ok(Math.abs(a - b) <= 1e-6, `${name}: ${a} vs ${b}`);
  }
});

Deno.test("updateGradients() with micro-batches and gradientCheckpointing gives the plain GRPO update", async () => {
  const full = await run(grpo as Objective<unknown>, "grpo", undefined);
  const both = await run(grpo as Objective<unknown>, "grpo", 2, undefined, true);
  assert.ok(Math.abs(both.loss - full.loss) <= 1e-5, `loss ${both.loss} vs ${full.loss}`);
  for (const [name, expected] of Object.entries(full.grads)) {
    const got = both.grads[name]!;
    let worst = 0;
    for (let i = 0; i < expected.length; i++) {
      worst = Math.max(worst, Math.abs(got[i]! - expected[i]!));
    }
    assert.ok(worst <= 1e-5, `${name}: max |Δ| ${worst}`);
  }
});

const STEP_CASES = [
  { label: "gift", spec: giftRecipe(), objective: gift, G: 4 },
  { label: "grpo", spec: grpoRecipe(), objective: grpo, G: 4 },
  { label: "dapo", spec: dapoRecipe(), objective: dapo, G: 4 },
] as const;

for (const { label, spec, objective, G: groupSize } of STEP_CASES) {
  Deno.test(`trainStep() with microBatchRows and gradientCheckpointing takes the plain step for ${label}`, async () => {
    const step = async (options: { microBatchRows?: number; gradientCheckpointing?: boolean }) => {
      const run = await tinyRun(
        { objective: spec, reference: "rollout" },
        objective as Run["objective"],
      );
      try {
        const { metrics, samples } = await trainStep(run, 1, options);
        return { metrics, samples };
      } finally {
        releaseRun(run);
      }
    };
    const plain = await step({});
    const micro = await step({ microBatchRows: groupSize, gradientCheckpointing: true });
    assert.deepEqual(micro.samples, plain.samples);
    const close = (a: number, b: number, what: string) =>
      assert.ok(
        Math.abs(a - b) <= 1e-5 * Math.max(1, Math.abs(b)),
        `${label} ${what}: ${a} vs ${b}`,
      );
    assert.ok(plain.metrics.gradNorm > 0, `${label}: gradient norm ${plain.metrics.gradNorm}`);
    close(micro.metrics.loss, plain.metrics.loss, "loss");
    close(micro.metrics.gradNorm, plain.metrics.gradNorm, "gradNorm");
    close(micro.metrics.gradNormClipped, plain.metrics.gradNormClipped, "gradNormClipped");
    close(micro.metrics.kl!, plain.metrics.kl!, "kl");
  });
}

Deno.test("updateGradients() with LoRA adapters differentiates only them, and micro-batches give the full batch's gradients", async () => {
  const { kernels } = await useBackend("cpu");
  const base = initParams(CONFIG, new Rng(30)); // the frozen base: never differentiated here
  const lora = loraConfig({ rank: 2, alpha: 4, targets: ["q_proj", "v_proj", "down_proj"] });
  const adapters = initLoraAdapters(CONFIG, lora, new Rng(34), kernels.layout);
  for (const [name, p] of Object.entries(adapters.params)) {
    if (name.endsWith("lora_B.weight")) p.assign(tf.randomNormal(p.shape, 0, 0.2, "float32", 35));
  }
  const policy: UpdatePolicy = {
    kernels,
    params: base,
    adapters,
    config: CONFIG,
    promptLength: PROMPT,
    temperature: 0.9,
  };
  const batch = makeBatch(policy);
  const before = tf.memory().numTensors;
  const options = (microBatchRows?: number): UpdateGradientsOptions => ({
    objectiveOptions: resolveObjective({ kind: "gift" }),
    groupSize: G,
    rolloutReference: false,
    ...(microBatchRows ? { microBatchRows } : {}),
  });
  const gradients = async (microBatchRows?: number) => {
    const result = await updateGradients(
      policy,
      gift as Objective<unknown>,
      batch,
      options(microBatchRows),
    );
    const names = Object.values(adapters.params).map((v) => v.name).sort();
    assert.deepEqual(Object.keys(result.grads).sort(), names, "only the adapters' gradients");
    const out = {
      loss: (await result.value.data())[0]!,
      grads: Object.fromEntries(
        Object.entries(adapters.params).map(([n, v]) => [n, result.grads[v.name]!.dataSync()]),
      ),
    };
    tf.dispose([
      result.value,
      result.kl!,
      ...Object.values(result.grads),
      ...Object.values(result.metrics),
    ]);
    return out;
  };
  const full = await gradients();
  const micro = await gradients(2);
  assert.ok(full.loss !== 0 && Number.isFinite(full.loss), `loss ${full.loss}`);
  assert.ok(Math.abs(micro.loss - full.loss) <= 1e-5, `loss ${micro.loss} vs ${full.loss}`);
  for (const [name, expected] of Object.entries(full.grads)) {
    const got = micro.grads[name]!;
    let worst = 0;
    let scale = 0;
    for (let i = 0; i < expected.length; i++) {
      worst = Math.max(worst, Math.abs(got[i]! - expected[i]!));
      scale = Math.max(scale, Math.abs(expected[i]!));
    }
    assert.ok(scale > 0, `${name} has no gradient`);
    assert.ok(worst <= 1e-5 * Math.max(1, scale), `${name}: max |Δ| ${worst} (max ${scale})`);
  }
  assert.equal(tf.memory().numTensors, before, "tensors leaked");
  tf.dispose([
    batch.ids,
    batch.mask,
    batch.rewards,
    batch.old!,
    batch.ref!,
    ...Object.values(base),
    ...Object.values(adapters.params),
  ]);
});
