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
import { codePoints, excerpt } from "./_excerpt.ts";
import { DataError, type JsonlLoadOptions, loadJsonlLines, type NumberedSplits } from "./jsonl.ts";
import { multiplicationSplits } from "./multiplication.ts";
import { sortingSplits } from "./sorting.ts";
import type { Problem, Splits } from "./types.ts";
import { type CharTokenizer, charTokenizer, type Tokenizer } from "../engine/model/tokenizer.ts";
import { loadHfTokenizer } from "../engine/model/hf_tokenizer.ts";
import { modelDir } from "../resolve.ts";
import { chatPrompt, promptIds } from "./prompt.ts";
import { PRINTABLE_ASCII } from "../../dsl/tasks.ts";
import type { Rng } from "../engine/random.ts";

/** The data of a run. */
export interface Task {
  tokenizer: Tokenizer;
  splits: Splits;
  /** Tokens per prompt, `<bos>` and left padding included: the plan's. */
  promptLength: number;
  /** Rows left out as their prompt was too long (`data.tooLong: "skip"`). */
  skipped?: number;
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

/**
 * The problems of a plan's data source, drawn with `rng`; `baseUrl` resolves file paths. A JSON
 * Lines file's problems carry their lines (and `file` is its path, as messages show it).
 */
async function splitsOf(
  plan: Plan,
  rng: Rng,
  baseUrl: string | URL,
): Promise<Splits | { file: string; numbered: NumberedSplits }> {
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
      const file = jsonlPath(plan, baseUrl);
      const numbered = await loadJsonlLines(file, jsonlOptions(plan), rng);
      return { file, numbered };
    }
  }
}

/**
 * How a plan's JSON Lines file loads: its fields, template and held-out rows, its size bound,
 * and the SHA-256 the plan recorded of it (`plan.inputs`), which the file must still have.
 */
export function jsonlOptions(plan: Plan): JsonlLoadOptions {
  const data = plan.recipe.data;
  if (data.kind !== "jsonl") throw new Error(`The plan's data is ${data.kind}, not jsonl`);
  const recorded = plan.inputs?.find((input) => input.field === "data.path");
  return {
    prompt: data.prompt!,
    answer: data.answer!,
    ...(data.template === undefined ? {} : { template: data.template }),
    eval: data.eval!,
    ...(data.maxBytes === undefined ? {} : { maxBytes: data.maxBytes }),
    ...(recorded === undefined ? {} : { sha256: recorded.sha256 }),
  };
}

/**
 * Where a plan's JSON Lines file is, as messages show it: a path for a `file:` URL, else the URL.
 * Relative paths start at `baseUrl`, the recipe's location.
 */
export function jsonlPath(plan: Plan, baseUrl: string | URL): string {
  const data = plan.recipe.data;
  if (data.kind !== "jsonl") throw new Error(`The plan's data is ${data.kind}, not jsonl`);
  const path = new URL(data.path, baseUrl);
  return path.protocol === "file:" ? decodeURIComponent(path.pathname) : path.href;
}

/**
 * Why `problem` of `split` does not fit the plan, as "field: what was expected, what was given",
 * or null when it fits: the prompt within the plan's prompt tokens (counted first, so that a
 * hostile prompt is refused before its characters are read), every character in the tokenizer's
 * alphabet, and, for a train problem of a warm-started policy, the answer and `<eos>` within the
 * new tokens.
 *
 * @example
 * ```ts
 * problemFit(tokenizer, { prompt: "2+2=", answer: "4", row: {} }, "train", plan);
 * // null
 * problemFit(tokenizer, { prompt: "2×2=", answer: "4", row: {} }, "train", plan);
 * // 'prompt: expected characters of the tokenizer's alphabet "0123456789+=", got "×" at 2'
 * ```
 */
export function problemFit(
  tokenizer: CharTokenizer,
  problem: Problem,
  split: "train" | "eval",
  plan: Pick<Plan, "shapes" | "model">,
): string | null {
  const { promptTokens, newTokens } = plan.shapes;
  // The prompt's length first, counted without building anything: a hostile prompt is refused
  // before its characters are looked at one by one.
  const prompt = 1 + codePoints(problem.prompt); // <bos> and one token per character
  if (prompt > promptTokens) {
    return `prompt: expected at most ${promptTokens} tokens with <bos> (data.maxPromptTokens), ` +
      `got ${prompt}`;
  }
  const known = new Set(tokenizer.alphabet);
  for (const field of ["prompt", "answer"] as const) {
    let at = 0;
    for (const c of problem[field]) {
      at++;
      if (known.has(c)) continue;
      const alphabet = tokenizer.alphabet === PRINTABLE_ASCII
        ? "printable ASCII or a newline"
        : JSON.stringify(tokenizer.alphabet);
      return `${field}: expected characters of the tokenizer's alphabet (${alphabet}), got ` +
        `${JSON.stringify(c)} (U+${
          c.codePointAt(0)!.toString(16).toUpperCase().padStart(4, "0")
        }) at character ${at}`;
    }
  }
  const warm = (plan.model.warmStart?.sftSteps ?? 0) > 0;
  const answer = codePoints(problem.answer) + 1; // and <eos>
  if (warm && split === "train" && answer > newTokens) {
    return `answer: expected at most ${newTokens} tokens with <eos> (sampling.maxNewTokens), ` +
      `as the warm start trains on it, got ${answer}`;
  }
  return null;
}

/**
 * Loads a plan's data, drawing the splits with `rng`, and checks that every problem fits the plan
 * ({@linkcode problemFit}), so that a bad row stops the run before any training: a JSON Lines
 * file's first bad line is a {@linkcode DataError} naming it (`data.jsonl:3: prompt: …`).
 *
 * @param baseUrl where relative data paths start: the recipe's location.
 */
export async function loadTask(plan: Plan, rng: Rng, baseUrl: string | URL): Promise<Task> {
  if (plan.tokenizer.kind === "hf") return await loadTextTask(plan, rng, baseUrl);
  const tokenizer = charTokenizer(plan.tokenizer.alphabet);
  const drawn = await splitsOf(plan, rng, baseUrl);
  if ("numbered" in drawn) {
    const { file, numbered } = drawn;
    const bad = [
      ...numbered.train.map((p) => ({
        ...p,
        why: problemFit(tokenizer, p.problem, "train", plan),
      })),
      ...numbered.eval.map((p) => ({ ...p, why: problemFit(tokenizer, p.problem, "eval", plan) })),
    ].filter((p) => p.why !== null).sort((a, b) => a.line - b.line);
    if (bad.length > 0) throw new DataError(file, bad[0]!.line, bad[0]!.why!);
    const splits = {
      train: numbered.train.map((p) => p.problem),
      eval: numbered.eval.map((p) => p.problem),
    };
    return { tokenizer, splits, promptLength: plan.shapes.promptTokens };
  }
  for (const [split, problems] of [["train", drawn.train], ["eval", drawn.eval]] as const) {
    for (const problem of problems) {
      const why = problemFit(tokenizer, problem, split, plan);
      if (why !== null) {
        throw new TaskError(`${split} problem ${excerpt(problem.prompt)}: ${why}`);
      }
    }
  }
  return { tokenizer, splits: drawn, promptLength: plan.shapes.promptTokens };
}

/**
 * The data of a Hugging Face policy: its tokenizer (checked against the plan's), and each JSON
 * Lines problem with its prompt's ids as the model reads them (chat template and special tokens
 * included). A prompt over `data.maxPromptTokens` is an error naming its `file:line`, skipped, or
 * cut to its last tokens, as `data.tooLong` says.
 */
async function loadTextTask(plan: Plan, rng: Rng, baseUrl: string | URL): Promise<Task> {
  const spec = plan.tokenizer;
  if (spec.kind !== "hf" || plan.model.kind !== "hfModel") {
    throw new Error("The plan's tokenizer is not a Hugging Face model's");
  }
  const dir = modelDir(plan.model.path, baseUrl);
  const tokenizer = await loadHfTokenizer(dir);
  const found = {
    vocab: tokenizer.vocabSize,
    bosId: tokenizer.bosId,
    eosId: tokenizer.eosId,
    padId: tokenizer.padId,
    addBos: tokenizer.addBos,
  };
  for (const [key, value] of Object.entries(found)) {
    const planned = spec[key as keyof typeof found];
    if (planned !== value) {
      throw new TaskError(
        `policy.path: the tokenizer of '${plan.model.path}' has ${key} ${value}, but the plan ` +
          `was made with ${planned}: the model directory changed; plan the recipe again`,
      );
    }
  }
  const drawn = await splitsOf(plan, rng, baseUrl);
  if (!("numbered" in drawn)) {
    throw new TaskError(`data.kind: a Hugging Face policy reads JSON Lines, got ${plan.data.kind}`);
  }
  const { file, numbered } = drawn;
  const data = plan.recipe.data;
  const tooLong = data.kind === "jsonl" ? data.tooLong ?? "error" : "error";
  const limit = plan.shapes.promptTokens;
  const errors: DataError[] = [];
  let skipped = 0;
  const encoded = (rows: typeof numbered.train) =>
    rows.flatMap(({ line, problem }) => {
      let ids: number[];
      try {
        ids = promptIds(tokenizer, spec, chatPrompt(problem));
      } catch (e) {
        errors.push(new DataError(file, line, `prompt: ${(e as Error).message.split("\n")[0]}`));
        return [];
      }
      if (ids.length > limit) {
        if (tooLong === "skip") {
          skipped++;
          return [];
        }
        if (tooLong === "error") {
          errors.push(
            new DataError(
              file,
              line,
              `prompt: expected at most ${limit} tokens (data.maxPromptTokens), got ` +
                `${ids.length}; raise data.maxPromptTokens or set data.tooLong to 'skip' or ` +
                "'truncate-left'",
            ),
          );
          return [];
        }
        ids = ids.slice(ids.length - limit);
      }
      return [{ ...problem, promptIds: ids }];
    });
  const splits = { train: encoded(numbered.train), eval: encoded(numbered.eval) };
  if (errors.length > 0) throw errors.sort((a, b) => a.line! - b.line!)[0]!;
  if (splits.train.length === 0) {
    throw new DataError(
      file,
      undefined,
      `every train row's prompt is over data.maxPromptTokens (${limit}) and was skipped`,
    );
  }
  return { tokenizer, splits, promptLength: limit, skipped };
}

/**
 * A problem's prompt ids: those computed when the data was loaded (a Hugging Face tokenizer's,
 * chat template included), else the tokenizer's begin token and the prompt's ids.
 */
export function encodePrompt(tokenizer: Tokenizer, problem: Problem): number[] {
  return problem.promptIds ?? tokenizer.encode(problem.prompt, { addSpecialTokens: true });
}

/**
 * A supervised example: the prompt left-padded to `promptLength` tokens, the reference answer and
 * `<eos>`, right-padded to `newTokens` completion tokens. Returns the ids, the completion mask (1
 * on answer tokens and `<eos>`) and the prompt's left padding.
 */
export function supervisedExample(
  tokenizer: Tokenizer,
  problem: Problem,
  promptLength: number,
  newTokens: number,
): { ids: number[]; mask: number[]; padding: number } {
  // Lengths before tokens: one token per character, and <eos> or <bos>.
  const answerTokens = codePoints(problem.answer) + 1;
  if (answerTokens > newTokens) {
    throw new Error(
      `Cannot train on answer ${excerpt(problem.answer)}: ${answerTokens} tokens with ` +
        `<eos>, more than the ${newTokens} new tokens sampling allows`,
    );
  }
  const promptTokens = codePoints(problem.prompt) + 1;
  if (promptTokens > promptLength) {
    throw new Error(
      `Cannot train on prompt ${excerpt(problem.prompt)}: ${promptTokens} tokens with ` +
        `<bos>, more than the plan's ${promptLength}`,
    );
  }
  const pad = tokenizer.padId!;
  const answer = [...tokenizer.encode(problem.answer), tokenizer.eosId!];
  const completion = [...answer, ...new Array<number>(newTokens - answer.length).fill(pad)];
  const mask = completion.map((_, i) => (i < answer.length ? 1 : 0));
  const prompt = encodePrompt(tokenizer, problem);
  const padding = promptLength - prompt.length;
  const ids = [...new Array<number>(padding).fill(pad), ...prompt, ...completion];
  return { ids, mask, padding };
}
