// compile() of a recipe whose policy is a Hugging Face checkpoint (hfModel({ path })): the plan's
// model and tokenizer from what resolveModels() read of the directory (stories260K's config.json
// by hand), the printed plan's model, tokenizer and prompt rows, and each cross-field refusal.

import assert from "node:assert/strict";
import { formatPlan, hfModel, planHash, safeCompile, tasks, validateRecipe } from "../../mod.ts";
import type { Recipe } from "../../dsl/schema.ts";
import type { HfModelFacts } from "../../dsl/plan.ts";
import { resolveModels } from "../../runtime/resolve.ts";
import { loadHfTokenizer } from "../../runtime/engine/model/hf_tokenizer.ts";
import { runMain, withTempDir } from "../_helpers.ts";
import {
  copyDir,
  hfPlan,
  hfRecipe,
  QWEN3_TOKENIZER,
  STORIES,
  STORIES_SHAPE,
  STORIES_TOKEN_IDS,
  TINY_QWEN3,
  writeHfModel,
  writeJsonl,
} from "../runtime/_hf.ts";

/** The rows of a printed plan's header, each continuation line joined to its row. */
function rows(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  let last = "";
  for (const line of text.split("\n").slice(1)) {
    if (line.trim() === "") break;
    const m = /^ {2}(\S+) +(.*)$/.exec(line);
    if (m) {
      last = m[1]!;
      out[last] = m[2]!;
    } else out[last] += " " + line.trim();
  }
  return out;
}

/** The facts of `path` for `recipe` (relative paths from `dir`), which must resolve. */
async function factsOf(recipe: Recipe, dir: string): Promise<Record<string, HfModelFacts>> {
  const resolved = await resolveModels(recipe, `file://${dir}/`);
  assert.ok(resolved.ok, JSON.stringify(resolved));
  return resolved.models;
}

/** The issues of compiling `recipe` with `models`, which must fail. */
function issuesOf(recipe: Recipe, models: Record<string, HfModelFacts> | undefined) {
  const result = safeCompile(recipe, models === undefined ? {} : { models });
  assert.ok(!result.ok, "expected the recipe to be refused");
  return result.issues.map(({ path, message }) => ({ path, message }));
}

Deno.test("compile() plans stories260K from its config.json, tokenizer and first prompt", async () => {
  await withTempDir(async (dir) => {
    await writeJsonl(`${dir}/prompts.jsonl`, [
      { prompt: "Once upon a time", answer: "x" },
      { prompt: "Tom", answer: "y" },
    ]);
    const recipe = hfRecipe(STORIES);
    const plan = await hfPlan(recipe, `file://${dir}/`);
    const { sha256 } = plan.model as { sha256: string };
    assert.match(sha256, /^[0-9a-f]{64}$/);
    // stories260K's config.json; the context is 16 prompt tokens + 8 new ones.
    assert.deepEqual(plan.model, {
      kind: "hfModel",
      ...STORIES_SHAPE,
      contextLength: 24,
      params: 260_032,
      path: STORIES,
      modelType: "llama",
      architectures: ["LlamaForCausalLM"],
      dtype: "F32",
      saveDtype: "F32",
      sha256,
      maxPositions: 512,
      attentionBias: false,
      qkNorm: false,
      ropeScaling: null,
      warmStart: null,
    });
    assert.deepEqual(plan.tokenizer, {
      ...STORIES_TOKEN_IDS,
      chatTemplate: false,
      system: null,
      templateArgs: {},
      example: { text: "Once upon a time", tokens: 5 },
    });
    assert.deepEqual(plan.shapes.promptTokens, 16);
    assert.equal(plan.recipe.policy.kind, "hfModel");
    assert.equal((plan.recipe.policy as { contextLength?: number }).contextLength, 24);

    const printed = rows(formatPlan(plan));
    assert.equal(
      printed["model"],
      `'${STORIES}' · llama (LlamaForCausalLM) · F32, saved as F32 · max positions 512 · ` +
        `sha256 ${sha256.slice(0, 16)}…`,
    );
    assert.equal(
      printed["policy"],
      "hfModel · 5 layers · d 64 · 8 heads of width 8, 4 for keys and values · ffn 172 · " +
        "context 24 · tied embeddings · 260,032 parameters",
    );
    assert.equal(
      printed["tokenizer"],
      "tokenizer.json, vocabulary 512 · bos 1 (added) · eos 2 · pad 2 (the eos token) · " +
        "stops at 2, 1 · plain text prompts",
    );
    assert.equal(printed["prompt"], `"Once upon a time" · 5 tokens`);
    assert.match(
      formatPlan(plan),
      /init +llama from '[^']*stories260K' \(F32\): 260,032\s+parameters\n +embedding \[512, 64\]/,
    );

    // The plan records the directory's content: another hash is another plan.
    const copy = await copyDir(STORIES, `${dir}/copy`);
    const samePlan = await hfPlan(hfRecipe(copy), `file://${dir}/`);
    assert.equal((samePlan.model as { sha256: string }).sha256, sha256);
    await Deno.writeTextFile(`${copy}/generation_config.json`, `{"eos_token_id": 2}`);
    const changed = await hfPlan(hfRecipe(copy), `file://${dir}/`);
    assert.notEqual((changed.model as { sha256: string }).sha256, sha256);
    assert.notEqual(planHash(changed), planHash(samePlan));
  });
});

Deno.test("compile() plans a chat model: the rendered prompt, its system prompt and template arguments", async () => {
  await withTempDir(async (dir) => {
    const qwen = await writeHfModel(`${dir}/qwen3`, TINY_QWEN3, QWEN3_TOKENIZER);
    await writeJsonl(`${dir}/prompts.jsonl`, [{ prompt: "What is 2+2?", answer: "4" }]);
    const recipe = hfRecipe("qwen3", "prompts.jsonl", {
      policy: hfModel({
        path: "qwen3",
        chat: { system: "Be brief.", args: { enable_thinking: false } },
        saveDtype: "bfloat16",
      }),
    });
    const plan = await hfPlan(recipe, `file://${dir}/`);
    const text = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is 2+2?" +
      "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n";
    const tok = await loadHfTokenizer(qwen);
    const tokens = tok.encode(text).length;
    assert.equal(plan.tokenizer.kind, "hf");
    assert.deepEqual(
      { ...plan.tokenizer, example: null },
      {
        kind: "hf",
        vocab: 151_669,
        bosId: null,
        eosId: 151_645,
        padId: 151_643,
        padSource: "pad_token",
        stopIds: [151_645],
        addBos: false,
        chatTemplate: true,
        system: "Be brief.",
        templateArgs: { enable_thinking: false },
        example: null,
      },
    );
    assert.deepEqual(plan.tokenizer.kind === "hf" && plan.tokenizer.example, { text, tokens });
    assert.equal(plan.model.kind === "hfModel" && plan.model.saveDtype, "BF16");
    assert.equal(plan.model.kind === "hfModel" && plan.model.qkNorm, true);
    const printed = rows(formatPlan(plan));
    assert.match(
      printed["model"]!,
      /^'qwen3' · qwen3 \(Qwen3ForCausalLM\) · F32, saved as BF16 · /,
    );
    assert.match(printed["model"]!, / · q\/k norms · /);
    assert.equal(
      printed["tokenizer"],
      "tokenizer.json, vocabulary 151669 · bos none · eos 151645 · pad 151643 · " +
        `stops at 151645 · chat template, system prompt, {"enable_thinking":false}`,
    );
    assert.equal(printed["prompt"], `${JSON.stringify(text)} · ${tokens} tokens`);

    // The same recipe as JSON validates to itself.
    const json = JSON.parse(JSON.stringify(recipe));
    const validated = validateRecipe(json);
    assert.ok(validated.ok);
    assert.deepEqual(validated.recipe.policy, recipe.policy);
  });
});

Deno.test("compile() saves a BF16 source as BF16 unless the recipe says otherwise", () => {
  const facts = (dtype: string): Record<string, HfModelFacts> => ({
    m: {
      modelType: "llama",
      architectures: [],
      dtype,
      sha256: "0".repeat(64),
      parameters: 1,
      maxPositions: 64,
      shape: {
        layers: 1,
        dModel: 8,
        heads: 2,
        kvHeads: 2,
        headDim: 4,
        ffnDim: 8,
        vocab: 32,
        tiedEmbeddings: true,
        ropeTheta: 10_000,
        normEps: 1e-5,
      },
      attentionBias: false,
      qkNorm: false,
      ropeScaling: null,
      tokenizer: {
        kind: "hf",
        vocab: 32,
        bosId: 1,
        eosId: 2,
        padId: 2,
        padSource: "eos_token",
        stopIds: [2],
        addBos: true,
        hasChatTemplate: false,
      },
      example: null,
    },
  });
  const saved = (dtype: string, saveDtype?: "source" | "float32" | "float16" | "bfloat16") => {
    const recipe = hfRecipe("m", "p.jsonl", {
      policy: hfModel({ path: "m", ...(saveDtype === undefined ? {} : { saveDtype }) }),
    });
    const result = safeCompile(recipe, { models: facts(dtype) });
    assert.ok(result.ok, JSON.stringify(result));
    return result.plan.model.kind === "hfModel" ? result.plan.model.saveDtype : null;
  };
  assert.equal(saved("BF16"), "BF16");
  assert.equal(saved("F16"), "F16");
  assert.equal(saved("F32"), "F32");
  assert.equal(saved("BF16+F32"), "BF16");
  assert.equal(saved("BF16", "float32"), "F32");
  assert.equal(saved("F32", "bfloat16"), "BF16");
  assert.equal(saved("F32", "float16"), "F16");
  assert.equal(saved("F16", "source"), "F16");
});

Deno.test("compile() refuses an hfModel recipe it cannot plan, naming the field", async () => {
  await withTempDir(async (dir) => {
    await writeJsonl(`${dir}/prompts.jsonl`, [{ prompt: "Once upon a time", answer: "x" }]);
    const recipe = hfRecipe(STORIES);
    const models = await factsOf(recipe, dir);

    // Not resolved: the compiler reads no directory.
    assert.deepEqual(issuesOf(recipe, undefined), [{
      path: "policy.path",
      message: `the model directory '${STORIES}' was not read before compiling`,
    }]);
    assert.deepEqual(issuesOf(recipe, { other: models[STORIES]! }), [{
      path: "policy.path",
      message: `the model directory '${STORIES}' was not read before compiling`,
    }]);

    // A synthetic task is the character tokenizer's.
    const addition = {
      ...recipe,
      data: tasks.addition({ digits: 1, train: 60, eval: 20 }),
    } as Recipe;
    assert.deepEqual(issuesOf(addition, models), [{
      path: "data.kind",
      message: "a Hugging Face policy reads text prompts: expected 'jsonl', got 'addition'",
    }]);

    // More positions than config.json's max_position_embeddings (512).
    const long = hfRecipe(STORIES, "prompts.jsonl", {
      policy: hfModel({ path: STORIES, contextLength: 513 }),
    });
    assert.deepEqual(issuesOf(long, models), [{
      path: "policy.contextLength",
      message: "expected at most config.json's max_position_embeddings (512), got 513",
    }]);
    const many = hfRecipe(STORIES, "prompts.jsonl", { sampling: { maxNewTokens: 500 } });
    assert.deepEqual(issuesOf(many, models), [{
      path: "sampling.maxNewTokens",
      message: "16 prompt tokens + 500 new tokens = 516, more than config.json's " +
        "max_position_embeddings (512)",
    }]);
    const short = hfRecipe(STORIES, "prompts.jsonl", {
      policy: hfModel({ path: STORIES, contextLength: 23 }),
    });
    assert.deepEqual(issuesOf(short, models), [{
      path: "policy.contextLength",
      message: "expected at least 24 (16 prompt tokens + 8 new tokens), got 23",
    }]);

    // A system prompt needs a chat template, which stories260K lacks.
    const system = hfRecipe(STORIES, "prompts.jsonl", {
      policy: hfModel({ path: STORIES, chat: { system: "Be kind." } }),
    });
    assert.deepEqual(issuesOf(system, await factsOf(system, dir)), [{
      path: "policy.chat.system",
      message: `a system prompt needs a chat template, but the tokenizer of '${STORIES}' has none`,
    }]);
  });
});

Deno.test("compile() refuses a tokenizer whose ids do not fit the model's embedding", async () => {
  await withTempDir(async (dir) => {
    // A small random llama whose embedding has 500 rows, with stories260K's 512-id tokenizer.
    const config = {
      architectures: ["LlamaForCausalLM"],
      model_type: "llama",
      vocab_size: 500,
      hidden_size: 8,
      intermediate_size: 16,
      num_hidden_layers: 1,
      num_attention_heads: 2,
      num_key_value_heads: 1,
      max_position_embeddings: 64,
      rms_norm_eps: 1e-5,
      tie_word_embeddings: true,
    };
    await writeHfModel(`${dir}/small`, config, STORIES);
    await writeJsonl(`${dir}/prompts.jsonl`, [{ prompt: "Tom", answer: "x" }]);
    const recipe = hfRecipe("small");
    const models = await factsOf(recipe, dir);
    assert.equal(
      models["small"]!.parameters,
      500 * 8 + (8 * 8 + 2 * 8 * 4 + 8 * 8 + 3 * 8 * 16 + 16) + 8,
    );
    assert.deepEqual(issuesOf(recipe, models), [{
      path: "policy.path",
      message: "the tokenizer of 'small' has 512 ids, but config.json's vocab_size is 500: " +
        "its ids do not fit the embedding",
    }]);

    // The command line: one line naming the recipe and the field, exit 2.
    await Deno.writeTextFile(`${dir}/r.json`, JSON.stringify(recipe));
    const ran = await runMain(["plan", `${dir}/r.json`]);
    assert.equal(ran.code, 2);
    assert.deepEqual(ran.stdout, []);
    assert.equal(ran.stderr.length, 1);
    assert.match(
      ran.stderr[0]!,
      /r\.json: policy\.path: the tokenizer of 'small' has 512 ids, but config\.json's vocab_size is 500/,
    );
  });
});

Deno.test("the command line plans an hfModel recipe, and names a bad directory in one line", async () => {
  await withTempDir(async (dir) => {
    await copyDir(STORIES, `${dir}/stories`);
    await writeJsonl(`${dir}/prompts.jsonl`, [{ prompt: "Once upon a time", answer: "x" }]);
    await Deno.writeTextFile(`${dir}/r.json`, JSON.stringify(hfRecipe("stories")));
    const ran = await runMain(["plan", `${dir}/r.json`]);
    assert.equal(ran.code, 0, ran.stderr.join("\n"));
    const printed = rows(ran.stdout.join("\n"));
    assert.match(printed["model"]!, /^'stories' · llama \(LlamaForCausalLM\) · F32, saved as F32/);
    assert.equal(printed["prompt"], `"Once upon a time" · 5 tokens`);

    const config = JSON.parse(await Deno.readTextFile(`${dir}/stories/config.json`));
    await Deno.writeTextFile(
      `${dir}/stories/config.json`,
      JSON.stringify({ ...config, model_type: "gpt2" }),
    );
    const refused = await runMain(["plan", `${dir}/r.json`]);
    assert.equal(refused.code, 2);
    assert.deepEqual(refused.stderr, [
      `${dir}/r.json: policy.path: ${dir}/stories/config.json: model_type: expected one of ` +
      "llama, mistral, qwen2, qwen3, got 'gpt2'",
    ]);
  });
});
