import assert from "node:assert/strict";
import { type KernelSet, tf, useBackend } from "../../../runtime/engine/backend.ts";
import { charTokenizer, EOS, PAD } from "../../../runtime/engine/model/tokenizer.ts";
import { forward, initParams } from "../../../runtime/engine/model/transformer.ts";
import { Rng } from "../../../runtime/engine/random.ts";
import { sampleCompletions } from "../../../runtime/rl/sample.ts";
import { logSoftmax } from "../../../runtime/rl/sample_token.ts";
import { ADDITION_CONFIG, ADDITION_TOKENIZER } from "../_tiny.ts";

const tok = ADDITION_TOKENIZER;
const CONFIG = ADDITION_CONFIG;
const PROMPTS = ["12+34=", "55+01=", "99+99="].map((p) => [1, ...tok.encode(p)]);
const OPTIONS = { temperature: 1, topK: 0, topP: 1, maxNewTokens: 5 };

async function withModel<T>(
  body: (params: Record<string, tf.Variable>, kernels: KernelSet) => Promise<T>,
) {
  const { kernels } = await useBackend("wasm");
  const params = initParams(CONFIG, new Rng(11));
  try {
    return await body(params, kernels);
  } finally {
    tf.dispose(Object.values(params));
  }
}

Deno.test("sampleCompletions() is a function of the seed", async () => {
  await withModel(async (params, kernels) => {
    const draw = (seed: number) =>
      sampleCompletions(
        kernels,
        params,
        CONFIG,
        tok,
        PROMPTS,
        OPTIONS,
        new Rng(seed).fork("sample"),
      );
    const a = await draw(5);
    const b = await draw(5);
    const c = await draw(6);
    assert.deepEqual(a, b);
    assert.notDeepEqual(Array.from(a.ids), Array.from(c.ids));
  });
});

Deno.test("sampleCompletions() pads after <eos>, masks it in, and logs tempered log-probs", async () => {
  await withModel(async (params, kernels) => {
    const out = await sampleCompletions(kernels, params, CONFIG, tok, PROMPTS, OPTIONS, new Rng(3));
    const P = 7;
    const C = OPTIONS.maxNewTokens;
    assert.equal(out.ids.length, 3 * (P + C));
    for (let b = 0; b < 3; b++) {
      const completion = Array.from(out.ids.subarray(b * (P + C) + P, (b + 1) * (P + C)));
      const mask = Array.from(out.mask.subarray(b * C, (b + 1) * C));
      const end = completion.indexOf(EOS);
      const length = end === -1 ? C : end + 1;
      assert.equal(out.lengths[b], length);
      assert.equal(out.truncated[b], end === -1);
      assert.deepEqual(mask, completion.map((_, t) => (t < length ? 1 : 0)));
      assert.ok(completion.slice(length).every((id) => id === PAD));
      assert.equal(out.texts[b], tok.decode(completion));
    }
    // The recorded log-prob of each token is log-softmax of the full forward pass's logits.
    const ids = tf.tensor2d(out.ids, [3, P + C], "int32");
    const logits = tf.tidy(() => forward(kernels, params, CONFIG, ids).logits.arraySync());
    ids.dispose();
    for (let b = 0; b < 3; b++) {
      for (let t = 0; t < out.lengths[b]!; t++) {
        const row = Float32Array.from(logits[b]![P - 1 + t]!);
        const token = out.ids[b * (P + C) + P + t]!;
        const expected = logSoftmax(row)[token]!;
        assert.ok(Math.abs(out.logp[b * C + t]! - expected) < 1e-5);
      }
    }
  });
});

Deno.test("sampleCompletions() with temperature 0 decodes greedily, drawing nothing", async () => {
  await withModel(async (params, kernels) => {
    const greedy = { ...OPTIONS, temperature: 0 };
    const rng = new Rng(9);
    const before = rng.state();
    const out = await sampleCompletions(kernels, params, CONFIG, tok, PROMPTS, greedy, rng);
    assert.deepEqual(rng.state(), before);
    const P = 7;
    const width = P + OPTIONS.maxNewTokens;
    const ids = tf.tensor2d(out.ids, [3, width], "int32");
    const logits = tf.tidy(() => forward(kernels, params, CONFIG, ids).logits.arraySync());
    ids.dispose();
    for (let b = 0; b < 3; b++) {
      for (let t = 0; t < out.lengths[b]!; t++) {
        const row = logits[b]![P - 1 + t]!;
        assert.equal(out.ids[b * width + P + t], row.indexOf(Math.max(...row)));
      }
    }
  });
});

Deno.test("sampleCompletions() ends a completion at a stop string", async () => {
  await withModel(async (params, kernels) => {
    const out = await sampleCompletions(kernels, params, CONFIG, tok, PROMPTS, {
      ...OPTIONS,
      maxNewTokens: 8,
      stop: ["1", "2", "3", "4", "5", "6", "7", "8", "9", "0", "+", "="],
    }, new Rng(4));
    // Every character ends a completion, so each is one token (a character or <eos>).
    assert.deepEqual(out.lengths, [1, 1, 1]);
    assert.deepEqual(out.truncated, [false, false, false]);
  });
});

Deno.test("sampleCompletions() leaves no tensor behind", async () => {
  await withModel(async (params, kernels) => {
    await sampleCompletions(kernels, params, CONFIG, tok, PROMPTS, OPTIONS, new Rng(1));
    const before = tf.memory().numTensors;
    await sampleCompletions(kernels, params, CONFIG, tok, PROMPTS, OPTIONS, new Rng(2));
    assert.equal(tf.memory().numTensors, before);
  });
});

Deno.test("sampleCompletions() left-pads shorter prompts without changing their completions", async () => {
  await withModel(async (params, kernels) => {
    const greedy = { ...OPTIONS, temperature: 0 };
    const prompts = [[1, ...tok.encode("12+34=")], [1, ...tok.encode("5+1=")], [
      1,
      ...tok.encode("7="),
    ]];
    const together = await sampleCompletions(
      kernels,
      params,
      CONFIG,
      tok,
      prompts,
      greedy,
      new Rng(1),
    );
    assert.equal(together.promptLength, 7);
    assert.deepEqual(together.padding, [0, 2, 4]);
    for (const [b, prompt] of prompts.entries()) {
      const alone = await sampleCompletions(
        kernels,
        params,
        CONFIG,
        tok,
        [prompt],
        greedy,
        new Rng(1),
      );
      assert.equal(together.texts[b], alone.texts[0]);
      for (let t = 0; t < together.lengths[b]!; t++) {
        assert.ok(Math.abs(together.logp[b * 5 + t]! - alone.logp[t]!) < 1e-5);
      }
    }
    await assert.rejects(
      () =>
        sampleCompletions(
          kernels,
          params,
          CONFIG,
          tok,
          prompts,
          { ...greedy, promptLength: 5 },
          new Rng(1),
        ),
      /a prompt of 7 tokens is longer than the 5 allowed/,
    );
  });
});

Deno.test("sampleCompletions() draws only ids its tokenizer has, when the model has more rows", async () => {
  // A model of 15 rows; a tokenizer of 6 ids (<pad> <bos> <eos> and "123"), as Qwen's 151,936
  // rows hold 151,669 ids. Prompts of the full tokenizer's ids, which both tokenizers read alike.
  const small = charTokenizer("123");
  const prompts = [[1, 4, 5], [1, 5, 4]];
  await withModel(async (params, kernels) => {
    const draw = (tokenizer: typeof small) =>
      sampleCompletions(kernels, params, CONFIG, tokenizer, prompts, {
        ...OPTIONS,
        maxNewTokens: 6,
      }, new Rng(3));
    const seen = (ids: Int32Array) =>
      [...ids.subarray(3, 9), ...ids.subarray(12, 18)].filter((t) => t !== PAD);
    // With every row's id known, some draws fall on rows the small tokenizer lacks …
    const wide = await draw(tok);
    assert.ok(seen(wide.ids).some((t) => t >= small.vocabSize), `${seen(wide.ids)}`);
    // … and with the small one, none do.
    const narrow = await draw(small);
    assert.ok(seen(narrow.ids).length > 0);
    assert.ok(seen(narrow.ids).every((t) => t < small.vocabSize), `${seen(narrow.ids)}`);
  });
});
