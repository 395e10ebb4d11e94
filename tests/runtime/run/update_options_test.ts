// The plan's `update` (recipe fields `microBatches` and `gradientCheckpointing`) reaches every
// step's update, and changes nothing but memory: a run of the tiny recipe with micro-batches, or
// with activation checkpointing, takes the steps the plain run takes (losses, gradient norms, KL,
// final weights to 1e-5), and so does a LoRA run's update on stories260K with micro-batches,
// activation checkpointing or both. The
// plain plan has no `update` (its hash is the one before these options).
//
// The LoRA run is compared over one update: its adapters start with B = 0, so many of B's first
// gradients are near 0, and AdamW's first step moves each weight by ±lr whatever its gradient's
// size; after it, float rounding between batch shapes (1e-7) is no longer 1e-7 in the weights.
// The update itself is exact: tests/runtime/rl/micro_batches_test.ts checks its loss and every
// adapter gradient to 1e-5.

import assert from "node:assert/strict";
import { execute } from "../../../runtime/run/execute.ts";
import type { Run, StepMetrics } from "../../../runtime/rl/train_step.ts";
import { updateOptions } from "../../../runtime/run/schedule.ts";
import { hfModel, lora } from "../../../mod.ts";
import type { Plan } from "../../../dsl/plan.ts";
import { withTempDir } from "../../_helpers.ts";
import { tinyPlan } from "../_tiny.ts";
import { valuesOf } from "../_run.ts";
import { copyDir, hfPlan, hfRecipe, STORIES, writeJsonl } from "../_hf.ts";

/** A run of `plan`: its metrics, and what trained (weights, or LoRA adapters) at the end. */
async function trained(plan: Plan, dir: string) {
  let values: Record<string, Float32Array> = {};
  const result = await execute(plan, {
    runsDir: `${dir}/runs`,
    baseUrl: `file://${dir}/`,
    log: () => {},
    onFinish: (run: Run) => {
      values = valuesOf(run.adapters?.params ?? run.params);
    },
  });
  return { metrics: result.metrics, values };
}

/** `got` agrees with `want` to 1e-5 (relative above 1), named `what`. */
function close(got: number | null, want: number | null, what: string): void {
  if (got === null || want === null) return assert.equal(got, want, what);
  assert.ok(
    Math.abs(got - want) <= 1e-5 * Math.max(1, Math.abs(want)),
    `${what}: ${got} vs ${want}`,
  );
}

/** Two runs took the same steps: rewards exactly, losses, norms, KL and the weights to 1e-5. */
function sameRun(
  got: { metrics: StepMetrics[]; values: Record<string, Float32Array> },
  want: { metrics: StepMetrics[]; values: Record<string, Float32Array> },
): void {
  assert.equal(got.metrics.length, want.metrics.length);
  for (const [i, w] of want.metrics.entries()) {
    const g = got.metrics[i]!;
    assert.equal(g.rewardMean, w.rewardMean, `step ${w.step} reward`);
    close(g.loss, w.loss, `step ${w.step} loss`);
    close(g.gradNorm, w.gradNorm, `step ${w.step} gradNorm`);
    close(g.kl, w.kl, `step ${w.step} kl`);
  }
  assert.ok(want.metrics.some((m) => m.loss !== 0), "the steps had a signal");
  assert.deepEqual(Object.keys(got.values), Object.keys(want.values));
  for (const [name, values] of Object.entries(want.values)) {
    const diff = values.reduce((m, x, i) => Math.max(m, Math.abs(x - got.values[name]![i]!)), 0);
    assert.ok(diff < 1e-5, `${name}: off by ${diff}`);
  }
}

Deno.test("updateOptions() gives trainStep the plan's micro-batch rows and checkpointing", () => {
  assert.deepEqual(updateOptions(undefined), {});
  assert.deepEqual(
    updateOptions({ microBatches: 1, microBatchRows: 8, gradientCheckpointing: false }),
    {},
  );
  assert.deepEqual(
    updateOptions({ microBatches: 2, microBatchRows: 4, gradientCheckpointing: true }),
    { microBatchRows: 4, gradientCheckpointing: true },
  );
  assert.equal(tinyPlan().update, undefined);
  assert.deepEqual(tinyPlan({ microBatches: 2 }).update, {
    microBatches: 2,
    microBatchRows: 4, // 2 mini-batches of 2 groups of 4: one group each
    gradientCheckpointing: false,
  });
});

Deno.test("execute() with microBatches, or with gradientCheckpointing, takes the plain run's steps", async () => {
  await withTempDir(async (dir) => {
    const plain = await trained(tinyPlan({ steps: 3, backend: "cpu" }), dir);
    const micro = await trained(tinyPlan({ steps: 3, backend: "cpu", microBatches: 2 }), dir);
    sameRun(micro, plain);
    const recomputed = await trained(
      tinyPlan({ steps: 3, backend: "cpu", gradientCheckpointing: true }),
      dir,
    );
    sameRun(recomputed, plain);
  });
});

Deno.test("execute() with LoRA and microBatches, gradientCheckpointing or both takes the LoRA run's update", async () => {
  await withTempDir(async (dir) => {
    await copyDir(STORIES, `${dir}/model`);
    await writeJsonl(`${dir}/prompts.jsonl`, [
      { prompt: "Once upon a time", answer: "x" },
      { prompt: "Tom had a red ball.", answer: "x" },
      { prompt: "Lily saw a cat", answer: "x" },
      { prompt: "The sun was hot.", answer: "x" },
    ]);
    const plan = (changes: Record<string, unknown>) =>
      hfPlan(
        hfRecipe("model", "prompts.jsonl", {
          policy: hfModel({
            path: "model",
            lora: lora({ rank: 4, targets: ["q_proj", "v_proj"] }),
          }),
          group: { size: 4, prompts: 4 },
          miniBatches: 1,
          sampling: { maxNewTokens: 12, temperature: 1 },
          optimizer: { lr: 1e-2 },
          steps: 1,
          ...changes,
        }),
        `file://${dir}/`,
      );
    const whole = await trained(await plan({}), dir);
    sameRun(await trained(await plan({ microBatches: 2 }), dir), whole);
    // Checkpointed blocks take the adapters as their custom gradient's inputs: the same update.
    sameRun(await trained(await plan({ gradientCheckpointing: true }), dir), whole);
    const both = await plan({ microBatches: 2, gradientCheckpointing: true });
    assert.deepEqual(both.update, {
      microBatches: 2,
      microBatchRows: 8,
      gradientCheckpointing: true,
    });
    sameRun(await trained(both, dir), whole);
  });
});
