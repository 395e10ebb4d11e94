import assert from "node:assert/strict";
import { compile } from "../../../mod.ts";
import { problemFit } from "../../../runtime/data/task.ts";
import { charTokenizer } from "../../../runtime/engine/model/tokenizer.ts";
import { TINY } from "../_tiny.ts";
import type { CharTokenizerSpec } from "../../../dsl/plan.ts";
import type { TinyGpt } from "../../../dsl/schema.ts";

// One-digit addition: prompts of 1 + 4 tokens ('<bos>a+b='), 3 new tokens, a warm start.
const plan = compile(TINY);
const tokenizer = charTokenizer((plan.tokenizer as CharTokenizerSpec).alphabet);
const problem = (prompt: string, answer: string) => ({ prompt, answer, row: {} });

Deno.test("problemFit() accepts a problem the plan holds", () => {
  assert.equal(plan.shapes.promptTokens, 5);
  assert.equal(plan.shapes.newTokens, 3);
  assert.equal(problemFit(tokenizer, problem("9+9=", "18"), "train", plan), null);
});

Deno.test("problemFit() names a character outside the alphabet, counting from 1", () => {
  assert.equal(
    problemFit(tokenizer, problem("9×9=", "81"), "eval", plan),
    `prompt: expected characters of the tokenizer's alphabet ("0123456789+="), got "×" ` +
      "(U+00D7) at character 2",
  );
  assert.equal(
    problemFit(tokenizer, problem("1+1=", "2 "), "eval", plan),
    `answer: expected characters of the tokenizer's alphabet ("0123456789+="), got " " ` +
      "(U+0020) at character 2",
  );
});

Deno.test("problemFit() holds prompts to the plan, and train answers to the warm start's tokens", () => {
  assert.equal(
    problemFit(tokenizer, problem("10+1=", "11"), "eval", plan),
    "prompt: expected at most 5 tokens with <bos> (data.maxPromptTokens), got 6",
  );
  // '123' and <eos> are 4 tokens, over 3: the warm start cannot train on it; eval never does.
  assert.equal(
    problemFit(tokenizer, problem("1+2=", "123"), "train", plan),
    "answer: expected at most 3 tokens with <eos> (sampling.maxNewTokens), as the warm start " +
      "trains on it, got 4",
  );
  assert.equal(problemFit(tokenizer, problem("1+2=", "123"), "eval", plan), null);
  const cold = compile({
    ...TINY,
    policy: { ...(TINY.policy as TinyGpt), warmStart: { sftSteps: 0 } },
  });
  assert.equal(problemFit(tokenizer, problem("1+2=", "123"), "train", cold), null);
});
