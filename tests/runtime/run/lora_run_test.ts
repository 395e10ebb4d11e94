// A run of a LoRA policy (hfModel({ path, lora: lora({...}) })), end to end on stories260K: only
// the adapters train (the base's tensors bitwise as loaded, plain tensors, in no optimiser), they
// start from the seed's `lora` stream or from a PEFT adapter the recipe names, the "initial"
// reference is the base itself (no copy), the run saves the adapter in PEFT's format (and the
// merged model when asked), `generate` reads either, no tensor is left behind by a step, and a
// stopped run resumes to the uninterrupted run's adapters and metrics, bit for bit.

import assert from "node:assert/strict";
import { tf } from "../../../runtime/engine/backend.ts";
import type { LinearLayout } from "../../../runtime/engine/kernels/types.ts";
import { loadHfModel } from "../../../runtime/engine/model/hf.ts";
import {
  initLoraAdapters,
  loadLoraAdapter,
  loraConfig,
  readLoraAdapter,
  saveLoraAdapter,
} from "../../../runtime/engine/model/lora.ts";
import { tokenLogProbs } from "../../../runtime/engine/model/transformer.ts";
import { readSafetensorsHeader } from "../../../runtime/engine/model/safetensors.ts";
import { Rng } from "../../../runtime/engine/random.ts";
import { sampleCompletions } from "../../../runtime/rl/sample.ts";
import { policyWeights, type Run } from "../../../runtime/rl/train_step.ts";
import { execute, type ExecuteOptions, RunSetupError } from "../../../runtime/run/execute.ts";
import { hfModel, lora } from "../../../mod.ts";
import type { Lora } from "../../../dsl/schema.ts";
import type { Plan } from "../../../dsl/plan.ts";
import { runMain, withTempDir } from "../../_helpers.ts";
import { valuesOf } from "../_run.ts";
import { copyDir, hfPlan, hfRecipe, STORIES, writeJsonl } from "../_hf.ts";

const PROMPTS = [
  { prompt: "Once upon a time", answer: "x" },
  { prompt: "Tom had a red ball.", answer: "x" },
  { prompt: "Lily saw a cat", answer: "x" },
  { prompt: "The sun was hot.", answer: "x" },
];

/** Rank 4 on every projection but the MLP's gate. */
const TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj"] as const;

/** The plan of a GIFT run with LoRA on stories260K's copy in `dir/model`, its data beside it. */
async function loraPlan(
  dir: string,
  options: Lora = {},
  changes: Record<string, unknown> = {},
): Promise<Plan> {
  await writeJsonl(`${dir}/prompts.jsonl`, PROMPTS);
  return await hfPlan(
    hfRecipe("model", "prompts.jsonl", {
      name: "stories-lora",
      policy: hfModel({
        path: "model",
        lora: lora({ rank: 4, alpha: 8, targets: [...TARGETS], ...options }),
      }),
      sampling: { maxNewTokens: 16, temperature: 1 },
      optimizer: { lr: 1e-2 },
      steps: 2,
      ...changes,
    }),
    `file://${dir}/`,
  );
}

/** Runs `plan` in `dir/runs`, its paths relative to `dir`, quietly. */
function run(plan: Plan, dir: string, options: ExecuteOptions = {}) {
  return execute(plan, {
    runsDir: `${dir}/runs`,
    baseUrl: `file://${dir}/`,
    log: () => {},
    ...options,
  });
}

/** What a test reads of a finished LoRA run before its tensors are freed. */
interface Finished {
  layout: LinearLayout;
  base: Record<string, Float32Array>;
  adapters: Record<string, Float32Array>;
  merged: Record<string, Float32Array>;
  /** The merged policy's greedy continuation of "Once upon a time" (8 tokens). */
  greedy: number[];
}

/** Reads `r` as {@linkcode Finished} does. */
async function finished(r: Run, into: Partial<Finished>): Promise<void> {
  assert.ok(r.adapters, "a LoRA run has adapters");
  into.layout = r.kernels.layout;
  into.base = valuesOf(r.params);
  into.adapters = valuesOf(r.adapters.params);
  const policy = policyWeights(r.params, r.adapters);
  try {
    into.merged = valuesOf(policy.weights);
    const out = await sampleCompletions(
      r.kernels,
      policy.weights,
      r.config,
      r.task.tokenizer,
      [[1, 403, 407, 261, 378]],
      { temperature: 0, topK: 0, topP: 1, maxNewTokens: 8 },
      new Rng(0),
    );
    into.greedy = Array.from(out.ids.subarray(5, 5 + out.lengths[0]!));
  } finally {
    policy.release();
  }
}

/** `generate <path> --json`'s completion ids for "Once upon a time", 8 tokens. */
async function generated(path: string): Promise<number[]> {
  const out = await runMain([
    "generate",
    path,
    "--prompt",
    "Once upon a time",
    "--max-new-tokens",
    "8",
    "--json",
  ]);
  assert.equal(out.code, 0, out.stderr.join("\n"));
  const json = JSON.parse(out.stdout.join("\n"));
  assert.deepEqual(json.promptIds, [1, 403, 407, 261, 378]);
  return json.completionIds;
}

Deno.test("execute() with LoRA trains only the adapters, from the seed's lora stream, and saves adapter/ in PEFT's format and model/ merged", async () => {
  await withTempDir(async (dir) => {
    await copyDir(STORIES, `${dir}/model`);
    const plan = await loraPlan(dir, { saveMerged: true }, { steps: 3 });
    const tensorsAfterStep: number[] = [];
    const got: Partial<Finished> = {};
    let sameReference = false;
    let plainBase = false;
    let optimized: string[] = [];
    let referenceLogp: Float32Array = new Float32Array();
    let baseLogp: Float32Array = new Float32Array();
    const result = await run(plan, dir, {
      onStep: () => tensorsAfterStep.push(tf.memory().numTensors),
      onFinish: async (r) => {
        await finished(r, got);
        // The "initial" reference is the base itself, with the adapters off: no copy.
        sameReference = r.reference === r.params;
        plainBase = Object.values(r.params).every((t) => !(t instanceof tf.Variable));
        optimized = Object.keys(r.optimizer.m).sort();
        // Its log-probs are the base model's, loaded afresh.
        const { weights } = await loadHfModel(STORIES, r.kernels.layout);
        const fresh = Object.fromEntries(
          Object.entries(weights).map(([n, w]) => [n, tf.tensor(w.data, w.shape)]),
        );
        const ids = tf.tensor2d([1, 403, 407, 261, 378, 286, 261, 376], [1, 8], "int32");
        referenceLogp = tf.tidy(() =>
          tokenLogProbs(r.kernels, r.reference!, r.config, ids, 4, 1, [0])
        ).dataSync() as Float32Array;
        baseLogp = tf.tidy(() => tokenLogProbs(r.kernels, fresh, r.config, ids, 4, 1, [0]))
          .dataSync() as Float32Array;
        tf.dispose([ids, ...Object.values(fresh)]);
      },
    });
    assert.equal(result.status, "finished");
    const { layout, base, adapters, merged, greedy } = got as Finished;
    // No tensor is left behind by a step (merged sampling weights included).
    assert.equal(tensorsAfterStep.length, 3);
    assert.equal(tensorsAfterStep[1], tensorsAfterStep[0]);
    assert.equal(tensorsAfterStep[2], tensorsAfterStep[0]);

    // The base: plain tensors, bitwise as loaded; only the adapters sit in AdamW.
    assert.ok(plainBase, "the base weights are not variables");
    const { weights: pretrained, config } = await loadHfModel(STORIES, layout);
    assert.deepEqual(Object.keys(base).sort(), Object.keys(pretrained).sort());
    for (const [name, w] of Object.entries(pretrained)) assert.deepEqual(base[name], w.data, name);
    assert.deepEqual(optimized, Object.keys(adapters).sort());
    assert.equal(Object.keys(adapters).length, 5 * TARGETS.length * 2);
    assert.ok(sameReference, "the reference is the base's own tensors");
    assert.deepEqual(referenceLogp, baseLogp);

    // The adapters trained: every B has left zero.
    const runDir = result.dir;
    for (const [name, values] of Object.entries(adapters)) {
      if (name.endsWith("lora_B.weight")) assert.ok(values.some((x) => x !== 0), name);
    }
    // checkpoints/initial/ is the adapter RL started from: A drawn as PEFT draws it from the
    // seed's "lora" stream, B zero.
    const lora4 = loraConfig({ rank: 4, alpha: 8, targets: [...TARGETS] });
    const fresh = initLoraAdapters(config, lora4, new Rng(plan.seed).fork("lora"), "[out, in]");
    const initial = await readLoraAdapter(`${runDir}/checkpoints/initial`, config);
    assert.deepEqual(Object.keys(initial.tensors).sort(), Object.keys(fresh.params).sort());
    for (const [name, t] of Object.entries(fresh.params)) {
      assert.deepEqual(initial.tensors[name]!.data, t.dataSync(), name);
    }
    tf.dispose(Object.values(fresh.params));

    // adapter/: PEFT's files, on the model directory, loading back to the trained adapters.
    const peft = JSON.parse(await Deno.readTextFile(`${runDir}/adapter/adapter_config.json`));
    assert.equal(peft.base_model_name_or_path, `${dir}/model`);
    assert.deepEqual([peft.peft_type, peft.r, peft.lora_alpha], ["LORA", 4, 8]);
    assert.deepEqual(peft.target_modules, [...TARGETS]);
    const header = await readSafetensorsHeader(`${runDir}/adapter/adapter_model.safetensors`);
    const q = header.tensors.find((t) =>
      t.name === "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"
    );
    assert.deepEqual(q?.shape, [4, 64], "PEFT's A is [r, in]");
    const down = header.tensors.find((t) =>
      t.name === "base_model.model.model.layers.4.mlp.down_proj.lora_B.weight"
    );
    assert.deepEqual(down?.shape, [64, 4], "PEFT's B is [out, r]");
    const loaded = await loadLoraAdapter(`${runDir}/adapter`, config, { layout });
    assert.deepEqual(valuesOf(loaded.params), adapters);
    tf.dispose(Object.values(loaded.params));
    // The final checkpoint holds the adapters and their moments, not the base.
    const files = (await Array.fromAsync(Deno.readDir(`${runDir}/checkpoints/final`)))
      .map((e) => e.name).sort();
    assert.deepEqual(files, [
      "adapter_config.json",
      "adapter_model.safetensors",
      "metrics.jsonl",
      "optimizer.safetensors",
      "trainer_state.json",
    ]);

    // model/: the merged weights (W + s·A·B), every one the base's but the adapted projections.
    const { weights: saved } = await loadHfModel(`${runDir}/model`, layout);
    let adapted = 0;
    for (const [name, values] of Object.entries(merged)) {
      assert.deepEqual(saved[name]!.data, values, name);
      if (values.some((x, i) => x !== base[name]![i])) adapted++;
    }
    assert.equal(adapted, 5 * TARGETS.length);
    // generate reads model/: the trained policy's greedy continuation, not the base's.
    assert.deepEqual(await generated(runDir), greedy);
    assert.notDeepEqual(greedy, [432, 383, 286, 261, 376, 298, 315, 421]);
  });
});

Deno.test("execute() with LoRA stopped after step 1 resumes to the uninterrupted run's adapters and metrics", async () => {
  await withTempDir(async (dir) => {
    await copyDir(STORIES, `${dir}/model`);
    const plan = await loraPlan(dir);
    const got: Partial<Finished> = {};
    const whole = await run(plan, dir, { onFinish: (r) => finished(r, got) });
    const stop = new AbortController();
    const stopped = await run(plan, dir, { signal: stop.signal, onStep: () => stop.abort() });
    assert.equal(stopped.status, "interrupted");
    assert.equal(stopped.step, 1);
    const resumed = await run(plan, dir, { resume: stopped.dir });
    assert.equal(resumed.status, "finished");
    for (
      const file of [
        "adapter/adapter_model.safetensors",
        "adapter/adapter_config.json",
        "checkpoints/final/adapter_model.safetensors",
        "checkpoints/final/optimizer.safetensors",
      ]
    ) {
      assert.deepEqual(
        await Deno.readFile(`${resumed.dir}/${file}`),
        await Deno.readFile(`${whole.dir}/${file}`),
        file,
      );
    }
    const timeless = (r: typeof whole) =>
      r.metrics.map(({ sampleSeconds: _s, stepSeconds: _t, tokensPerSecond: _r, ...m }) => m);
    assert.deepEqual(timeless(resumed), timeless(whole));
    assert.ok(whole.metrics.some((m) => m.loss !== 0), "the steps had a signal");
    // Without saveMerged there is no model/; generate applies adapter/ to its base.
    await assert.rejects(Deno.stat(`${whole.dir}/model`), Deno.errors.NotFound);
    assert.deepEqual(await generated(whole.dir), (got as Finished).greedy);
    assert.deepEqual(await generated(`${whole.dir}/adapter`), (got as Finished).greedy);
  });
});

Deno.test("execute() with LoRA starts from the PEFT adapter the recipe names, and refuses it changed or with dropout", async () => {
  await withTempDir(async (dir) => {
    await copyDir(STORIES, `${dir}/model`);
    // An adapter with B ≠ 0, saved as PEFT saves one.
    const { config } = await loadHfModel(STORIES);
    const lora4 = loraConfig({ rank: 4, alpha: 8, targets: ["q_proj", "v_proj"] });
    const start = initLoraAdapters(config, lora4, new Rng(9), "[out, in]");
    for (const [name, p] of Object.entries(start.params)) {
      if (name.endsWith("lora_B.weight")) p.assign(tf.randomNormal(p.shape, 0, 0.1, "float32", 3));
    }
    await saveLoraAdapter(`${dir}/start`, start, { baseModel: `${dir}/model` });
    const startValues = valuesOf(start.params);
    tf.dispose(Object.values(start.params));

    await writeJsonl(`${dir}/prompts.jsonl`, PROMPTS);
    const recipe = (options: Lora) =>
      hfRecipe("model", "prompts.jsonl", {
        name: "from-adapter",
        policy: hfModel({ path: "model", lora: lora(options) }),
        sampling: { maxNewTokens: 8, temperature: 1 },
        steps: 1,
      });
    const plan = await hfPlan(recipe({ adapter: "start" }), `file://${dir}/`);
    const spec = plan.model.kind === "hfModel" ? plan.model.lora : undefined;
    assert.deepEqual([spec?.rank, spec?.alpha, spec?.targets], [4, 8, ["q_proj", "v_proj"]]);
    const got: Partial<Finished> = {};
    const result = await run(plan, dir, { onFinish: (r) => finished(r, got) });
    const initial = await readLoraAdapter(`${result.dir}/checkpoints/initial`, config);
    for (const [name, values] of Object.entries(startValues)) {
      assert.deepEqual(initial.tensors[name]!.data, values, name);
    }
    assert.equal(Object.keys(got.adapters!).length, 5 * 2 * 2);

    const refusal = async (p: Plan) => {
      const e = await run(p, dir).then(() => assert.fail("expected a refusal"), (e: Error) => e);
      assert.ok(e instanceof RunSetupError, String(e));
      assert.doesNotMatch(e.message, /\n/);
      return e.message;
    };
    // Dropout on the adapters' input is not trained with: compile() refuses it, and a plan edited
    // by hand to have it is refused before anything loads.
    const compiled = await hfPlan(recipe({ rank: 4, targets: ["q_proj"] }), `file://${dir}/`);
    const model = compiled.model as Extract<Plan["model"], { kind: "hfModel" }>;
    const dropout = { ...compiled, model: { ...model, lora: { ...model.lora!, dropout: 0.1 } } };
    assert.equal(
      await refusal(dropout),
      "policy.lora.dropout: expected 0 (dropout on the adapters' input is not implemented), " +
        "got 0.1: set policy.lora.dropout to 0 to train without it",
    );
    // The adapter changed since the plan was made.
    const path = `${dir}/start/adapter_config.json`;
    await Deno.writeTextFile(path, (await Deno.readTextFile(path)) + "\n");
    assert.match(
      await refusal(plan),
      new RegExp(
        "^policy\\.lora\\.adapter: the adapter directory 'start' changed since the plan was " +
          "made \\(sha256 [0-9a-f]{16}…, the plan's [0-9a-f]{16}…\\): plan the recipe again$",
      ),
    );
  });
});

Deno.test("execute() with LoRA and reference rollout tracks KL to the base, the adapters off", async () => {
  await withTempDir(async (dir) => {
    await copyDir(STORIES, `${dir}/model`);
    const plan = await loraPlan(dir, {}, { reference: "rollout", miniBatches: 2 });
    let initialIsBase = false;
    let noReference = false;
    const result = await run(plan, dir, {
      track: { klInitial: true },
      onFinish: (r) => {
        initialIsBase = r.initial === r.params;
        noReference = r.reference === null;
      },
    });
    assert.ok(initialIsBase, "the policy RL started from is the base's own tensors");
    assert.ok(noReference);
    const [first, second] = result.metrics.map((m) => m.klInitial!);
    // At step 1 the adapters are off in effect (B = 0): the sampler's log-probs are the base's,
    // up to the decoder's rounding; by step 2 the adapters have moved the policy.
    assert.ok(Math.abs(first!) < 1e-5, `step 1 KL ${first}`);
    assert.ok(second! > 1e-4, `step 2 KL ${second}`);
  });
});
