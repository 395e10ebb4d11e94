/**
 * A plan's data as the runtime sees it: the tokenizer, the train and eval problems, and their
 * token ids. Built from the same definitions the compiler used (dsl/tasks.ts), so the prompt
 * length and vocabulary are the plan's.
 *
 * @module
 */

import type { Plan } from "../../dsl/plan.ts";
import { additionSplits } from "./addition.ts";
import { countdownSplits } from "./countdown.ts";
import { loadJsonl } from "./jsonl.ts";
import { multiplicationSplits } from "./multiplication.ts";
import { sortingSplits } from "./sorting.ts";
import type { Problem, Splits } from "./types.ts";
import { BOS, type CharTokenizer, charTokenizer, EOS, PAD } from "../engine/model/tokenizer.ts";
import type { Rng } from "../engine/random.ts";

/** The data of a run. */
export interface Task {
  tokenizer: CharTokenizer;
  splits: Splits;
  /** Tokens per prompt, `<bos>` and left padding included: the plan's. */
  promptLength: number;
}

/**
 * Data a run cannot use; the message is one line naming the file or the problem.
 *
 * @example
 * ```ts
 * try {
 *   await execute(plan);
 * } catch (e) {
 *   if (e instanceof TaskError) console.error(e.message);
 * }
 * ```
 */
export class TaskError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "TaskError";
  }
}

/** The problems of a plan's data source, drawn with `rng`; `baseUrl` resolves file paths. */
async function splitsOf(plan: Plan, rng: Rng, baseUrl: string | URL): Promise<Splits> {
  const data = plan.recipe.data;
  switch (data.kind) {
    case "addition":
      return additionSplits({ digits: data.digits!, train: data.train!, eval: data.eval! }, rng);
    case "multiplication":
      return multiplicationSplits(
        { digits: data.digits!, train: data.train!, eval: data.eval! },
        rng,
      );
    case "sorting":
      return sortingSplits(
        { length: data.length!, maxValue: data.maxValue!, train: data.train!, eval: data.eval! },
        rng,
      );
    case "countdown":
      return countdownSplits({
        numbers: data.numbers!,
        maxNumber: data.maxNumber!,
        maxTarget: data.maxTarget!,
        train: data.train!,
        eval: data.eval!,
      }, rng);
    case "jsonl": {
      const path = new URL(data.path, baseUrl);
      const shown = path.protocol === "file:" ? decodeURIComponent(path.pathname) : path.href;
      return await loadJsonl(shown, {
        prompt: data.prompt!,
        answer: data.answer!,
        ...(data.template === undefined ? {} : { template: data.template }),
        eval: data.eval!,
      }, rng);
    }
  }
}

/**
 * Loads a plan's data, drawing the splits with `rng`, and checks that every prompt fits the
 * plan's prompt length in the plan's alphabet (and every answer its new tokens, when the policy is
 * warm-started on them), so that a bad row stops the run before any training.
 *
 * @param baseUrl where relative data paths start: the recipe's location.
 */
export async function loadTask(plan: Plan, rng: Rng, baseUrl: string | URL): Promise<Task> {
  const tokenizer = charTokenizer(plan.tokenizer.alphabet);
  const splits = await splitsOf(plan, rng, baseUrl);
  const where = plan.recipe.data.kind === "jsonl" ? `${plan.recipe.data.path}: ` : "";
  const { promptTokens, newTokens } = plan.shapes;
  const warm = (plan.model.warmStart?.sftSteps ?? 0) > 0;
  for (const [split, problems] of [["train", splits.train], ["eval", splits.eval]] as const) {
    for (const problem of problems) {
      let prompt: number[];
      let answer: number[];
      try {
        prompt = encodePrompt(tokenizer, problem);
        answer = tokenizer.encode(problem.answer);
      } catch (e) {
        throw new TaskError(
          `${where}${split} problem ${JSON.stringify(problem.prompt)}: ${(e as Error).message}`,
        );
      }
      if (prompt.length > promptTokens) {
        throw new TaskError(
          `${where}${split} problem ${JSON.stringify(problem.prompt)} has ${prompt.length} ` +
            `tokens with <bos>, more than the ${promptTokens} the plan allows (maxPromptTokens)`,
        );
      }
      if (warm && split === "train" && answer.length + 1 > newTokens) {
        throw new TaskError(
          `${where}the answer to ${JSON.stringify(problem.prompt)} has ${answer.length + 1} ` +
            `tokens with <eos>, more than sampling.maxNewTokens (${newTokens}) allows the warm start`,
        );
      }
    }
  }
  return { tokenizer, splits, promptLength: promptTokens };
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
