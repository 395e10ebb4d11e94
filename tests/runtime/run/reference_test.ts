// A reference from a checkpoint directory (runtime/run/reference.ts): a Hugging Face directory
// loads through loadModelDir() to its own weights, and one of another architecture or shape than
// the policy's is refused in one line naming the field.

import assert from "node:assert/strict";
import { tf, useBackend } from "../../../runtime/engine/backend.ts";
import { loadHfModel } from "../../../runtime/engine/model/hf.ts";
import { modelConfig } from "../../../runtime/engine/model/model_config.ts";
import { checkpointReference } from "../../../runtime/run/reference.ts";
import { RunSetupError } from "../../../runtime/run/setup.ts";
import { execute } from "../../../runtime/run/execute.ts";
import type { Plan } from "../../../dsl/plan.ts";
import type { Recipe } from "../../../dsl/schema.ts";
import { withTempDir } from "../../_helpers.ts";
import { copyDir, hfPlan, hfRecipe, STORIES, writeHfModel, writeJsonl } from "../_hf.ts";

/** A small llama's config.json, or another architecture's of the same dimensions. */
function smallConfig(changes: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    architectures: ["LlamaForCausalLM"],
    model_type: "llama",
    vocab_size: 512,
    hidden_size: 16,
    intermediate_size: 24,
    num_hidden_layers: 1,
    num_attention_heads: 2,
    num_key_value_heads: 1,
    max_position_embeddings: 64,
    rms_norm_eps: 1e-5,
    rope_theta: 10_000,
    tie_word_embeddings: true,
    ...changes,
  };
}

/** The frozen reference `plan` names, loaded as a run loads it on cpu, as plain values. */
async function referenceOf(plan: Plan, dir: string): Promise<Record<string, Float32Array>> {
  const { kernels } = await useBackend("cpu");
  await using held = new AsyncDisposableStack();
  const params = await checkpointReference(
    held,
    plan,
    modelConfig(plan.model),
    `file://${dir}/`,
    kernels.layout,
  );
  assert.ok(params !== null);
  return Object.fromEntries(
    Object.entries(params).map(([name, t]) => [name, (t as tf.Tensor).dataSync() as Float32Array]),
  );
}

Deno.test("checkpointReference() loads a Hugging Face directory to its own weights", async () => {
  await withTempDir(async (dir) => {
    await copyDir(STORIES, `${dir}/model`);
    await copyDir(STORIES, `${dir}/ref`);
    await writeJsonl(`${dir}/prompts.jsonl`, [{ prompt: "Tom", answer: "x" }]);
    const plan = await hfPlan(
      hfRecipe("model", "prompts.jsonl", { reference: { checkpoint: "ref" } }),
      `file://${dir}/`,
    );
    assert.equal(plan.reference.kind, "checkpoint");
    const before = tf.memory().numTensors;
    const reference = await referenceOf(plan, dir);
    assert.equal(tf.memory().numTensors, before, "released with the run");
    const { kernels } = await useBackend("cpu");
    const { weights } = await loadHfModel(STORIES, kernels.layout);
    assert.deepEqual(Object.keys(reference).sort(), Object.keys(weights).sort());
    for (const [name, { data }] of Object.entries(weights)) {
      assert.deepEqual(reference[name], data, name);
    }
  });
});

Deno.test("checkpointReference() refuses a Hugging Face directory of another shape or architecture", async () => {
  await withTempDir(async (dir) => {
    await writeHfModel(`${dir}/llama`, smallConfig(), STORIES, 1);
    await writeHfModel(`${dir}/wider`, smallConfig({ intermediate_size: 32 }), STORIES, 2);
    // Qwen2: the same dimensions, with biases on q, k and v.
    await writeHfModel(`${dir}/qwen2`, smallConfig({ model_type: "qwen2" }), STORIES, 3);
    await writeJsonl(`${dir}/prompts.jsonl`, [{ prompt: "Tom", answer: "x" }]);
    const planWith = (checkpoint: string) =>
      hfPlan(
        hfRecipe("llama", "prompts.jsonl", { reference: { checkpoint } }),
        `file://${dir}/`,
      );
    const refusal = async (checkpoint: string) => {
      const plan = await planWith(checkpoint);
      const e = await referenceOf(plan, dir).then(
        () => assert.fail("expected a refusal"),
        (e) => e,
      );
      assert.ok(e instanceof RunSetupError, String(e));
      assert.doesNotMatch(e.message, /\n/);
      return e.message;
    };
    assert.equal(
      await refusal("wider"),
      `Cannot use reference checkpoint '${dir}/wider': its ffnDim is 32, the policy's is 24`,
    );
    assert.equal(
      await refusal("qwen2"),
      `Cannot use reference checkpoint '${dir}/qwen2': its attentionBias is true, the policy's ` +
        "is absent",
    );
    assert.equal(
      await refusal("nowhere"),
      `Cannot load reference checkpoint '${dir}/nowhere': not found`,
    );
    // The same dimensions load (a reference of other weights).
    const other = await writeHfModel(`${dir}/other`, smallConfig(), STORIES, 4);
    const reference = await referenceOf(await planWith("other"), dir);
    const { kernels } = await useBackend("cpu");
    const { weights } = await loadHfModel(other, kernels.layout);
    for (const [name, { data }] of Object.entries(weights)) {
      assert.deepEqual(reference[name], data, name);
    }
  });
});

Deno.test("execute() against a Hugging Face reference directory of the same weights trains as against 'initial'", async () => {
  await withTempDir(async (dir) => {
    await copyDir(STORIES, `${dir}/model`);
    await copyDir(STORIES, `${dir}/ref`);
    await writeJsonl(`${dir}/prompts.jsonl`, [
      { prompt: "Tom", answer: "x" },
      { prompt: "Lily", answer: "x" },
    ]);
    const runWith = async (reference: NonNullable<Recipe["reference"]>) => {
      const plan = await hfPlan(
        hfRecipe("model", "prompts.jsonl", {
          reference,
          backend: "wasm",
          sampling: { maxNewTokens: 8, temperature: 1 },
          steps: 2,
        }),
        `file://${dir}/`,
      );
      const result = await execute(plan, {
        runsDir: `${dir}/runs`,
        baseUrl: `file://${dir}/`,
        log: () => {},
      });
      assert.equal(result.status, "finished");
      return result;
    };
    const fromDir = await runWith({ checkpoint: "ref" });
    const initial = await runWith("initial");
    const measured = (r: typeof fromDir) =>
      r.metrics.map((m) => ({ reward: m.rewardMean, kl: m.kl, loss: m.loss }));
    assert.deepEqual(measured(fromDir), measured(initial));
    assert.ok(fromDir.metrics.every((m) => m.kl !== null));
    assert.deepEqual(
      await Deno.readFile(`${fromDir.dir}/checkpoints/final/model.safetensors`),
      await Deno.readFile(`${initial.dir}/checkpoints/final/model.safetensors`),
    );
  });
});
