// generate() and `deno task generate`: stories260K (models/stories260K/, a real Llama) against
// llama2.c's own greedy continuations (tests/runtime/fixtures/stories260K_public.json), seeded
// sampling, the stop at <s>, chat templates, a giftwrap checkpoint in a run directory against the
// tfjs forward's own greedy choice, and every bad input as one line with exit 2.

import assert from "node:assert/strict";
import { generate, GenerateError } from "../../runtime/generate.ts";
import { tf, useBackend } from "../../runtime/engine/backend.ts";
import { saveCheckpoint } from "../../runtime/engine/model/checkpoint.ts";
import { loadHfTokenizer } from "../../runtime/engine/model/hf_tokenizer.ts";
import { charTokenizer } from "../../runtime/engine/model/tokenizer.ts";
import { forward, initParams } from "../../runtime/engine/model/transformer.ts";
import type { ModelConfig } from "../../runtime/engine/model/config.ts";
import { Rng } from "../../runtime/engine/random.ts";
import { loadHfModel } from "../../runtime/engine/model/hf.ts";
import * as lora from "../../runtime/engine/model/lora.ts";
import { assertUsageError, giftwrap, lines, withTempDir } from "../_helpers.ts";

const MODEL = new URL("../../models/stories260K", import.meta.url).pathname;

interface Reference {
  cases: {
    prompt: string;
    prompt_ids: number[];
    generated_ids: number[];
    generated_text: string;
  }[];
  upstream_anchor: { prompt_ids: number[]; generated_ids: number[]; text: string };
}

const REFERENCE: Reference = JSON.parse(
  await Deno.readTextFile(new URL("fixtures/stories260K_public.json", import.meta.url)),
);
const CASE = REFERENCE.cases[0]!;
const STORY = REFERENCE.upstream_anchor;

/** The permissions of `deno task generate`, read from deno.json: the test runs under them. */
const PERMISSIONS: string[] = JSON.parse(
  await Deno.readTextFile(new URL("../../deno.json", import.meta.url)),
).tasks.generate.split(" ").filter((word: string) => word.startsWith("--allow-"));

Deno.test("generate() greedily continues the reference prompt as llama2.c does", async () => {
  assert.equal(CASE.prompt, "Once upon a time");
  const out = await generate(MODEL, {
    prompt: CASE.prompt,
    maxNewTokens: CASE.generated_ids.length,
  });
  assert.deepEqual(out.promptIds, CASE.prompt_ids);
  assert.deepEqual(out.completionIds, CASE.generated_ids);
  assert.equal(out.text, CASE.generated_text);
  assert.equal(out.stopped, "length");
  // One token earlier: the completion's first word keeps its space (" time", id 378), as the
  // whole text less the prompt's gives it.
  const earlier = await generate(MODEL, { prompt: "Once upon a", maxNewTokens: 4 });
  assert.deepEqual(earlier.promptIds, CASE.prompt_ids.slice(0, 4));
  assert.deepEqual(earlier.completionIds, [378, ...CASE.generated_ids.slice(0, 3)]);
  assert.equal(earlier.text, " time, there was");
});

Deno.test("generate() writes llama2.c's 200-token story from an empty prompt", async () => {
  const out = await generate(MODEL, { prompt: "", maxNewTokens: 200 });
  assert.deepEqual(out.promptIds, STORY.prompt_ids); // [<s>]
  assert.deepEqual(out.completionIds, STORY.generated_ids);
  assert.equal(out.text, STORY.text);
  assert.equal(out.stopped, "length");
});

Deno.test("generate() samples reproducibly from a seed, and top-k 1 is greedy", async () => {
  const sampled = (seed: number, topK = 0) =>
    generate(MODEL, { prompt: CASE.prompt, maxNewTokens: 60, temperature: 1, topK, seed });
  const [a, b, c] = [await sampled(1), await sampled(1), await sampled(2)];
  assert.deepEqual(a, b);
  assert.notDeepEqual(a.completionIds, c.completionIds);
  assert.notDeepEqual(a.completionIds.slice(0, 60), CASE.generated_ids);
  // One candidate left: every draw is the argmax, whatever the seed and temperature.
  for (const seed of [1, 2]) {
    assert.deepEqual((await sampled(seed, 1)).completionIds, CASE.generated_ids);
  }
  // top-p that keeps only the most likely token is greedy too.
  const nucleus = await generate(MODEL, {
    prompt: CASE.prompt,
    maxNewTokens: 60,
    temperature: 1,
    topP: 1e-6,
    seed: 3,
  });
  assert.deepEqual(nucleus.completionIds, CASE.generated_ids);
});

Deno.test("generate() ends a story at <s>, kept in the ids and left out of the text", async () => {
  const tok = await loadHfTokenizer(MODEL);
  assert.deepEqual(tok.stopIds, [2]); // no generation_config.json: </s> alone
  const context = 512;
  let stops = 0;
  for (let seed = 0; seed < 4; seed++) {
    const out = await generate(MODEL, { prompt: "", temperature: 1, seed, maxNewTokens: 400 });
    const ids = out.completionIds;
    // No stop id before the last token.
    assert.ok(ids.slice(0, -1).every((id) => id !== 1 && id !== 2), `seed ${seed}`);
    if (out.stopped === "stop-id") {
      stops++;
      assert.ok([1, 2].includes(ids.at(-1)!));
      assert.equal(out.text, tok.decode(ids.slice(0, -1)));
    } else {
      assert.equal(ids.length, 400);
      assert.equal(out.text, tok.decode(ids));
    }
    assert.ok(ids.length + out.promptIds.length <= context);
  }
  // stories260K ends most sampled stories well within 400 tokens by writing <s>.
  assert.ok(stops >= 2, `only ${stops} of 4 stories stopped`);
});

/** stories260K copied to `dir` with `tokenizer_config.json` changed by `change`. */
async function copyModel(dir: string, change: (config: Record<string, unknown>) => void) {
  for await (const entry of Deno.readDir(MODEL)) {
    await Deno.copyFile(`${MODEL}/${entry.name}`, `${dir}/${entry.name}`);
  }
  const config = JSON.parse(await Deno.readTextFile(`${dir}/tokenizer_config.json`));
  change(config);
  await Deno.writeTextFile(`${dir}/tokenizer_config.json`, JSON.stringify(config));
}

Deno.test("generate() with chat renders the prompt and the system prompt through the template", async () => {
  await withTempDir(async (dir) => {
    await copyModel(dir, (config) => {
      config.chat_template = "{{ bos_token }}{% for m in messages %}" +
        "{% if m.role == 'system' %}{{ m.content }}\n{% else %}{{ m.content }}{% endif %}" +
        "{% endfor %}{% if add_generation_prompt %} and{% endif %}";
    });
    const tok = await loadHfTokenizer(dir);
    const chat = await generate(dir, {
      prompt: "Once upon a time",
      chat: true,
      system: "A story.",
      maxNewTokens: 5,
    });
    // The template writes <s> itself; nothing is added to the rendered text.
    const rendered = "<s>A story.\nOnce upon a time and";
    assert.deepEqual(chat.promptIds, tok.encode(rendered));
    assert.equal(chat.promptIds[0], 1);
    assert.equal(chat.promptIds.filter((id) => id === 1).length, 1);
    assert.equal(chat.completionIds.length, 5);
    const plain = await generate(dir, { prompt: "Once upon a time", chat: true, maxNewTokens: 5 });
    assert.deepEqual(plain.promptIds, tok.encode("<s>Once upon a time and"));
  });
});

/** Greedy ids after `prompt`, each from a full forward pass over everything so far (no cache). */
async function forwardGreedy(
  params: Record<string, tf.Tensor>,
  config: ModelConfig,
  prompt: number[],
  steps: number,
): Promise<number[]> {
  const { kernels } = await useBackend("cpu");
  const ids = [...prompt];
  for (let t = 0; t < steps; t++) {
    const last = tf.tidy(() => {
      const { logits } = forward(kernels, params, config, tf.tensor2d([ids], undefined, "int32"));
      return logits.slice([0, ids.length - 1, 0], [1, 1, config.vocab]).reshape([config.vocab]);
    });
    const values = await last.data();
    last.dispose();
    let best = 0;
    for (let v = 1; v < values.length; v++) if (values[v]! > values[best]!) best = v;
    ids.push(best);
    if (best === 2 || best === 1) break;
  }
  return ids.slice(prompt.length);
}

Deno.test("generate() runs a run directory's final giftwrap checkpoint with its character tokenizer", async () => {
  await withTempDir(async (dir) => {
    const alphabet = "0123456789+=";
    const config: ModelConfig = {
      vocab: 3 + alphabet.length,
      dModel: 32,
      layers: 2,
      heads: 4,
      kvHeads: 2,
      headDim: 8,
      ffnDim: 64,
      contextLength: 12,
      tiedEmbeddings: false,
      ropeTheta: 10_000,
      normEps: 1e-5,
    };
    const { kernels } = await useBackend("cpu");
    const params = initParams(config, new Rng(5), kernels.layout);
    await Deno.mkdir(`${dir}/run/checkpoints`, { recursive: true });
    await Deno.writeTextFile(`${dir}/run/run.json`, "{}");
    await saveCheckpoint(`${dir}/run/checkpoints/final`, params, config, alphabet, {
      layout: kernels.layout,
    });
    const tok = charTokenizer(alphabet);
    const prompt = tok.encode("12+3=", { addSpecialTokens: true });
    // The context (12) leaves room for 6 new tokens, fewer than asked.
    const want = await forwardGreedy(params, config, prompt, 6);
    tf.dispose(Object.values(params));
    const out = await generate(`${dir}/run`, { prompt: "12+3=", maxNewTokens: 50 });
    assert.deepEqual(out.promptIds, prompt);
    assert.deepEqual(out.completionIds, want);
    assert.equal(
      out.stopped,
      want.length === 6 && ![1, 2].includes(want[5]!) ? "length" : "stop-id",
    );
    assert.equal(out.text, tok.decode(want.filter((id) => id > 2)));
    // The checkpoint directory itself works as well.
    assert.deepEqual(
      await generate(`${dir}/run/checkpoints/final`, { prompt: "12+3=", maxNewTokens: 50 }),
      out,
    );
    await assert.rejects(
      generate(`${dir}/run`, { prompt: "x" }),
      /Cannot tokenize "x": character "x" at 0 is not in the tokenizer's alphabet/,
    );
    await assert.rejects(
      generate(`${dir}/run`, { prompt: "1", chat: true }),
      (e) => e instanceof GenerateError && /has no chat template/.test(e.message),
    );
    await assert.rejects(
      generate(`${dir}/run`, { prompt: "1".repeat(11) }),
      /the prompt's 12 tokens leave no room in the model's context of 12/,
    );
  });
});

Deno.test("generate() refuses bad options by name", async () => {
  const cases: [Parameters<typeof generate>[1], RegExp][] = [
    [{ prompt: "a", maxNewTokens: 0 }, /'maxNewTokens' must be a whole number >= 1/],
    [{ prompt: "a", temperature: -1 }, /'temperature' must be a number >= 0/],
    [{ prompt: "a", topP: 0 }, /'topP' must be a number in \(0, 1\]/],
    [{ prompt: "a", topK: 1.5 }, /'topK' must be a whole number >= 0/],
    [{ prompt: "a", seed: 0.5 }, /'seed' must be a safe integer/],
    [{ prompt: "a", system: "s" }, /system prompt without --chat/],
  ];
  for (const [options, message] of cases) {
    await assert.rejects(
      generate(MODEL, options),
      (e) => e instanceof GenerateError && message.test(e.message),
    );
  }
});

Deno.test("deno task generate prints llama2.c's continuation, as text and as --json", async () => {
  const json = await giftwrap(
    ["generate", MODEL, "--prompt", CASE.prompt, "--max-new-tokens", "60", "--json"],
    undefined,
    PERMISSIONS,
  );
  assert.equal(json.code, 0, json.stderr);
  assert.equal(json.stderr, "");
  assert.deepEqual(JSON.parse(json.stdout), {
    promptIds: CASE.prompt_ids,
    completionIds: CASE.generated_ids,
    text: CASE.generated_text,
    stopped: "length",
  });
  const story = await giftwrap(
    ["generate", MODEL, "--prompt", "", "--max-new-tokens", "200", "--json"],
    undefined,
    PERMISSIONS,
  );
  assert.equal(story.code, 0, story.stderr);
  assert.deepEqual(JSON.parse(story.stdout).completionIds, STORY.generated_ids);
  const text = await giftwrap(
    ["generate", MODEL, "--prompt", CASE.prompt, "--max-new-tokens", "60"],
    undefined,
    PERMISSIONS,
  );
  assert.equal(text.code, 0, text.stderr);
  assert.equal(text.stdout, `${CASE.generated_text}\n`);
  const sampled = (seed: string, topK = "0") =>
    giftwrap(
      ["generate", MODEL, "--prompt", "", "--temperature", "0.8", "--top-k", topK, "--top-p", "0.9"]
        .concat(["--seed", seed, "--max-new-tokens", "40", "--json"]),
      undefined,
      PERMISSIONS,
    );
  const [a, b] = [await sampled("4"), await sampled("4")];
  assert.equal(a.code, 0, a.stderr);
  assert.equal(a.stdout, b.stdout);
  assert.deepEqual(
    JSON.parse(a.stdout),
    await generate(MODEL, { prompt: "", temperature: 0.8, topP: 0.9, seed: 4, maxNewTokens: 40 }),
  );
});

Deno.test("deno task generate refuses bad input in one line with exit 2", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/empty`);
    await Deno.mkdir(`${dir}/gpt2`);
    await Deno.writeTextFile(`${dir}/gpt2/config.json`, JSON.stringify({ model_type: "gpt2" }));
    await Deno.mkdir(`${dir}/untokenized`);
    for (const file of ["config.json", "model.safetensors"]) {
      await Deno.copyFile(`${MODEL}/${file}`, `${dir}/untokenized/${file}`);
    }
    await Deno.mkdir(`${dir}/unfinished/checkpoints`, { recursive: true });
    await Deno.writeTextFile(`${dir}/unfinished/run.json`, "{}");
    const p = ["--prompt", "Once"];
    const cases: [string[], RegExp][] = [
      [[`${dir}/missing`, ...p], /'.*\/missing' as it does not exist/],
      [[`${dir}/gpt2/config.json`, ...p], /is not a directory/],
      [[`${dir}/empty`, ...p], /'.*\/empty' as it has no config\.json/],
      [[`${dir}/gpt2`, ...p], /model_type/],
      [[`${dir}/untokenized`, ...p], /tokenizer\.json' does not exist/],
      [[`${dir}/unfinished`, ...p], /has no final checkpoint/],
      [[MODEL, ...p, "--chat"], /has no chat template/],
      [[MODEL, ...p, "--system", "Be brief."], /--system needs --chat/],
      [[MODEL], /--prompt/],
      [[MODEL, ...p, "--temperature", "-1"], /--temperature.*expected a number >= 0, got '-1'/],
      [[MODEL, ...p, "--temperature", "hot"], /--temperature.*got 'hot'/],
      [[MODEL, ...p, "--top-p", "0"], /--top-p.*expected a number in \(0, 1\], got '0'/],
      [[MODEL, ...p, "--top-p", "1.5"], /--top-p/],
      [[MODEL, ...p, "--top-k", "-2"], /--top-k/],
      [[MODEL, ...p, "--max-new-tokens", "0"], /--max-new-tokens.*expected a whole number >= 1/],
      [[MODEL, ...p, "--seed", "x"], /--seed/],
      [[MODEL, ...p, "--top-q", "1"], /--top-q/],
    ];
    for (const [args, message] of cases) {
      const ran = await giftwrap(["generate", ...args], undefined, PERMISSIONS);
      assertUsageError(ran, args.join(" "));
      assert.match(lines(ran.stderr)[0]!, message, args.join(" "));
    }
  });
});

Deno.test("generate() applies a PEFT adapter to the local base it names, and refuses a base that is not one", async () => {
  await withTempDir(async (dir) => {
    const { config } = await loadHfModel(MODEL);
    const settings = lora.loraConfig({ rank: 2, alpha: 2, targets: ["q_proj", "o_proj"] });
    // B = 0: the adapter changes nothing, so the continuation is llama2.c's.
    const zero = lora.initLoraAdapters(config, settings, new Rng(1), "[out, in]");
    await lora.saveLoraAdapter(`${dir}/zero`, zero, { baseModel: MODEL });
    lora.disposeLoraAdapters(zero);
    const before = tf.memory().numTensors;
    const out = await generate(`${dir}/zero`, { prompt: CASE.prompt, maxNewTokens: 8 });
    assert.deepEqual(out.completionIds, CASE.generated_ids.slice(0, 8));
    assert.equal(tf.memory().numTensors, before, "no tensor left");

    const hub = lora.initLoraAdapters(config, settings, new Rng(1), "[out, in]");
    await lora.saveLoraAdapter(`${dir}/hub`, hub, { baseModel: "someone/a-model" });
    lora.disposeLoraAdapters(hub);
    await assert.rejects(
      generate(`${dir}/hub`, { prompt: "Hi" }),
      GenerateError,
      `Cannot generate from the LoRA adapter '${dir}/hub' as its adapter_config.json's ` +
        'base_model_name_or_path must be a local model directory: current value is "someone/a-model"',
    );
  });
});
