/**
 * A plan's data as the runtime sees it: the tokenizer, the train and eval problems, and their
 * token ids. Built from the same definitions the compiler used (dsl/tasks.ts), so the prompt
 * length and vocabulary are the plan's.
 *
 * @module
 */

import type { Plan } from "../dsl/plan.ts";
import { additionSplits } from "./data/addition.ts";
import type { Problem, Splits } from "./data/types.ts";
import { BOS, type CharTokenizer, charTokenizer, EOS, PAD } from "./model/tokenizer.ts";
import type { Rng } from "./random.ts";

/** The data of a run. */
export interface Task {
  tokenizer: CharTokenizer;
  splits: Splits;
  /** Tokens per prompt, `<bos>` included. */
  promptLength: number;
}

/** Loads a plan's data, drawing the splits with `rng`. */
export function loadTask(plan: Plan, rng: Rng): Task {
  const tokenizer = charTokenizer(plan.tokenizer.alphabet);
  const data = plan.recipe.data;
  switch (data.kind) {
    case "addition": {
      const splits = additionSplits(
        { digits: data.digits!, train: data.train!, eval: data.eval! },
        rng,
      );
      return { tokenizer, splits, promptLength: plan.shapes.promptTokens };
    }
    case "jsonl":
      throw new Error(
        `Cannot load data '${data.path}': this runtime executes tasks.addition; JSON Lines data ` +
          "arrives with the data issue",
      );
  }
}

/** `<bos>` and the prompt's ids. */
export function encodePrompt(tokenizer: CharTokenizer, problem: Problem): number[] {
  return [BOS, ...tokenizer.encode(problem.prompt)];
}

/**
 * A supervised example: the prompt left-padded to `promptLength` tokens, the reference answer and
 * `<eos>`, right-padded to `newTokens` completion tokens. Returns the ids, the completion mask (1
 * on answer tokens and `<eos>`) and the prompt's left padding.
 */
export function supervisedExample(
  tokenizer: CharTokenizer,
  problem: Problem,
  promptLength: number,
  newTokens: number,
): { ids: number[]; mask: number[]; padding: number } {
  const answer = [...tokenizer.encode(problem.answer), EOS];
  if (answer.length > newTokens) {
    throw new Error(
      `Cannot train on answer ${JSON.stringify(problem.answer)}: ${answer.length} tokens with ` +
        `<eos>, more than the ${newTokens} new tokens sampling allows`,
    );
  }
  const completion = [...answer, ...new Array<number>(newTokens - answer.length).fill(PAD)];
  const mask = completion.map((_, i) => (i < answer.length ? 1 : 0));
  const prompt = encodePrompt(tokenizer, problem);
  const padding = promptLength - prompt.length;
  if (padding < 0) {
    throw new Error(
      `Cannot train on prompt ${JSON.stringify(problem.prompt)}: ${prompt.length} tokens with ` +
        `<bos>, more than the plan's ${promptLength}`,
    );
  }
  const ids = [...new Array<number>(padding).fill(PAD), ...prompt, ...completion];
  return { ids, mask, padding };
}
