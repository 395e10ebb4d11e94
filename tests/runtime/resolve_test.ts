// The resolve step before compile() (runtime/resolve.ts): what it reads of a Hugging Face model
// directory (architecture, parameter count, dtype, tokenizer ids, a rendered prompt, a SHA-256),
// checked against hand-computed values and independent references (the tokenizer's own
// encoding, Python's hashlib), and each bad directory refused in one line at policy.path.

import assert from "node:assert/strict";
import { compile, tasks, tinyGpt } from "../../mod.ts";
import type { Recipe } from "../../dsl/schema.ts";
import { modelDir, modelSha256, resolveModels } from "../../runtime/resolve.ts";
import * as runtime from "../../runtime/mod.ts";
import { loadHfTokenizer } from "../../runtime/engine/model/hf_tokenizer.ts";
import { withTempDir } from "../_helpers.ts";
import { PYTHON } from "../_requires.ts";
import { copyDir, hfRecipe, STORIES, STORIES_SHAPE, STORIES_TOKEN_IDS, writeJsonl } from "./_hf.ts";

/** The first issue of resolving `recipe` from `base`, which must fail with exactly one. */
async function refusal(
  recipe: Recipe,
  base: string | URL,
): Promise<{ path: string; message: string }> {
  const resolved = await resolveModels(recipe, base);
  assert.ok(!resolved.ok, "expected a refusal");
  assert.equal(resolved.issues.length, 1);
  const [issue] = resolved.issues;
  assert.doesNotMatch(issue!.message, /\n/, "one line");
  return issue!;
}

/** SHA-256 as the plan documents it, computed by Python: name, NUL, size, NUL, bytes, per file. */
async function pythonSha(dir: string, files: string[]): Promise<string> {
  const script = [
    "import hashlib, os, sys",
    "d = sys.argv[1]; h = hashlib.sha256()",
    "for n in sys.argv[2:]:",
    "    p = os.path.join(d, n)",
    "    if not os.path.exists(p): continue",
    "    b = open(p, 'rb').read(); h.update(f'{n}\\0{len(b)}\\0'.encode()); h.update(b)",
    "print(h.hexdigest())",
  ].join("\n");
  const out = await new Deno.Command(PYTHON, { args: ["-c", script, dir, ...files] }).output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  return new TextDecoder().decode(out.stdout).trim();
}

Deno.test("resolveModels() reads stories260K: llama, 260,032 F32 parameters, its tokenizer and the first prompt", async () => {
  await withTempDir(async (dir) => {
    await writeJsonl(`${dir}/prompts.jsonl`, [
      { prompt: "Once upon a time", answer: "x" },
      { prompt: "Tom had a red ball.", answer: "y" },
    ]);
    const resolved = await resolveModels(hfRecipe(STORIES), `file://${dir}/`);
    assert.ok(resolved.ok);
    assert.deepEqual(Object.keys(resolved.models), [STORIES]);
    const facts = resolved.models[STORIES]!;
    assert.equal(facts.modelType, "llama");
    assert.deepEqual(facts.architectures, ["LlamaForCausalLM"]);
    assert.equal(facts.dtype, "F32");
    // 512×64 embedding (tied) + 5 × (q 64×64 + k, v 64×32 + o 64×64 + 3 × 64×172 + 2 norms of 64)
    // + the final norm of 64.
    assert.equal(512 * 64 + 5 * (4096 + 2 * 2048 + 4096 + 3 * 64 * 172 + 2 * 64) + 64, 260_032);
    assert.equal(facts.parameters, 260_032);
    assert.equal(facts.maxPositions, 512);
    assert.deepEqual(facts.shape, STORIES_SHAPE);
    assert.equal(facts.attentionBias, false);
    assert.equal(facts.qkNorm, false);
    assert.equal(facts.ropeScaling, null);
    // No pad token: the end token pads (as TRL does); a completion ends at </s> and at <s>.
    assert.deepEqual(facts.tokenizer, {
      ...STORIES_TOKEN_IDS,
      hasChatTemplate: false,
    });
    // The first row as the model reads it: the plain text, <s> first (llama2.c's ids).
    const tok = await loadHfTokenizer(STORIES);
    const ids = tok.encode("Once upon a time", { addSpecialTokens: true });
    assert.deepEqual(ids, [1, 403, 407, 261, 378]);
    assert.deepEqual(facts.example, { text: "Once upon a time", tokens: ids.length });
    assert.match(facts.sha256, /^[0-9a-f]{64}$/);
    // A program compiles an hfModel recipe through the runtime's entry, as the CLI does.
    assert.equal(runtime.resolveModels, resolveModels);
    assert.equal(runtime.modelSha256, modelSha256);
  });
});

Deno.test("resolveModels() renders the first row through the recipe's template or without JSON Lines data has none", async () => {
  await withTempDir(async (dir) => {
    await writeJsonl(`${dir}/story.jsonl`, [{ start: "Lily  saw a cat", answer: "x" }]);
    const recipe = {
      ...hfRecipe(STORIES, "story.jsonl"),
      data: {
        kind: "jsonl",
        path: "story.jsonl",
        prompt: "start",
        template: "{prompt}. She",
        maxPromptTokens: 16,
      },
    } as Recipe;
    const resolved = await resolveModels(recipe, `file://${dir}/`);
    assert.ok(resolved.ok);
    const tok = await loadHfTokenizer(STORIES);
    const text = "Lily  saw a cat. She";
    assert.deepEqual(resolved.models[STORIES]!.example, {
      text,
      tokens: tok.encode(text, { addSpecialTokens: true }).length,
    });
    // A recipe without JSON Lines data has no example; a tinyGpt recipe resolves to nothing.
    const addition = { ...hfRecipe(STORIES), data: tasks.addition({ digits: 1 }) } as Recipe;
    const plain = await resolveModels(addition, `file://${dir}/`);
    assert.ok(plain.ok);
    assert.equal(plain.models[STORIES]!.example, null);
    const tiny = await resolveModels({ ...hfRecipe(STORIES), policy: tinyGpt() }, `file://${dir}/`);
    assert.deepEqual(tiny, { ok: true, models: {} });
  });
});

Deno.test("resolveModels() reads the first row whole when a long file's read ends mid-character, and says why a bad one cannot be shown", async () => {
  await withTempDir(async (dir) => {
    // The first MiB read ends inside a "é" (2 bytes) of the second, long row.
    const first = JSON.stringify({ prompt: "Lily saw a cat", answer: "x" });
    const pad = 1_048_576 - (first.length + 1) - '{"prompt":"'.length - 1;
    const second = `{"prompt":"${"a".repeat(pad)}${"é".repeat(8)}","answer":"y"}`;
    await Deno.writeTextFile(`${dir}/long.jsonl`, `${first}\n${second}\n`);
    const long = await resolveModels(hfRecipe(STORIES, "long.jsonl"), `file://${dir}/`);
    assert.ok(long.ok);
    assert.equal(long.models[STORIES]!.example?.text, "Lily saw a cat");
    assert.equal(long.models[STORIES]!.exampleError, undefined);
    // A first row without a prompt the model can read: no example, and the reason, which the
    // plan shows as a warning at data.path.
    await writeJsonl(`${dir}/bad.jsonl`, [{
      prompt: [{ role: "user", content: "hi" }],
      answer: "x",
    }]);
    const bad = await resolveModels(hfRecipe(STORIES, "bad.jsonl"), `file://${dir}/`);
    assert.ok(bad.ok);
    assert.equal(bad.models[STORIES]!.example, null);
    assert.match(
      bad.models[STORIES]!.exampleError!,
      /needs a chat template, but the tokenizer has none/,
    );
    const plan = compile(hfRecipe(STORIES, "bad.jsonl"), { models: bad.models });
    const warning = plan.warnings.find((w) => w.path === "data.path");
    assert.match(warning!.message, /^cannot show the first row as the model will read it: /);
  });
});

Deno.test("resolveModels() takes the path relative to the recipe, and modelDir() refuses a remote one", async () => {
  await withTempDir(async (dir) => {
    await copyDir(STORIES, `${dir}/models/tiny`);
    await Deno.mkdir(`${dir}/recipes`);
    await writeJsonl(`${dir}/recipes/prompts.jsonl`, [{ prompt: "Tom", answer: "x" }]);
    const resolved = await resolveModels(
      hfRecipe("../models/tiny"),
      `file://${dir}/recipes/r.ts`,
    );
    assert.ok(resolved.ok);
    assert.deepEqual(Object.keys(resolved.models), ["../models/tiny"]);
    assert.equal(resolved.models["../models/tiny"]!.parameters, 260_032);
    assert.equal(modelDir("../models/tiny/", `file://${dir}/recipes/r.ts`), `${dir}/models/tiny`);
    // A directory whose name a URL escapes (a space, a non-ASCII letter) is found all the same.
    await copyDir(STORIES, `${dir}/my modèles/tiny`);
    const escaped = await resolveModels(
      hfRecipe("../my modèles/tiny"),
      `file://${dir}/recipes/r.ts`,
    );
    assert.ok(escaped.ok, JSON.stringify(escaped));
    assert.equal(escaped.models["../my modèles/tiny"]!.sha256, await modelSha256(STORIES));
    assert.equal(
      modelDir("../my modèles/tiny", new URL(`file://${dir}/recipes/r.ts`)),
      `${dir}/my modèles/tiny`,
    );
    assert.throws(
      () => modelDir("https://example.com/m", "file:///r.ts"),
      /^Error: expected a local directory, got 'https:\/\/example.com\/m'/,
    );
  });
});

Deno.test("resolveModels() hashes the directory's files as documented, and a changed file changes the hash", async () => {
  await withTempDir(async (dir) => {
    const copy = await copyDir(STORIES, `${dir}/stories`);
    await writeJsonl(`${dir}/prompts.jsonl`, [{ prompt: "Tom", answer: "x" }]);
    const shaOf = async () => {
      const resolved = await resolveModels(hfRecipe(copy), `file://${dir}/`);
      assert.ok(resolved.ok);
      return resolved.models[copy]!.sha256;
    };
    const original = await shaOf();
    // Where the directory lies is no part of it: the shipped one hashes the same.
    assert.equal(await modelSha256(STORIES), original);
    // The files in their documented order; README.md is not among them.
    const files = [
      "config.json",
      "generation_config.json",
      "tokenizer.json",
      "tokenizer_config.json",
      "special_tokens_map.json",
      "chat_template.jinja",
      "model.safetensors.index.json",
      "model.safetensors",
    ];
    assert.equal(original, await pythonSha(copy, files));
    await Deno.writeTextFile(`${copy}/README.md`, "changed");
    assert.equal(await shaOf(), original);

    // One weight's byte, the tokenizer config, a new generation config: each a new hash.
    const weights = await Deno.readFile(`${copy}/model.safetensors`);
    weights[weights.length - 1]! ^= 1;
    await Deno.writeFile(`${copy}/model.safetensors`, weights);
    const changedWeights = await shaOf();
    assert.notEqual(changedWeights, original);
    assert.equal(changedWeights, await pythonSha(copy, files));
    const config = await Deno.readTextFile(`${copy}/tokenizer_config.json`);
    await Deno.writeTextFile(`${copy}/tokenizer_config.json`, config + " ");
    const changedConfig = await shaOf();
    assert.notEqual(changedConfig, changedWeights);
    await Deno.writeTextFile(`${copy}/generation_config.json`, `{"eos_token_id": 2}`);
    assert.notEqual(await shaOf(), changedConfig);
    assert.equal(await shaOf(), await pythonSha(copy, files));
  });
});

Deno.test("resolveModels() refuses each bad model directory in one line at policy.path", async () => {
  await withTempDir(async (dir) => {
    await writeJsonl(`${dir}/prompts.jsonl`, [{ prompt: "Tom", answer: "x" }]);
    const base = `file://${dir}/`;
    const config = JSON.parse(await Deno.readTextFile(`${STORIES}/config.json`));
    let n = 0;
    /** A copy of stories260K with `change` made to its config.json; its refusal. */
    const withConfig = async (change: Record<string, unknown>) => {
      const copy = await copyDir(STORIES, `${dir}/m${n++}`);
      await Deno.writeTextFile(`${copy}/config.json`, JSON.stringify({ ...config, ...change }));
      return await refusal(hfRecipe(copy), base);
    };

    const empty = `${dir}/empty`;
    await Deno.mkdir(empty);
    assert.deepEqual(await refusal(hfRecipe(empty), base), {
      path: "policy.path",
      message: `Cannot load the Hugging Face model '${empty}' as it has no config.json`,
    });
    assert.deepEqual(await refusal(hfRecipe("missing"), base), {
      path: "policy.path",
      message: `Cannot load the Hugging Face model '${dir}/missing' as it has no config.json`,
    });

    const issue = await withConfig({ model_type: "gpt2" });
    assert.equal(issue.path, "policy.path");
    assert.match(
      issue.message,
      /\/config\.json: model_type: expected one of llama, mistral, qwen2, qwen3, got 'gpt2'$/,
    );
    assert.match(
      (await withConfig({ num_local_experts: 8 })).message,
      /config\.json: num_local_experts: expected no experts \(a dense model\), got 8$/,
    );
    assert.match(
      (await withConfig({ model_type: "mistral", sliding_window: 256 })).message,
      /config\.json: sliding_window: expected null or at least max_position_embeddings \(512\), got 256$/,
    );
    assert.match(
      (await withConfig({ model_type: "qwen2", use_sliding_window: true })).message,
      /config\.json: use_sliding_window: expected false, got true$/,
    );
    assert.match(
      (await withConfig({ rope_scaling: { rope_type: "yarn", factor: 4 } })).message,
      /config\.json: rope_scaling\.rope_type: expected 'llama3' \(or no rope scaling\), got 'yarn'$/,
    );
    assert.match(
      (await withConfig({ rope_scaling: { type: "linear", factor: 2 } })).message,
      /config\.json: rope_scaling\.type: expected 'llama3' \(or no rope scaling\), got 'linear'$/,
    );

    // A safetensors file cut short: its header promises more bytes than the file holds.
    const cut = await copyDir(STORIES, `${dir}/cut`);
    const weights = await Deno.readFile(`${cut}/model.safetensors`);
    await Deno.writeFile(`${cut}/model.safetensors`, weights.subarray(0, weights.length - 100));
    const truncated = await refusal(hfRecipe(cut), base);
    assert.equal(truncated.path, "policy.path");
    // 260,032 float32 parameters are 1,040,128 bytes of data.
    assert.equal(
      truncated.message,
      `Cannot read safetensors '${cut}/model.safetensors' as its header declares ` +
        `${weights.length} bytes (8 + header ${weights.length - 8 - 1_040_128} + data 1040128), ` +
        `but the file is ${weights.length - 100}`,
    );

    // No weights at all, and no tokenizer.
    const bare = await copyDir(STORIES, `${dir}/bare`);
    await Deno.remove(`${bare}/model.safetensors`);
    assert.equal(
      (await refusal(hfRecipe(bare), base)).message,
      `Cannot load the Hugging Face model '${bare}' as it has neither model.safetensors nor ` +
        "model.safetensors.index.json",
    );
    const untokenized = await copyDir(STORIES, `${dir}/untokenized`);
    await Deno.remove(`${untokenized}/tokenizer.json`);
    assert.equal(
      (await refusal(hfRecipe(untokenized), base)).message,
      `Cannot load tokenizer as '${untokenized}/tokenizer.json' does not exist`,
    );
  });
});
