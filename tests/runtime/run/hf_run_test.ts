// A run whose policy is a Hugging Face checkpoint (hfModel({ path })), end to end on stories260K:
// the run directory's model/ is a Hugging Face directory of the source's architecture, its
// config and tokenizer files, whose weights are the final checkpoint's (in the dtype asked for);
// `generate` reads it; a stopped run resumes to the uninterrupted run's weights, and a resume
// after the model directory changed is refused in one line naming policy.path.

import assert from "node:assert/strict";
import { tf } from "../../../runtime/engine/backend.ts";
import type { LinearLayout } from "../../../runtime/engine/kernels/types.ts";
import { loadHfModel } from "../../../runtime/engine/model/hf.ts";
import { readSafetensorsHeader } from "../../../runtime/engine/model/safetensors.ts";
import { loadHfTokenizer } from "../../../runtime/engine/model/hf_tokenizer.ts";
import { sampleCompletions } from "../../../runtime/rl/sample.ts";
import { Rng } from "../../../runtime/engine/random.ts";
import { execute, type ExecuteOptions, RunSetupError } from "../../../runtime/run/execute.ts";
import { hfModel } from "../../../mod.ts";
import type { Plan } from "../../../dsl/plan.ts";
import { runMain, withTempDir } from "../../_helpers.ts";
import { valuesOf } from "../_run.ts";
import {
  copyDir,
  hfPlan,
  hfRecipe,
  QWEN3_TOKENIZER,
  STORIES,
  TINY_QWEN3,
  writeHfModel,
  writeJsonl,
} from "../_hf.ts";

/** Story openings, one a line, for a run of 2 prompts × 4 completions of at most 16 tokens. */
const PROMPTS = [
  { prompt: "Once upon a time", answer: "x" },
  { prompt: "Tom had a red ball.", answer: "x" },
  { prompt: "Lily saw a cat", answer: "x" },
  { prompt: "The sun was hot.", answer: "x" },
];

/** The plan of a 2-step GIFT run on stories260K's copy in `dir` (`model`), its data beside it. */
async function storiesPlan(dir: string, changes: Record<string, unknown> = {}): Promise<Plan> {
  await writeJsonl(`${dir}/prompts.jsonl`, PROMPTS);
  return await hfPlan(
    hfRecipe("model", "prompts.jsonl", {
      name: "stories",
      sampling: { maxNewTokens: 16, temperature: 1 },
      steps: 2,
      backend: "wasm",
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

/** The weights of the Hugging Face directory `dir`, by name, linear ones in `layout`. */
async function hfWeights(
  dir: string,
  layout: LinearLayout = "[out, in]",
): Promise<Record<string, Float32Array>> {
  const { weights } = await loadHfModel(dir, layout);
  return Object.fromEntries(Object.entries(weights).map(([n, t]) => [n, t.data]));
}

/** A finite float32 rounded to bfloat16 (nearest, ties to even), as a float32. */
function bf16(x: number): number {
  const u = new Uint32Array(Float32Array.of(x).buffer)[0]!;
  const bits = ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
  return new Float32Array(Uint32Array.of(bits << 16).buffer)[0]!;
}

Deno.test("bf16() rounds to the nearest bfloat16, ties to even, as hand-computed", () => {
  assert.equal(bf16(1), 1);
  assert.equal(bf16(1 + 2 ** -8), 1); // a tie, to the even mantissa
  assert.equal(bf16(1 + 3 * 2 ** -8), 1 + 2 ** -6); // a tie, up to the even one
  assert.equal(bf16(1 + 2 ** -8 + 2 ** -20), 1 + 2 ** -7); // above the tie
  assert.equal(bf16(-2.5), -2.5);
});

Deno.test("execute() trains stories260K and saves model/ as a Hugging Face llama of the final weights", async () => {
  await withTempDir(async (dir) => {
    await copyDir(STORIES, `${dir}/model`);
    const plan = await storiesPlan(dir);
    const tensorsAfterStep: number[] = [];
    let final: Record<string, Float32Array> = {};
    let layout: LinearLayout = "[out, in]";
    let sampled: number[] = [];
    const result = await run(plan, dir, {
      onStep: () => tensorsAfterStep.push(tf.memory().numTensors),
      onFinish: async (r) => {
        final = valuesOf(r.params); // linear weights in the kernel set's layout
        layout = r.kernels.layout;
        // The trained policy's greedy continuation, for generate's to match.
        const out = await sampleCompletions(
          r.kernels,
          r.params,
          r.config,
          r.task.tokenizer,
          [[1, 403, 407, 261, 378]],
          { temperature: 0, topK: 0, topP: 1, maxNewTokens: 8 },
          new Rng(0),
        );
        sampled = Array.from(out.ids.subarray(5, 5 + out.lengths[0]!));
      },
    });
    assert.equal(result.status, "finished");
    assert.equal(result.metrics.length, 2);
    // No tensor is left behind by a step.
    assert.equal(tensorsAfterStep.length, 2);
    assert.equal(tensorsAfterStep[1], tensorsAfterStep[0]);
    const runDir = result.dir;

    // model/: the source's config.json (every field of it), its tokenizer files byte for byte.
    const source = JSON.parse(await Deno.readTextFile(`${STORIES}/config.json`));
    const saved = JSON.parse(await Deno.readTextFile(`${runDir}/model/config.json`));
    for (const [key, value] of Object.entries(source)) assert.deepEqual(saved[key], value, key);
    assert.equal(saved.giftwrap, undefined, "model/ is a plain Hugging Face directory");
    for (const name of ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]) {
      assert.deepEqual(
        await Deno.readFile(`${runDir}/model/${name}`),
        await Deno.readFile(`${STORIES}/${name}`),
        name,
      );
    }
    const header = await readSafetensorsHeader(`${runDir}/model/model.safetensors`);
    assert.deepEqual([...new Set(header.tensors.map((t) => t.dtype))], ["F32"]);

    // Its weights are the final ones, exactly; so are checkpoints/final's, read as Hugging Face.
    const model = await hfWeights(`${runDir}/model`, layout);
    assert.deepEqual(Object.keys(model).sort(), Object.keys(final).sort());
    const checkpoint = await hfWeights(`${runDir}/checkpoints/final`, layout);
    const initial = await hfWeights(`${runDir}/checkpoints/initial`, layout);
    const pretrained = await hfWeights(STORIES, layout);
    let changed = 0;
    for (const name of Object.keys(final)) {
      assert.deepEqual(model[name], final[name], name);
      assert.deepEqual(checkpoint[name], final[name], name);
      assert.deepEqual(initial[name], pretrained[name], name);
      if (final[name]!.some((x, i) => x !== pretrained[name]![i])) changed++;
    }
    assert.equal(changed, Object.keys(final).length, "every tensor was trained");
    // checkpoints/final is a Hugging Face directory too: the source's config and tokenizer.
    const finalConfig = JSON.parse(
      await Deno.readTextFile(`${runDir}/checkpoints/final/config.json`),
    );
    assert.equal(finalConfig.model_type, "llama");
    assert.deepEqual(finalConfig.architectures, ["LlamaForCausalLM"]);
    assert.equal(
      (await loadHfTokenizer(`${runDir}/checkpoints/final`)).vocabSize,
      512,
    );

    // `generate <run dir> --json` reads model/: the trained policy's greedy continuation.
    const generated = await runMain([
      "generate",
      runDir,
      "--prompt",
      "Once upon a time",
      "--max-new-tokens",
      "8",
      "--json",
    ]);
    assert.equal(generated.code, 0, generated.stderr.join("\n"));
    const json = JSON.parse(generated.stdout.join("\n"));
    assert.deepEqual(json.promptIds, [1, 403, 407, 261, 378]);
    assert.deepEqual(json.completionIds, sampled);
    assert.notDeepEqual(sampled, [432, 383, 286, 261, 376, 298, 315, 421]);
  });
});

Deno.test("execute() saves model/ in BF16 when the recipe asks, rounded from the final float32 weights", async () => {
  await withTempDir(async (dir) => {
    await copyDir(STORIES, `${dir}/model`);
    // Prompts of at most 6 tokens, the others skipped (and said so).
    const tok = await loadHfTokenizer(STORIES);
    const lengths = PROMPTS.map((p) => tok.encode(p.prompt, { addSpecialTokens: true }).length);
    const over = lengths.filter((n) => n > 6).length;
    assert.ok(over > 0 && over <= 2, String(lengths));
    const plan = await storiesPlan(dir, {
      policy: hfModel({ path: "model", saveDtype: "bfloat16" }),
      data: { kind: "jsonl", path: "prompts.jsonl", maxPromptTokens: 6, tooLong: "skip" },
      steps: 1,
    });
    assert.equal(plan.model.kind === "hfModel" && plan.model.saveDtype, "BF16");
    const log: string[] = [];
    const result = await run(plan, dir, { log: (line) => log.push(line) });
    assert.ok(
      log.includes(
        `data: ${over} row${over === 1 ? "" : "s"} left out, its prompt over ` +
          "data.maxPromptTokens (6 tokens) as data.tooLong is 'skip'",
      ),
      log.join("\n"),
    );
    const header = await readSafetensorsHeader(`${result.dir}/model/model.safetensors`);
    assert.deepEqual([...new Set(header.tensors.map((t) => t.dtype))], ["BF16"]);
    const config = JSON.parse(await Deno.readTextFile(`${result.dir}/model/config.json`));
    assert.equal(config.torch_dtype, "bfloat16");
    // The final checkpoint stays float32; model/ holds its weights rounded to BF16.
    const final = await hfWeights(`${result.dir}/checkpoints/final`);
    const saved = await hfWeights(`${result.dir}/model`);
    for (const [name, values] of Object.entries(final)) {
      assert.deepEqual(saved[name], values.map(bf16), name);
    }
  });
});

Deno.test("execute() stopped after step 1 resumes an hfModel run to the uninterrupted run's weights", async () => {
  await withTempDir(async (dir) => {
    await copyDir(STORIES, `${dir}/model`);
    const plan = await storiesPlan(dir);
    const whole = await run(plan, dir);

    const stop = new AbortController();
    const stopped = await run(plan, dir, { signal: stop.signal, onStep: () => stop.abort() });
    assert.equal(stopped.status, "interrupted");
    assert.equal(stopped.step, 1);
    const resumed = await run(plan, dir, { resume: stopped.dir });
    assert.equal(resumed.status, "finished");
    assert.equal(resumed.dir, stopped.dir);
    const info = JSON.parse(await Deno.readTextFile(`${resumed.dir}/run.json`));
    assert.deepEqual(info.resumes.map((r: { fromStep: number }) => r.fromStep), [1]);
    for (const file of ["checkpoints/final/model.safetensors", "model/model.safetensors"]) {
      assert.deepEqual(
        await Deno.readFile(`${resumed.dir}/${file}`),
        await Deno.readFile(`${whole.dir}/${file}`),
        file,
      );
    }
    const rewards = (r: typeof whole) => r.metrics.map((m) => m.rewardMean);
    assert.deepEqual(rewards(resumed), rewards(whole));

    // Stopped before its first step (Ctrl-C while a large model loads): nothing to keep, and a
    // resume starts it over, to the same weights.
    const early = new AbortController();
    early.abort();
    const lines: string[] = [];
    const none = await run(plan, dir, { signal: early.signal, log: (l) => lines.push(l) });
    assert.equal(none.status, "interrupted");
    assert.equal(none.step, 0);
    assert.equal(lines.at(-1), `stopped before its first RL step · ${none.dir}`);
    const over = await run(plan, dir, { resume: none.dir });
    assert.equal(over.status, "finished");
    assert.deepEqual(
      await Deno.readFile(`${over.dir}/model/model.safetensors`),
      await Deno.readFile(`${whole.dir}/model/model.safetensors`),
    );

    // A changed model directory: the run is not resumed on it, with the plan it ran or a new one.
    const halt = new AbortController();
    const again = await run(plan, dir, { signal: halt.signal, onStep: () => halt.abort() });
    assert.equal(again.status, "interrupted");
    const tokenizerConfig = `${dir}/model/tokenizer_config.json`;
    await Deno.writeTextFile(tokenizerConfig, (await Deno.readTextFile(tokenizerConfig)) + "\n");
    const refusal = async (p: Plan, resume?: string) => {
      const e = await run(p, dir, resume === undefined ? {} : { resume }).then(
        () => assert.fail("expected a refusal"),
        (e: Error) => e,
      );
      assert.ok(e instanceof RunSetupError, String(e));
      assert.doesNotMatch(e.message, /\n/);
      return e.message;
    };
    // With the plan it ran (the runtime's API), and a fresh run of that plan: the plan's hash.
    const stale = new RegExp(
      "^policy\\.path: the model directory 'model' changed since the plan was made " +
        "\\(sha256 [0-9a-f]{16}…, the plan's [0-9a-f]{16}…\\): plan the recipe again$",
    );
    assert.match(await refusal(plan, again.dir), stale);
    const runs = (await Array.fromAsync(Deno.readDir(`${dir}/runs`))).length;
    assert.match(await refusal(plan), stale);
    assert.equal((await Array.fromAsync(Deno.readDir(`${dir}/runs`))).length, runs, "no new run");
    // Planned again (as the command line does on --resume): the run's plan.json.
    const replanned = await storiesPlan(dir);
    assert.match(
      await refusal(replanned, again.dir),
      new RegExp(
        `^Cannot resume '${again.dir}': policy\\.path: the model directory 'model' changed ` +
          "since the run started \\(sha256 [0-9a-f]{16}…, the run's [0-9a-f]{16}…\\); resume " +
          "with the directory as it was, or start a new run$",
      ),
    );
  });
});

/** Small random Qwen2 (q/k/v biases) and Qwen3 (q/k norms, head_dim ≠ hidden / heads) models. */
const ARCHITECTURES: Record<string, Record<string, unknown>> = {
  qwen2: {
    architectures: ["Qwen2ForCausalLM"],
    model_type: "qwen2",
    vocab_size: 512,
    hidden_size: 16,
    intermediate_size: 24,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    max_position_embeddings: 64,
    max_window_layers: 21,
    rms_norm_eps: 1e-6,
    rope_theta: 1_000_000,
    sliding_window: 32_768,
    use_sliding_window: false,
    tie_word_embeddings: true,
    torch_dtype: "bfloat16",
  },
  qwen3: {
    architectures: ["Qwen3ForCausalLM"],
    model_type: "qwen3",
    vocab_size: 512,
    hidden_size: 16,
    intermediate_size: 24,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    head_dim: 8,
    attention_bias: false,
    max_position_embeddings: 64,
    rms_norm_eps: 1e-6,
    rope_scaling: null,
    rope_theta: 1_000_000,
    sliding_window: null,
    use_sliding_window: false,
    tie_word_embeddings: false,
    torch_dtype: "float32",
  },
};

for (const [name, config] of Object.entries(ARCHITECTURES)) {
  Deno.test(`execute() trains a random ${name} and saves, checkpoints and resumes it as ${name}`, async () => {
    await withTempDir(async (dir) => {
      // stories260K's tokenizer beside a random model of this architecture.
      const stored = config.torch_dtype === "bfloat16" ? "BF16" : "F32";
      await writeHfModel(`${dir}/model`, config, STORIES, 5, stored);
      const plan = await storiesPlan(dir, { steps: 2 });
      assert.equal(plan.model.kind === "hfModel" && plan.model.dtype, stored);
      const whole = await run(plan, dir);
      const stop = new AbortController();
      const stopped = await run(plan, dir, { signal: stop.signal, onStep: () => stop.abort() });
      assert.equal(stopped.step, 1);
      const resumed = await run(plan, dir, { resume: stopped.dir });
      for (const file of ["checkpoints/final/model.safetensors", "model/model.safetensors"]) {
        assert.deepEqual(
          await Deno.readFile(`${resumed.dir}/${file}`),
          await Deno.readFile(`${whole.dir}/${file}`),
          file,
        );
      }
      // model/ is of the source's architecture, every field of its config.json kept, its weights
      // in the source's dtype (BF16 stays BF16).
      const saved = JSON.parse(await Deno.readTextFile(`${whole.dir}/model/config.json`));
      for (const [key, value] of Object.entries(config)) {
        assert.deepEqual(saved[key], value, key);
      }
      const header = await readSafetensorsHeader(`${whole.dir}/model/model.safetensors`);
      assert.deepEqual([...new Set(header.tensors.map((t) => t.dtype))], [stored]);
      // It reloads, as does the final checkpoint, to the architecture's parameters.
      const model = await loadHfModel(`${whole.dir}/model`);
      const final = await loadHfModel(`${whole.dir}/checkpoints/final`);
      const source = await loadHfModel(`${dir}/model`);
      assert.deepEqual(model.config, source.config);
      assert.deepEqual(final.config, source.config);
      assert.deepEqual(Object.keys(model.weights).sort(), Object.keys(source.weights).sort());
      const initial = await loadHfModel(`${whole.dir}/checkpoints/initial`);
      for (const [n, { data }] of Object.entries(final.weights)) {
        const expected = stored === "BF16" ? data.map(bf16) : data;
        assert.deepEqual(model.weights[n]!.data, expected, n);
        assert.deepEqual(initial.weights[n]!.data, source.weights[n]!.data, n);
      }
    });
  });
}

Deno.test("deno task run trains an hfModel recipe, and names a prompt over the limit by file:line before any run", async () => {
  await withTempDir(async (dir) => {
    await copyDir(STORIES, `${dir}/model`);
    const long = "Once upon a time there was a little girl named Lily who loved the sun.";
    await writeJsonl(`${dir}/prompts.jsonl`, [...PROMPTS, { prompt: long, answer: "x" }]);
    const recipe = hfRecipe("model", "prompts.jsonl", {
      name: "cli",
      data: { kind: "jsonl", path: "prompts.jsonl", maxPromptTokens: 12 },
      backend: "wasm",
    });
    await Deno.writeTextFile(`${dir}/r.json`, JSON.stringify(recipe));
    const refused = await runMain(["run", `${dir}/r.json`, "--runs-dir", `${dir}/runs`]);
    assert.equal(refused.code, 2);
    const tok = await loadHfTokenizer(STORIES);
    const tokens = tok.encode(long, { addSpecialTokens: true }).length;
    assert.ok(PROMPTS.every((p) => tok.encode(p.prompt, { addSpecialTokens: true }).length <= 12));
    assert.deepEqual(refused.stderr.filter((l) => !l.includes("warning")), [
      `giftwrap: ${dir}/prompts.jsonl:5: prompt: expected at most 12 tokens ` +
      `(data.maxPromptTokens), got ${tokens}; raise data.maxPromptTokens or set data.tooLong ` +
      "to 'skip' or 'truncate-left'",
    ]);
    await assert.rejects(() => Deno.stat(`${dir}/runs`), Deno.errors.NotFound);

    await Deno.writeTextFile(
      `${dir}/r.json`,
      JSON.stringify({ ...recipe, data: { ...recipe.data, tooLong: "truncate-left" } }),
    );
    const ran = await runMain(["run", `${dir}/r.json`, "--runs-dir", `${dir}/runs`]);
    assert.equal(ran.code, 0, ran.stderr.join("\n"));
    const [runDir] = (await Array.fromAsync(Deno.readDir(`${dir}/runs`))).map((e) => e.name);
    const saved = await loadHfModel(`${dir}/runs/${runDir}/model`);
    assert.equal(saved.modelType, "llama");
    assert.equal(saved.parameters, 260_032);
  });
});

Deno.test("execute() trains a chat model with Qwen3's real tokenizer on prompts and messages, and saves its template", async () => {
  await withTempDir(async (dir) => {
    await writeHfModel(`${dir}/qwen3`, TINY_QWEN3, QWEN3_TOKENIZER);
    await writeJsonl(`${dir}/chat.jsonl`, [
      { prompt: "What is 2+2?", answer: "4" },
      { messages: [{ role: "user", content: "Dis bonjour 👋" }], answer: "bonjour" },
    ]);
    const plan = await hfPlan(
      hfRecipe("qwen3", "chat.jsonl", {
        policy: hfModel({
          path: "qwen3",
          chat: { system: "Be brief.", args: { enable_thinking: false } },
        }),
        data: { kind: "jsonl", path: "chat.jsonl", maxPromptTokens: 40 },
        group: { size: 2, prompts: 2 },
        sampling: { maxNewTokens: 4, temperature: 1 },
        backend: "wasm",
      }),
      `file://${dir}/`,
    );
    // V = 151,936: the log-probs of every completion token over the whole vocabulary.
    assert.equal(plan.model.vocab, 151_936);
    const result = await run(plan, dir);
    assert.equal(result.status, "finished");
    const samples = (await Deno.readTextFile(`${result.dir}/samples.jsonl`)).trim().split("\n")
      .map((l) => JSON.parse(l));
    assert.deepEqual(samples.map((s) => s.prompt).sort(), ["Dis bonjour 👋", "What is 2+2?"]);
    // model/ keeps the chat template (tokenizer_config.json) for serving, and is a Qwen3.
    for (const name of ["tokenizer.json", "tokenizer_config.json"]) {
      assert.deepEqual(
        await Deno.readFile(`${result.dir}/model/${name}`),
        await Deno.readFile(`${QWEN3_TOKENIZER}/${name}`),
        name,
      );
    }
    const saved = await loadHfModel(`${result.dir}/model`);
    assert.equal(saved.modelType, "qwen3");
    assert.deepEqual(saved.architectures, ["Qwen3ForCausalLM"]);
    assert.equal(saved.config.qkNorm, true);
  });
});
