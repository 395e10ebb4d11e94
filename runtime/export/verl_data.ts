/**
 * A recipe's data in verl's RL dataset layout: the rows `verl.trainer.main_ppo` reads from
 * `data.train_files` and `data.val_files` (its `RLHFDataset`), one per problem, written as
 * Parquet.
 *
 * The problems are those a giftwrap run of the plan trains and evaluates on, in the same order:
 * `loadTask()` with the run's own random stream (`new Rng(plan.seed).fork("data")`, as
 * `execute()` hands `setUp()` its seed), so the held-out split is the very same one, and a row
 * `data.tooLong: "skip"` drops is dropped here too. A synthetic task's problems are the ones it
 * draws (`data.train` and `data.eval` of them).
 *
 * Each row:
 *
 * - `data_source`: `giftwrap/<recipe name>`;
 * - `prompt`: the chat messages giftwrap renders with the chat template — the row's conversation,
 *   or the prompt as one user message — with the recipe's system prompt first, as giftwrap puts
 *   it, when the prompts are rendered with a chat template (`policy.chat`) and the conversation
 *   does not open with a system message of its own; verl applies the model's template itself;
 * - `ability`: the data kind (`jsonl`, `addition`, …);
 * - `reward_model`: `{ style: "rule", ground_truth: <answer> }`;
 * - `extra_info`: `{ split, index, prompt, answer, row }` — the split, the position in it, and
 *   what giftwrap's rewards receive as `Sample.prompt`, `answer` and `row` (the row as JSON), so
 *   that verl's reward hook can hand them back to a giftwrap reward server unchanged.
 *
 * Not carried over: the chat template's arguments (`plan.tokenizer.templateArgs`, such as
 * `enable_thinking`), which are verl's `data.apply_chat_template_kwargs`, and the prompt length
 * (`data.max_prompt_length`); a recipe whose prompts are plain text (a character tokenizer, or a
 * model without a chat template) has no verl equivalent, as verl always applies the template.
 *
 * @module
 */

import type { Plan } from "../../dsl/plan.ts";
import { loadTask } from "../data/task.ts";
import type { Problem } from "../data/types.ts";
import { Rng } from "../engine/random.ts";
import { type ParquetField, type ParquetType, writeParquet } from "./parquet.ts";

/** One chat message of a verl prompt. */
export interface VerlMessage {
  role: string;
  content: string;
}

/**
 * One row of verl's RL dataset.
 *
 * @example
 * ```ts
 * const row: VerlRow = {
 *   data_source: "giftwrap/addition",
 *   prompt: [{ role: "user", content: "12+30=" }],
 *   ability: "addition",
 *   reward_model: { style: "rule", ground_truth: "42" },
 *   extra_info: { split: "train", index: 0, prompt: "12+30=", answer: "42", row: '{"a":12,"b":30}' },
 * };
 * ```
 */
export interface VerlRow {
  /** `giftwrap/<recipe name>`. */
  data_source: string;
  /** The messages the model's chat template renders. */
  prompt: VerlMessage[];
  /** The recipe's data kind. */
  ability: string;
  /** The reference answer, for verl's rule-based reward hook. */
  reward_model: { style: "rule"; ground_truth: string };
  /** What giftwrap's rewards see of the problem, and where it is in its split. */
  extra_info: {
    split: "train" | "eval";
    /** The problem's position in its split, from 0. */
    index: number;
    /** `Sample.prompt`: the prompt text (a conversation's last user message). */
    prompt: string;
    /** `Sample.answer`: the reference answer. */
    answer: string;
    /** `Sample.row` as JSON. */
    row: string;
  };
}

/**
 * A recipe's verl rows, split as a giftwrap run splits its problems.
 *
 * @example
 * ```ts
 * const data: VerlData = await verlRows(plan, recipeUrl);
 * console.log(data.train.length, data.eval.length);
 * ```
 */
export interface VerlData {
  train: VerlRow[];
  eval: VerlRow[];
}

/** A string field. */
function text(name: string): ParquetField {
  return { name, type: "string" };
}

/** A struct type of string fields. */
function strings(...names: string[]): ParquetType {
  return { struct: names.map(text) };
}

/**
 * The Parquet columns of {@linkcode VerlRow}: `prompt` a list<struct<role, content>>,
 * `reward_model` and `extra_info` structs, `extra_info.index` an int64, every other leaf a string.
 */
export const VERL_SCHEMA: readonly ParquetField[] = [
  text("data_source"),
  { name: "prompt", type: { list: strings("role", "content") } },
  text("ability"),
  { name: "reward_model", type: strings("style", "ground_truth") },
  {
    name: "extra_info",
    type: {
      struct: [
        text("split"),
        { name: "index", type: "int64" },
        text("prompt"),
        text("answer"),
        text("row"),
      ],
    },
  },
];

/**
 * The messages giftwrap renders for `problem` with the chat template: its conversation or its
 * prompt as one user message, after `system` unless the conversation opens with a system message
 * (as `renderChat()` puts it).
 */
function messagesOf(problem: Problem, system: string | null): VerlMessage[] {
  const messages = problem.messages === undefined
    ? [{ role: "user", content: problem.prompt }]
    : problem.messages.map(({ role, content }) => ({ role, content }));
  if (system !== null && messages[0]?.role !== "system") {
    messages.unshift({ role: "system", content: system });
  }
  return messages;
}

/**
 * The verl rows of a plan's data: the train and eval problems a giftwrap run of `plan` would use,
 * in its order (see the module's description).
 *
 * @param baseUrl where relative data paths start: the recipe's location.
 * @throws the errors of `loadTask()` (a bad data row, a changed model directory) unchanged.
 *
 * @example
 * ```ts
 * const { train, eval: held } = await verlRows(plan, new URL("./recipes/", import.meta.url));
 * train[0]!.extra_info; // { split: "train", index: 0, prompt: "…", answer: "…", row: "{…}" }
 * ```
 */
export async function verlRows(plan: Plan, baseUrl: string | URL): Promise<VerlData> {
  const task = await loadTask(plan, new Rng(plan.seed).fork("data"), baseUrl);
  const spec = plan.tokenizer;
  // renderPrompt() adds the system prompt only through the chat template.
  const system = spec.kind === "hf" && spec.chatTemplate ? spec.system : null;
  const rowsOf = (problems: Problem[], split: "train" | "eval"): VerlRow[] =>
    problems.map((problem, index) => ({
      data_source: `giftwrap/${plan.name}`,
      prompt: messagesOf(problem, system),
      ability: plan.data.kind,
      reward_model: { style: "rule", ground_truth: problem.answer },
      extra_info: {
        split,
        index,
        prompt: problem.prompt,
        answer: problem.answer,
        row: JSON.stringify(problem.row),
      },
    }));
  return { train: rowsOf(task.splits.train, "train"), eval: rowsOf(task.splits.eval, "eval") };
}

/**
 * Writes verl rows into `dir` (made if need be) as `train.parquet` and `eval.parquet`, in verl's
 * layout ({@linkcode VERL_SCHEMA}); no eval file when nothing is held out (an earlier one is
 * removed). Returns the paths.
 *
 * @example
 * ```ts
 * const files = await writeVerlData(await verlRows(plan, baseUrl), "export/data");
 * // { train: "export/data/train.parquet", eval: "export/data/eval.parquet" }
 * ```
 */
export async function writeVerlData(
  rows: VerlData,
  dir: string,
): Promise<{ train: string; eval: string | null }> {
  await Deno.mkdir(dir, { recursive: true });
  const train = `${dir}/train.parquet`;
  await writeParquet(train, VERL_SCHEMA, rows.train);
  const held = `${dir}/eval.parquet`;
  if (rows.eval.length === 0) {
    // An earlier export's eval file would be read as this one's.
    await Deno.remove(held).catch((e) => {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    });
    return { train, eval: null };
  }
  await writeParquet(held, VERL_SCHEMA, rows.eval);
  return { train, eval: held };
}
