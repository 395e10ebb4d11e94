// The recipe fields of LoRA, micro-batches and activation checkpointing as compile() resolves
// them (plan.model.lora, plan.update), with SmolLM2-135M's and Qwen2.5-0.5B's shapes read as
// resolveModels() would read them (tests/dsl/_real_models.ts), and the memory they save.

import assert from "node:assert/strict";
import {
  customObjective,
  formatIssue,
  formatPlan,
  grpo,
  hfModel,
  lora,
  onlineDpo,
  safeCompile,
} from "../../mod.ts";
import type { Recipe } from "../../dsl/schema.ts";
import type { HfModelFacts, Plan } from "../../dsl/plan.ts";
import { mergedBytes, processPeakBytes, updatePeakBytes } from "../../dsl/memory.ts";
import { benchConfig } from "../../bench/_configs.ts";
import { ADAPTER, models, QWEN, realRecipe, SMOLLM } from "./_real_models.ts";

/** The plan of `recipe` with `facts` at "./model", which must compile. */
function planOf(recipe: Recipe, facts: HfModelFacts = SMOLLM): Plan {
  const result = safeCompile(recipe, { models: models(facts) });
  assert.ok(result.ok, JSON.stringify(!result.ok && result.issues.map(formatIssue)));
  return result.plan;
}

/** The issues of compiling `recipe` with `facts`, which must fail: [path, message]. */
function issuesOf(recipe: Recipe, facts: HfModelFacts = SMOLLM): [string, string][] {
  const result = safeCompile(recipe, { models: models(facts) });
  assert.ok(!result.ok, "expected the recipe to be refused");
  return result.issues.map((i) => [i.path, i.message]);
}

/** realRecipe on the cpu backend (no memory limit known), with `policy.lora`. */
function withLora(options: Parameters<typeof lora>[0], changes: Partial<Recipe> = {}): Recipe {
  return realRecipe({
    policy: hfModel({ path: "./model", lora: lora(options) }),
    backend: "cpu",
    ...changes,
  });
}

const QKVO = ["q_proj", "k_proj", "v_proj", "o_proj"] as const;

Deno.test("compile() counts LoRA's parameters by hand: A [in, r] and B [r, out] of each target", () => {
  // SmolLM2-135M, rank 16 on q, k, v, o: q and o 16·(576 + 576), k and v 16·(576 + 3·64) a layer.
  const smol = planOf(withLora({ rank: 16, alpha: 32, targets: [...QKVO] })).model;
  assert.equal(smol.kind === "hfModel" && smol.lora?.params, 30 * (2 * 18_432 + 2 * 12_288));
  assert.equal(smol.kind === "hfModel" && smol.lora?.params, 1_843_200);
  // Qwen2.5-0.5B, the same: 2,162,688, PEFT's count (bench/RESULTS.md).
  const qwen = planOf(withLora({ rank: 16, alpha: 32, targets: [...QKVO] }), QWEN).model;
  assert.equal(qwen.kind === "hfModel" && qwen.lora?.params, 24 * (2 * 28_672 + 2 * 16_384));
  assert.equal(qwen.kind === "hfModel" && qwen.lora?.params, 2_162_688);
  // The feed-forward's: gate and up 4·(576 + 1536), down 4·(1536 + 576), in LORA_TARGETS order.
  const mlp = planOf(withLora({ rank: 4, targets: ["down_proj", "gate_proj", "up_proj"] })).model;
  assert.deepEqual(mlp.kind === "hfModel" && mlp.lora?.targets, [
    "gate_proj",
    "up_proj",
    "down_proj",
  ]);
  assert.equal(mlp.kind === "hfModel" && mlp.lora?.params, 30 * 3 * 4 * 2112);
});

Deno.test("compile() resolves lora() to PEFT's defaults: rank 8, alpha = rank, q_proj and v_proj", () => {
  const plan = planOf(withLora({}));
  assert.deepEqual(plan.model.kind === "hfModel" && plan.model.lora, {
    rank: 8,
    alpha: 8,
    scale: 1,
    dropout: 0,
    targets: ["q_proj", "v_proj"],
    params: 30 * 8 * ((576 + 576) + (576 + 192)),
    adapter: null,
    saveMerged: false,
  });
  const scaled = planOf(withLora({ rank: 4, alpha: 16, saveMerged: true })).model;
  assert.equal(scaled.kind === "hfModel" && scaled.lora?.scale, 4);
  assert.equal(scaled.kind === "hfModel" && scaled.lora?.alpha, 16);
  assert.equal(scaled.kind === "hfModel" && scaled.lora?.saveMerged, true);
  // Dropout on the adapters' input is not implemented: refused at plan time, not trained without.
  assert.deepEqual(issuesOf(withLora({ rank: 4, dropout: 0.1 }), SMOLLM), [[
    "policy.lora.dropout",
    "expected a dropout of 0 (dropout on the adapters' input is not implemented), got 0.1",
  ]]);
});

Deno.test("compile() takes an adapter's rank, alpha, dropout and targets, and refuses a mismatch", () => {
  const facts = { ...SMOLLM, adapter: ADAPTER };
  // The adapter was trained with PEFT's lora_dropout 0.05, which giftwrap does not implement: the
  // recipe must say to train on without it.
  assert.deepEqual(issuesOf(withLora({ adapter: "./adapter" }), facts), [[
    "policy.lora.adapter",
    "expected a dropout of 0 (dropout on the adapters' input is not implemented), got 0.05 " +
    "(the adapter's lora_dropout)",
  ]]);
  const plan = planOf(withLora({ adapter: "./adapter", dropout: 0 }), facts);
  assert.deepEqual(plan.model.kind === "hfModel" && plan.model.lora, {
    rank: 16,
    alpha: 32,
    scale: 2,
    dropout: 0,
    targets: ["q_proj", "v_proj"],
    params: 30 * 16 * ((576 + 576) + (576 + 192)),
    adapter: { path: "./adapter", sha256: "1".repeat(64) },
    saveMerged: false,
  });
  // The same settings, written out (targets in any order), agree.
  planOf(
    withLora({
      adapter: "./adapter",
      rank: 16,
      alpha: 32,
      targets: ["q_proj", "v_proj"],
      dropout: 0,
    }),
    facts,
  );
  assert.deepEqual(issuesOf(withLora({ adapter: "./adapter", rank: 8, dropout: 0 }), facts), [[
    "policy.lora.rank",
    "the adapter './adapter' has rank 16, but the recipe gives 8",
  ]]);
  assert.deepEqual(
    issuesOf(withLora({ adapter: "./adapter", targets: ["q_proj"], dropout: 0 }), facts),
    [[
      "policy.lora.targets",
      `the adapter './adapter' has targets ["q_proj","v_proj"], but the recipe gives ["q_proj"]`,
    ]],
  );
  // An adapter on a module giftwrap does not adapt is refused, naming the adapter.
  const embedding = { ...SMOLLM, adapter: { ...ADAPTER, targets: ["q_proj", "embed_tokens"] } };
  assert.deepEqual(issuesOf(withLora({ adapter: "./adapter", dropout: 0 }), embedding), [[
    "policy.lora.adapter",
    "expected one of q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj, got " +
    "'embed_tokens'",
  ]]);
  // An adapter the runtime did not read.
  assert.deepEqual(issuesOf(withLora({ adapter: "./adapter" })), [[
    "policy.lora.adapter",
    "the adapter directory './adapter' was not read before compiling",
  ]]);
});

Deno.test("compile() refuses a LoRA target that is not a projection", () => {
  const recipe = withLora({ targets: ["q_proj", "lm_head" as "q_proj"] });
  const result = safeCompile(recipe, { models: models(SMOLLM) });
  assert.ok(!result.ok);
  assert.equal(result.issues[0]!.path, "policy.lora.targets[1]");
  assert.match(result.issues[0]!.message, /lm_head/);
});

Deno.test("compile() splits a mini-batch into micro-batches of whole groups, or names the divisors", () => {
  // 4 prompts in one mini-batch: 4 groups of 4 rows.
  const plan = planOf(realRecipe({ backend: "cpu", miniBatches: 1, microBatches: 2 }));
  assert.deepEqual(plan.update, {
    microBatches: 2,
    microBatchRows: 8,
    gradientCheckpointing: false,
  });
  const checkpointed = planOf(realRecipe({ backend: "cpu", gradientCheckpointing: true }));
  // GIFT's default of 2 mini-batches: 8 rows each, one micro-batch.
  assert.deepEqual(checkpointed.update, {
    microBatches: 1,
    microBatchRows: 8,
    gradientCheckpointing: true,
  });
  const result = safeCompile(realRecipe({ backend: "cpu", miniBatches: 1, microBatches: 3 }), {
    models: models(SMOLLM),
  });
  assert.deepEqual(!result.ok && result.issues.map(formatIssue), [
    "microBatches: a micro-batch holds whole groups: expected a divisor of the 4 groups of a " +
    "mini-batch, got 3; fix: use one of 1, 2, 4",
  ]);
});

Deno.test("compile() refuses micro-batches for DPO pairs and custom objectives", () => {
  const dpo = realRecipe({
    backend: "cpu",
    objective: onlineDpo(),
    reference: "initial",
    microBatches: 2,
  });
  assert.deepEqual(issuesOf(dpo), [[
    "microBatches",
    "micro-batches need a loss averaged over rows or tokens: expected 1 for 'pair-mean' " +
    "aggregation, got 2",
  ]]);
  const custom = realRecipe({
    backend: "cpu",
    objective: customObjective("./loss.ts"),
    reference: "initial",
    microBatches: 2,
  });
  assert.deepEqual(issuesOf(custom), [[
    "microBatches",
    "micro-batches need a loss averaged over rows or tokens: expected 1 for a custom " +
    "objective, got 2",
  ]]);
  // One micro-batch is the plain update: allowed.
  assert.equal(planOf({ ...dpo, microBatches: 1 }).update?.microBatches, 1);
});

Deno.test("compile() leaves model.lora and update out of a plan whose recipe sets neither", () => {
  const plan = planOf(realRecipe({ backend: "cpu" }));
  assert.equal("lora" in plan.model, false);
  assert.equal("update" in plan, false);
  assert.equal("lora" in planOf(realRecipe({ backend: "cpu", microBatches: 1 })).model, false);
  assert.equal("update" in planOf(withLora({})), false);
});

const GiB = 2 ** 30;

Deno.test("compile() estimates LoRA's memory: the adapters train, the base is frozen and shared", () => {
  const qkvo = { rank: 16, alpha: 32, targets: [...QKVO] };
  const adapters = 2_162_688;
  const base = 494_032_768;
  const initial = planOf(withLora(qkvo, { reference: "initial" }), QWEN).budget.perStep.peakBytes;
  // The base's weights and the adapters', float32; gradients and AdamW's moments of the adapters
  // alone; with reference 'initial' the base with the adapters off: no copy.
  assert.equal(initial.weights, 4 * (base + adapters));
  assert.equal(initial.weights, 1_984_781_824);
  assert.equal(initial.optimizer, 3 * 4 * adapters);
  assert.equal(initial.reference, 0);
  // A reference from a checkpoint is a copy of the base.
  const checkpoint = planOf(withLora(qkvo, { reference: { checkpoint: "./ref" } }), QWEN);
  assert.equal(checkpoint.budget.perStep.peakBytes.reference, 4 * base);
  // Full fine-tuning: every parameter's gradient and moments, and a copy for 'initial'.
  const full = planOf(realRecipe({ backend: "cpu", reference: "initial" }), QWEN);
  assert.deepEqual(
    [full.budget.perStep.peakBytes.optimizer, full.budget.perStep.peakBytes.reference],
    [12 * base, 4 * base],
  );
});

Deno.test("compile() estimates checkpointing and micro-batches by hand: block inputs, one block, C positions of logits", () => {
  // SmolLM2-135M, 4 micro-batches of one group (4 rows) of 64 + 128 tokens, as the bench runs it.
  const plan = planOf(
    realRecipe({ backend: "cpu", miniBatches: 1, microBatches: 4, gradientCheckpointing: true }),
  );
  const m = plan.budget.perStep.peakBytes;
  const perToken = 10 * 576 + 4 * 1536 + 2 * 9 * 192; // one block's values, kept
  const block = 2 * 4 * (4 * 192) * perToken; // and as much again in its backward pass
  const inputs = 4 * 31 * (4 * 192) * 576; // the 30 blocks' inputs and the last one's output
  // [4, 128, V]: the logits and twice more in the backward pass
  const logits = 4 * 3 * (4 * 128) * 49_152;
  assert.deepEqual([block, inputs, logits], [94_371_840, 54_853_632, 301_989_888]);
  assert.equal(m.activations, block + inputs + logits);
  // With micro-batches, the gradients' running sum: a fourth copy of the parameters.
  assert.equal(m.optimizer, 4 * 4 * 134_515_008);
  assert.equal(m.total, m.weights + m.optimizer + m.activations);
  // Without either: every block of the 16 rows, and their logits.
  const plain = planOf(realRecipe({ backend: "cpu", miniBatches: 1 })).budget.perStep.peakBytes;
  assert.equal(
    plain.activations,
    30 * 2 * 4 * (16 * 192) * perToken + 4 * 3 * (16 * 128) * 49_152,
  );
  assert.equal(plain.optimizer, 3 * 4 * 134_515_008);
  // Qwen2.5-0.5B with LoRA on q, k, v, o: each adapted projection keeps x·A and its update.
  const qwen = planOf(
    withLora({ rank: 16, alpha: 32, targets: [...QKVO] }, {
      miniBatches: 1,
      microBatches: 4,
      gradientCheckpointing: true,
    }),
    QWEN,
  ).budget.perStep.peakBytes;
  const adapted = 10 * 896 + 4 * 4864 + 2 * 14 * 192 + (16 + 896) * 2 + (16 + 128) * 2;
  assert.equal(
    qwen.activations,
    2 * 4 * 768 * adapted + 4 * 25 * 768 * 896 + 4 * 3 * 512 * 151_936,
  );
  assert.equal(qwen.activations, 1_222_901_760);
});

/** GRPO without a KL term on "./model": no reference, no π_old pass, 16 rows per update. */
const PLAIN = realRecipe({ objective: grpo({ beta: 0 }), reference: "none" });

Deno.test("compile() refuses SmolLM2-135M's full fine-tuning on wasm, with the changes that fit", () => {
  const result = safeCompile(PLAIN, { models: models(SMOLLM) });
  assert.deepEqual(!result.ok && result.issues.map(formatIssue), [
    "miniBatches: the update's estimated peak of 13.7 GiB (16 rows of 192 tokens) does not fit " +
    "wasm's 4 GiB heap once a run's memory fragments (up to 1.3× the estimate); fix: set " +
    "gradientCheckpointing: true and microBatches to 4 (4 rows at a time) (still over half: it " +
    "may run out), add lora() to the policy and set gradientCheckpointing: true and " +
    "microBatches to 2 (8 rows at a time), shorten sequences of 192 tokens with " +
    "data.maxPromptTokens (64) or sampling.maxNewTokens (128), or use backend 'cpu' (no heap " +
    "limit, slower)",
  ]);
  // Each change compiles: full fine-tuning with a warning, LoRA's update under half the heap.
  const full = planOf({ ...PLAIN, gradientCheckpointing: true, microBatches: 4 });
  assert.equal(full.budget.perStep.peakBytes.total * 1.3 <= 4 * GiB, true);
  assert.ok(full.budget.perStep.peakBytes.total > 2 * GiB);
  // Over half the heap: the update, and sampling and evaluation beside the optimiser's state.
  assert.deepEqual(full.warnings.map((w) => w.path), ["eval.limit", "group", "miniBatches"]);
  const adapted = planOf({
    ...PLAIN,
    policy: hfModel({ path: "./model", lora: lora() }),
    gradientCheckpointing: true,
    microBatches: 2,
  });
  assert.ok(adapted.budget.perStep.peakBytes.total <= 2 * GiB);
  assert.deepEqual(adapted.warnings, []);
});

Deno.test("compile() refuses Qwen2.5-0.5B's full fine-tuning on wasm, with LoRA as the fix", () => {
  const result = safeCompile(PLAIN, { models: models(QWEN) });
  assert.deepEqual(!result.ok && result.issues.map(formatIssue), [
    "miniBatches: the update's estimated peak of 29.4 GiB (16 rows of 192 tokens) does not fit " +
    "wasm's 4 GiB heap once a run's memory fragments (up to 1.3× the estimate); fix: add lora() " +
    "to the policy and set gradientCheckpointing: true and microBatches to 4 (4 rows at a time) " +
    "(still over half: it may run out), shorten sequences of 192 tokens with " +
    "data.maxPromptTokens (64) or sampling.maxNewTokens (128), or use backend 'cpu' (no heap " +
    "limit, slower)",
  ]);
  const fixed = planOf({
    ...PLAIN,
    policy: hfModel({ path: "./model", lora: lora() }),
    gradientCheckpointing: true,
    microBatches: 4,
  }, QWEN);
  assert.ok(fixed.budget.perStep.peakBytes.total * 1.3 <= 4 * GiB);
  // On a machine of 24 GiB, cpu holds full fine-tuning with checkpointing, under half: by hand,
  // 16 · 494,032,768 bytes of weights, gradients and moments, one block of 16 rows, the blocks'
  // inputs and the logits.
  const cpu = safeCompile({ ...PLAIN, backend: "cpu" }, {
    models: models(QWEN),
    machineMemory: 24 * GiB,
  });
  assert.deepEqual(!cpu.ok && cpu.issues.map((i) => i.hint), [
    "set gradientCheckpointing: true, or shorten sequences of 192 tokens with " +
    "data.maxPromptTokens (64) or sampling.maxNewTokens (128)",
  ]);
  const checkpointed = planOf({ ...PLAIN, backend: "cpu", gradientCheckpointing: true }, QWEN);
  const perToken = 10 * 896 + 4 * 4864 + 2 * 14 * 192;
  const update = 16 * 494_032_768 + 2 * 4 * 3072 * perToken + 4 * 25 * 3072 * 896 +
    4 * 3 * 2048 * 151_936;
  assert.equal(checkpointed.budget.perStep.peakBytes.total, update);
  assert.ok(update <= 12 * GiB);
});

Deno.test("formatPlan() prints the adapters, the update's micro-batches and checkpointing, and their memory", () => {
  const plan = planOf(
    withLora({ rank: 16, alpha: 32, targets: [...QKVO] }, {
      reference: "initial",
      miniBatches: 1,
      microBatches: 4,
      gradientCheckpointing: true,
    }),
    QWEN,
  );
  const text = formatPlan(plan).replace(/\s+/g, " ");
  assert.ok(
    text.includes(
      "lora rank 16, alpha 32 (scale 2) · q_proj, k_proj, v_proj, o_proj · 2,162,688 trained of " +
        "496,195,456 parameters (0.436%); the base is frozen · starts at B = 0 (the base model) " +
        "· saves the adapter",
    ),
    text,
  );
  assert.ok(text.includes("reference initial: the base model with the adapters off (no copy)"));
  assert.ok(
    text.includes(
      "each on 16 rows (4 groups) · 4 micro-batches of 4 rows (1 group), gradients summed · " +
        "activation checkpointing (each block recomputed in the backward pass)",
    ),
    text,
  );
  // 1,984,781,824 bytes of weights, 4 · 4 · 2,162,688 of the adapters' gradients, their sum and
  // AdamW's moments, and the pass's 1,222,901,760 (tested by hand above).
  assert.ok(
    text.includes(
      "peak tensors ≈ 3.02 GiB (weights 1.85 GiB, the adapters' gradients and AdamW, with the " +
        "micro-batches' gradient sum 33 MiB, activations 1.14 GiB)",
    ),
    text,
  );
  assert.ok(
    text.includes(
      "update pass 1.14 GiB over 4 rows (one block recomputed 210 MiB, block inputs 65.6 MiB, " +
        "log-softmax over 128 positions 890 MiB)",
    ),
    text,
  );
  // An adapter to start from, and the merged weights saved.
  const from = planOf(withLora({ adapter: "./adapter", saveMerged: true, dropout: 0 }), {
    ...SMOLLM,
    adapter: ADAPTER,
  });
  const fromText = formatPlan(from).replace(/\s+/g, " ");
  assert.match(
    fromText,
    /lora rank 16, alpha 32 \(scale 2\) · q_proj, v_proj · .* · starts from the adapter '\.\/adapter' \(sha256 1111111111111111…\) · saves the adapter and the merged weights/,
  );
});

Deno.test("the bench's estimate of the real-size configurations is the plan's of the same recipe", () => {
  // The bench's worker: one update over 16 rows in micro-batches of one group, checkpointed, no
  // reference copy; the recipe that runs the same: one mini-batch, reference 'rollout'.
  const same = { miniBatches: 1, microBatches: 4, gradientCheckpointing: true };
  const smol = benchConfig("smollm-135m").estimate!;
  const smolPlan = planOf(realRecipe(same));
  assert.equal(smol.model.params, 134_515_008);
  assert.equal(updatePeakBytes(smol).total, smolPlan.budget.perStep.peakBytes.total);
  const qwen = benchConfig("qwen-0.5b-lora").estimate!;
  const qwenPlan = planOf(
    withLora({ rank: 16, alpha: 32, targets: [...QKVO] }, { ...same, backend: "wasm" }),
    QWEN,
  );
  assert.deepEqual([qwen.model.params, qwen.lora?.params], [494_032_768, 2_162_688]);
  assert.equal(updatePeakBytes(qwen).total, qwenPlan.budget.perStep.peakBytes.total);
  // Sampling runs on q, k, v and o merged: 24 layers of 896² twice and 896·128 twice.
  const merged = 24 * (2 * 896 * 896 + 2 * 896 * 128);
  assert.equal(mergedBytes(qwen), 4 * merged);
  // The process's peak on wasm: the heap at the larger of the update and sampling's tensors (the
  // base and adapters, AdamW's state of the adapters, the merged projections), and OpenBLAS's
  // decoder's own memory beside it.
  const peak = processPeakBytes(qwen, "wasm");
  assert.equal(peak.update, qwenPlan.budget.perStep.peakBytes.total);
  const tensors = 4 * (494_032_768 + 2_162_688) + 12 * 2_162_688 + 4 * merged;
  assert.equal(peak.decoder, peak.sample - tensors);
  assert.ok(peak.decoder > 0);
  assert.equal(peak.total, Math.max(peak.update, tensors) + peak.decoder);
  // On cpu the decoder's memory is the process's like any other: the larger stage.
  const cpu = processPeakBytes(qwen, "cpu");
  assert.deepEqual([cpu.decoder, cpu.total], [0, Math.max(cpu.update, cpu.sample)]);
});
