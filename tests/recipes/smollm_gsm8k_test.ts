// recipes/smollm_gsm8k.ts pointed (GIFTWRAP_SMOLLM_PATH) at a small random checkpoint shaped like
// SmolLM2-135M-Instruct: a `llama` with tied embeddings, and a tokenizer of SmolLM2's kind
// (byte-level BPE, its special tokens at its ids, its ChatML template verbatim) over the bytes
// alone, so that a prompt's token count is its UTF-8 length plus its special tokens.

import { writeSmolLm } from "./_hf_checkpoints.ts";
import { checkPlan, checkRun, FIRST_QUESTION, SYSTEM, type Template } from "./_gsm8k.ts";

const prompt = `<|im_start|>system\n${SYSTEM}<|im_end|>\n` +
  `<|im_start|>user\n${FIRST_QUESTION}<|im_end|>\n<|im_start|>assistant\n`;

const SMOLLM: Template = {
  recipe: "recipes/smollm_gsm8k.ts",
  env: "GIFTWRAP_SMOLLM_PATH",
  write: writeSmolLm,
  model: "llama (LlamaForCausalLM) · F32, saved as F32",
  prompt,
  // 5 special tokens (3 × <|im_start|>, 2 × <|im_end|>), one token per byte of the rest
  tokens: 5 + new TextEncoder().encode(prompt.replace(/<\|im_(start|end)\|>/g, "")).length,
  lr: 1e-6,
};

Deno.test("recipes/smollm_gsm8k.ts plans a SmolLM2-shaped checkpoint: llama, its ChatML prompt", async () => {
  await checkPlan(SMOLLM);
});

Deno.test("recipes/smollm_gsm8k.ts trains one step to a model/ that reloads", async () => {
  await checkRun(SMOLLM);
});
