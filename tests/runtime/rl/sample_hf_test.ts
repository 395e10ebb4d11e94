// Sampling with a Hugging Face tokenizer (runtime/rl/sample.ts) on stories260K: prompts of
// different lengths in one batch, left-padded with the tokenizer's pad id, continue as each does
// alone and as llama2.c's greedy reference does; a completion ends at <s> or </s> (kept in the
// ids and the mask, cut from the text) and at a stop string; the draws are the seed's.

import assert from "node:assert/strict";
import { tf, useBackend } from "../../../runtime/engine/backend.ts";
import { weightsToTensors } from "../../../runtime/engine/model/checkpoint.ts";
import { loadHfModel } from "../../../runtime/engine/model/hf.ts";
import { type HfTokenizer, loadHfTokenizer } from "../../../runtime/engine/model/hf_tokenizer.ts";
import type { ModelConfig, Params } from "../../../runtime/engine/model/config.ts";
import { encodeSafetensors } from "../../../runtime/engine/model/safetensors.ts";
import { Rng } from "../../../runtime/engine/random.ts";
import { type Completions, sampleCompletions } from "../../../runtime/rl/sample.ts";
import { withTempDir } from "../../_helpers.ts";
import { copyDir, STORIES } from "../_hf.ts";

interface Reference {
  cases: { prompt: string; prompt_ids: number[]; generated_ids: number[] }[];
}
/** llama2.c's greedy continuation of "Once upon a time" (run.c, float32). */
const REFERENCE: Reference = JSON.parse(
  await Deno.readTextFile(new URL("../fixtures/stories260K_public.json", import.meta.url)),
);
const [ONCE] = REFERENCE.cases;

const GREEDY = { temperature: 0, topK: 0, topP: 1 };

/** stories260K (or a model directory like it) loaded on cpu, with its tokenizer. */
async function withStories<T>(
  dir: string,
  body: (model: { params: Params; config: ModelConfig; tok: HfTokenizer }) => Promise<T>,
): Promise<T> {
  const { kernels } = await useBackend("cpu");
  const loaded = await loadHfModel(dir, kernels.layout);
  const params = weightsToTensors(loaded.weights, false);
  try {
    return await body({ params, config: loaded.config, tok: await loadHfTokenizer(dir) });
  } finally {
    tf.dispose(Object.values(params));
  }
}

/** The completion ids of row `b` (its `lengths[b]` tokens). */
function completion(out: Completions, b: number): number[] {
  const start = b * (out.promptLength + out.newTokens) + out.promptLength;
  return Array.from(out.ids.subarray(start, start + out.lengths[b]!));
}

/** Row `b` of a [B, ·] array. */
function row(values: ArrayLike<number>, b: number, width: number): number[] {
  return Array.from(values as ArrayLike<number>).slice(b * width, (b + 1) * width);
}

Deno.test("sampleCompletions() left-pads a batch with the pad id, each row continuing as alone and as llama2.c", async () => {
  await withStories(STORIES, async ({ params, config, tok }) => {
    const { kernels } = await useBackend("cpu");
    const texts = ["Once upon a time", "Tom", "Lily saw a big red ball in the park"];
    const prompts = texts.map((t) => tok.encode(t, { addSpecialTokens: true }));
    assert.deepEqual(prompts[0], ONCE!.prompt_ids);
    assert.deepEqual(prompts.map((p) => p.length), [5, 3, 14]);
    const C = 16;
    const before = tf.memory().numTensors;
    const batch = await sampleCompletions(
      kernels,
      params,
      config,
      tok,
      prompts,
      { ...GREEDY, maxNewTokens: C },
      new Rng(1),
    );
    assert.equal(tf.memory().numTensors, before, "no tensor left behind");
    assert.equal(batch.promptLength, 14);
    assert.deepEqual(batch.padding, [9, 11, 0]);
    const width = 14 + C;
    // Left padding with stories260K's pad id: its </s> (2), as it has no pad token.
    assert.equal(tok.padId, 2);
    for (const [b, p] of prompts.entries()) {
      assert.deepEqual(row(batch.ids, b, width).slice(0, 14), [
        ...new Array(14 - p.length).fill(2),
        ...p,
      ]);
    }
    // "Once upon a time" continues as llama2.c's run.c does, behind 9 pads.
    assert.deepEqual(completion(batch, 0), ONCE!.generated_ids.slice(0, C));
    for (const [b, p] of prompts.entries()) {
      const alone = await sampleCompletions(
        kernels,
        params,
        config,
        tok,
        [p],
        { ...GREEDY, maxNewTokens: C },
        new Rng(1),
      );
      assert.deepEqual(completion(batch, b), completion(alone, 0), texts[b]);
      assert.equal(batch.texts[b], alone.texts[0]);
      assert.equal(batch.texts[b], tok.decode(completion(alone, 0)));
      // Greedy log-probs are the same whatever the padding, within float32 rounding.
      row(batch.logp, b, C).forEach((x, i) => {
        assert.ok(Math.abs(x - alone.logp[i]!) < 1e-4, `${texts[b]} logp[${i}]`);
      });
      assert.deepEqual(row(batch.mask, b, C), new Array(C).fill(1));
      assert.equal(batch.truncated[b], true);
    }
    assert.equal(
      batch.texts[0],
      tok.decode(ONCE!.generated_ids.slice(0, C)),
    );
  });
});

/**
 * A copy of stories260K whose output row of `stop` (`<s>` or `</s>`) is `target`'s input
 * embedding × 1.01 (the embeddings untied), so that greedy decoding writes `stop` where
 * stories260K writes `target`, and the same tokens before.
 */
async function stoppingCopy(dir: string, stop: number, target: number): Promise<string> {
  const copy = await copyDir(STORIES, dir);
  const loaded = await loadHfModel(STORIES, "[out, in]");
  const embed = loaded.weights["model.embed_tokens.weight"]!;
  const head = Float32Array.from(embed.data);
  const d = embed.shape[1]!;
  for (let i = 0; i < d; i++) head[stop * d + i] = embed.data[target * d + i]! * 1.01;
  const weights = { ...loaded.weights, "lm_head.weight": { ...embed, data: head } };
  await Deno.writeFile(`${copy}/model.safetensors`, encodeSafetensors(weights));
  const config = JSON.parse(await Deno.readTextFile(`${copy}/config.json`));
  await Deno.writeTextFile(
    `${copy}/config.json`,
    JSON.stringify({ ...config, tie_word_embeddings: false }),
  );
  return copy;
}

Deno.test("sampleCompletions() ends a stories260K completion at <s> or </s>, cut from its text", async () => {
  await withTempDir(async (dir) => {
    const { kernels } = await useBackend("cpu");
    const story = ONCE!.generated_ids; // ", there was a little girl …"
    const cases = [
      { stop: 1, at: 4 }, // <s> where llama2.c writes " little"
      { stop: 2, at: 5 }, // </s> where it writes " girl"
    ];
    for (const { stop, at } of cases) {
      const target = story[at]!;
      assert.ok(!story.slice(0, at).includes(target), "the target comes first at `at`");
      const copy = await stoppingCopy(`${dir}/stop${stop}`, stop, target);
      await withStories(copy, async ({ params, config, tok }) => {
        const C = 12;
        const prompts = [ONCE!.prompt_ids, tok.encode("Tom", { addSpecialTokens: true })];
        const out = await sampleCompletions(
          kernels,
          params,
          config,
          tok,
          prompts,
          { ...GREEDY, maxNewTokens: C },
          new Rng(1),
        );
        // The stop token is the completion's last, masked in; </s> pads after it.
        assert.deepEqual(completion(out, 0), [...story.slice(0, at), stop]);
        assert.equal(out.lengths[0], at + 1);
        assert.equal(out.truncated[0], false);
        assert.deepEqual(row(out.mask, 0, C), [
          ...new Array(at + 1).fill(1),
          ...new Array(C - at - 1).fill(0),
        ]);
        const width = out.promptLength + C;
        assert.deepEqual(
          row(out.ids, 0, width).slice(out.promptLength + at + 1),
          new Array(C - at - 1).fill(2),
        );
        assert.deepEqual(row(out.logp, 0, C).slice(at + 1), new Array(C - at - 1).fill(0));
        // Its text is what the model wrote before it: ", there was a" (+ " little").
        assert.equal(out.texts[0], tok.decode(story.slice(0, at)));
        assert.equal(out.texts[0], at === 4 ? ", there was a" : ", there was a little");
      });
    }
  });
});

Deno.test("sampleCompletions() ends a completion at a stop string, kept in its text", async () => {
  await withStories(STORIES, async ({ params, config, tok }) => {
    const { kernels } = await useBackend("cpu");
    const out = await sampleCompletions(
      kernels,
      params,
      config,
      tok,
      [ONCE!.prompt_ids, ONCE!.prompt_ids],
      { ...GREEDY, maxNewTokens: 20, stop: [" was", "girl named"] },
      new Rng(1),
    );
    // ", there was" after 3 tokens of llama2.c's continuation.
    assert.equal(tok.decode(ONCE!.generated_ids.slice(0, 3)), ", there was");
    for (const b of [0, 1]) {
      assert.deepEqual(completion(out, b), ONCE!.generated_ids.slice(0, 3));
      assert.equal(out.texts[b], ", there was");
      assert.equal(out.truncated[b], false);
    }
    // A stop string that a later token completes: ", there was a little girl named".
    const later = await sampleCompletions(
      kernels,
      params,
      config,
      tok,
      [ONCE!.prompt_ids],
      { ...GREEDY, maxNewTokens: 20, stop: ["girl named"] },
      new Rng(1),
    );
    const ids = completion(later, 0);
    assert.deepEqual(ids, ONCE!.generated_ids.slice(0, ids.length));
    assert.ok(later.texts[0]!.endsWith("girl named"), later.texts[0]);
    assert.ok(!tok.decode(ids.slice(0, -1)).includes("girl named"));
  });
});

Deno.test("sampleCompletions() draws with temperature, top-k and top-p from the seed", async () => {
  await withStories(STORIES, async ({ params, config, tok }) => {
    const { kernels } = await useBackend("cpu");
    const prompts = [ONCE!.prompt_ids, tok.encode("Tom", { addSpecialTokens: true })];
    const draw = (options: { temperature: number; topK: number; topP: number }, seed: number) =>
      sampleCompletions(
        kernels,
        params,
        config,
        tok,
        [...prompts, ...prompts],
        { ...options, maxNewTokens: 12 },
        new Rng(seed),
      );
    for (
      const options of [
        { temperature: 1, topK: 0, topP: 1 },
        { temperature: 0.7, topK: 20, topP: 1 },
        { temperature: 1.3, topK: 0, topP: 0.9 },
      ]
    ) {
      const a = await draw(options, 5);
      const b = await draw(options, 5);
      const c = await draw(options, 6);
      assert.deepEqual(a, b, JSON.stringify(options));
      assert.notDeepEqual(Array.from(a.ids), Array.from(c.ids), JSON.stringify(options));
      // Rows of one prompt in one batch are drawn apart ("Once upon a time" is nearly certain
      // of its next tokens; "Tom" is not).
      assert.notDeepEqual(completion(a, 1), completion(a, 3), JSON.stringify(options));
    }
    // top-k 1 and a top-p that keeps one token are greedy decoding, whatever the seed.
    const greedy = await draw(GREEDY, 1);
    assert.deepEqual(completion(greedy, 0), ONCE!.generated_ids.slice(0, 12));
    for (
      const options of [{ temperature: 1, topK: 1, topP: 1 }, {
        temperature: 1,
        topK: 0,
        topP: 1e-6,
      }]
    ) {
      const out = await draw(options, 9);
      for (const b of [0, 1, 2, 3]) assert.deepEqual(completion(out, b), completion(greedy, b));
    }
  });
});

Deno.test("sampleCompletions() ends at every id of generation_config.json's eos_token_id list", async () => {
  await withTempDir(async (dir) => {
    const { kernels } = await useBackend("cpu");
    const story = ONCE!.generated_ids; // ", there was a little girl …"
    const copy = await copyDir(STORIES, `${dir}/stories`);
    // A list, as Llama 3's and Qwen's generation configs give it: </s>, and the id of " a".
    await Deno.writeTextFile(
      `${copy}/generation_config.json`,
      JSON.stringify({ bos_token_id: 1, eos_token_id: [2, story[3]] }),
    );
    await withStories(copy, async ({ params, config, tok }) => {
      assert.deepEqual(tok.stopIds, [2, story[3]]);
      const out = await sampleCompletions(
        kernels,
        params,
        config,
        tok,
        [ONCE!.prompt_ids],
        { ...GREEDY, maxNewTokens: 12 },
        new Rng(1),
      );
      assert.deepEqual(completion(out, 0), story.slice(0, 4));
      assert.equal(out.texts[0], ", there was");
      assert.equal(out.truncated[0], false);
    });
  });
});
