/**
 * A template: GIFT on GSM8K with Qwen3-0.6B (or Qwen2.5-0.5B-Instruct), full fine-tuning, for a
 * user who has the checkpoint. Each step samples 8 answers to each of 4 grade-school word problems
 * (in Qwen's ChatML template with thinking off, under a system prompt asking for `\boxed{}`),
 * scores them with the numeric verifier against GSM8K's `#### n` and with a small format reward,
 * and matches the group-standardised implicit reward to the group-standardised reward. The
 * hyperparameters are TRL's GRPO defaults where they apply (8 completions per prompt, temperature
 * 1, lr 1e-6, gradient norm clipped to 1); nobody has tuned them for GIFT on this model. 400
 * steps read 1,600 problems, a fifth of GSM8K's 7,473.
 *
 * The checkpoint (Qwen3-0.6B: about 1.5 GB in BF16, `model_type` qwen3, q/k RMSNorm, tied
 * embeddings, a 151,936-token vocabulary; Qwen2.5-0.5B-Instruct, `qwen2` with q/k/v biases, works
 * the same way, and its template ignores `enable_thinking`):
 *
 *   huggingface-cli download Qwen/Qwen3-0.6B --local-dir models/Qwen3-0.6B
 *
 * GSM8K's train split as JSON Lines (`question`, `answer` ending in `#### n`), with Python:
 *
 *   from datasets import load_dataset
 *   load_dataset("openai/gsm8k", "main", split="train").to_json("gsm8k_train.jsonl")
 *
 * Then (paths relative to the working directory; without them, the checkpoint is looked for in
 * models/Qwen3-0.6B and the 16 sample problems of recipes/data/ are used):
 *
 *   export GIFTWRAP_QWEN_PATH=models/Qwen3-0.6B GIFTWRAP_GSM8K_PATH=gsm8k_train.jsonl
 *   deno task plan recipes/qwen_gsm8k.ts   # the architecture, the rendered prompt, the budgets
 *   deno task run recipes/qwen_gsm8k.ts    # the trained model is <run>/model, a HF directory
 *
 * Memory, as the plan's budget estimates it on Qwen3-0.6B (`deno task plan` prints it for your
 * settings, and refuses a run that would not fit, naming what to lower): sampling 32 completions
 * after prompts of up to 320 tokens peaks at about 85 GiB, evaluating the 32 held-out problems
 * the same, an update on one group of sequences of 832 tokens at 100 GiB; 8.9 GiB of each is the
 * weights, gradients and AdamW's moments in float32 (16 bytes a parameter, whatever the
 * checkpoint's dtype). With up to 1.3× that as memory fragments, it wants a machine or GPU with
 * 130 GiB (`--backend cpu` or `--backend webgpu`). data.maxPromptTokens, group.prompts and
 * data.eval shrink sampling and evaluation; sampling.maxNewTokens the update (256: 64 GiB).
 *
 * @module
 */

import { resolve } from "node:path";
import { gift, hfModel, recipe, rewards } from "../mod.ts";

/** The path in the environment variable `name`, against the working directory, if it is set. */
function fromEnv(name: string): string | undefined {
  // Without the env permission (a bare `deno run`), the defaults apply.
  if (Deno.permissions.querySync({ name: "env", variable: name }).state !== "granted") {
    return undefined;
  }
  const value = Deno.env.get(name);
  return value === undefined || value === "" ? undefined : resolve(value);
}

const data = fromEnv("GIFTWRAP_GSM8K_PATH");

export default recipe({
  name: "qwen-gsm8k",
  seed: 1,
  policy: hfModel({
    path: fromEnv("GIFTWRAP_QWEN_PATH") ?? "../models/Qwen3-0.6B",
    chat: {
      system: "Solve the math problem step by step. " +
        "Put the final answer, a number alone, in \\boxed{}.",
      // Qwen3's template then opens the answer with an empty <think></think>: no long reasoning
      // block to outgrow maxNewTokens.
      args: { enable_thinking: false },
    },
  }),
  reference: "rollout", // π_ref = the policy that sampled the batch, as in the GIFT author's code
  data: {
    kind: "jsonl",
    path: data ?? "./data/gsm8k_sample.jsonl",
    prompt: "question",
    answer: "answer", // the worked solution; the verifier reads its final `#### n`
    eval: data === undefined ? 4 : 32, // held out, after shuffling; all decoded at once
    maxPromptTokens: 320,
    tooLong: "skip",
  },
  rewards: [
    // Reads `#### n`, else `\boxed{n}`, else the last number of the completion.
    { name: "correct", source: rewards.numericAnswer(), weight: 1, success: true },
    { name: "format", source: rewards.regexFormat("\\\\boxed\\{[^{}]*\\d[^{}]*\\}"), weight: 0.2 },
  ],
  group: { size: 8, prompts: 4 },
  miniBatches: 4, // one group of 8 rows per optimiser step: the least memory an update can take
  sampling: { temperature: 1, maxNewTokens: 512 },
  objective: gift(),
  optimizer: { lr: 1e-6, clipGradNorm: 1 },
  steps: 400,
  eval: { every: 25 },
  checkpoint: { every: 50, keep: 2 },
});
