/**
 * Builders: typed functions that assemble a recipe as plain data. Each one only tags its options
 * with a `kind` (like zod's builders); defaults are filled in by `compile()`, so a recipe written
 * with builders and its JSON twin are the same data. Each builder accepts only its own options:
 * `gift({ epsilon: 0.2 })` does not type-check, because `epsilon` is a clipping option.
 *
 * @example
 * ```ts
 * import { gift, recipe, rewards, tasks, tinyGpt } from "../mod.ts";
 *
 * export default recipe({
 *   name: "addition-gift",
 *   policy: tinyGpt({ layers: 2, dModel: 128 }),
 *   data: tasks.addition({ digits: 2 }),
 *   rewards: [{ source: rewards.numericAnswer() }],
 *   group: { size: 8, prompts: 16 },
 *   objective: gift(),
 *   optimizer: { lr: 3e-4 },
 *   steps: 150,
 * });
 * ```
 *
 * @module
 */

import type {
  Addition,
  Countdown,
  CustomObjective,
  HfModel,
  Jsonl,
  KindOf,
  Lora,
  Multiplication,
  Objective,
  OptionsOf,
  Recipe,
  RewardSource,
  Sorting,
  TinyGpt,
} from "./schema.ts";

/**
 * Declares a recipe. It returns its argument unchanged: the value of the function is the type
 * check in the editor. Recipes compose by spreading: `recipe({ ...base, objective: grpo() })`.
 *
 * @example
 * ```ts
 * import { gift, recipe, rewards, tasks, tinyGpt } from "./mod.ts";
 *
 * export default recipe({
 *   name: "addition-gift",
 *   policy: tinyGpt(),
 *   data: tasks.addition({ digits: 2 }),
 *   rewards: [{ source: rewards.numericAnswer() }],
 *   group: { size: 8, prompts: 16 },
 *   objective: gift(),
 *   optimizer: { lr: 3e-4 },
 *   steps: 150,
 * });
 * ```
 */
export function recipe(definition: Recipe): Recipe {
  return definition;
}

// ---------------------------------------------------------------------------------------------
// Policy

/**
 * A small Llama-style transformer (RMSNorm, rotary positions, SwiGLU, optional grouped-query
 * attention) with a character tokenizer, initialised from the recipe's seed.
 *
 * @example
 * ```ts
 * tinyGpt({ layers: 2, dModel: 128, heads: 4, warmStart: { sftSteps: 300 } });
 * ```
 */
export function tinyGpt(options: OptionsOf<TinyGpt> = {}): TinyGpt {
  return { kind: "tinyGpt", ...options };
}

/**
 * A pretrained Hugging Face checkpoint directory as the policy (`llama`, `mistral`, `qwen2`,
 * `qwen3`), with its own tokenizer and chat template. The path is relative to the recipe.
 *
 * @example
 * ```ts
 * hfModel({ path: "../models/stories260K" });
 * hfModel({ path: "/models/Qwen3-0.6B", chat: { system: "Be brief.", args: { enable_thinking: false } } });
 * ```
 */
export function hfModel(options: OptionsOf<HfModel>): HfModel {
  return { kind: "hfModel", ...options };
}

/**
 * LoRA adapters for an `hfModel` policy (PEFT's format): only the adapters train and sit in the
 * optimiser; the base weights are frozen, and the `"initial"` reference is the base with the
 * adapters off. With `adapter`, training starts from an existing PEFT adapter (its rank, alpha
 * and targets unless given). The run saves the adapter in `<run>/adapter`, and with
 * `saveMerged` the merged model in `<run>/model`.
 *
 * @example
 * ```ts
 * hfModel({ path: "/models/Qwen2.5-0.5B", lora: lora({ rank: 16, alpha: 32, targets: ["q_proj", "k_proj", "v_proj", "o_proj"] }) });
 * hfModel({ path: "/models/SmolLM2-135M", lora: lora({ adapter: "./my-adapter" }) });
 * ```
 */
export function lora(options: Lora = {}): Lora {
  return { ...options };
}

// ---------------------------------------------------------------------------------------------
// Data

/**
 * Synthetic addition problems `a+b=` with answer `c`; train and eval splits never share a problem.
 *
 * @example
 * ```ts
 * tasks.addition({ digits: 2, train: 5000, eval: 500 });
 * ```
 */
function addition(options: OptionsOf<Addition> = {}): Addition {
  return { kind: "addition", ...options };
}

/**
 * Synthetic multiplication problems `a*b=` with both operands zero-padded to `digits`, and the
 * plain product as the answer (`07*42=` → `294`); train and eval splits never share a problem.
 *
 * @example
 * ```ts
 * tasks.multiplication({ digits: 2, train: 5000, eval: 500 });
 * ```
 */
function multiplication(options: OptionsOf<Multiplication> = {}): Multiplication {
  return { kind: "multiplication", ...options };
}

/**
 * Synthetic sorting problems: `length` values from 0 to `maxValue`, joined by `,` and closed by
 * `=` (`3,1,4,1,5=`), with the values in ascending order as the answer (`1,1,3,4,5`); train and
 * eval splits never share a problem.
 *
 * @example
 * ```ts
 * tasks.sorting({ length: 5, maxValue: 9 });
 * ```
 */
function sorting(options: OptionsOf<Sorting> = {}): Sorting {
  return { kind: "sorting", ...options };
}

/**
 * Synthetic countdown problems: `numbers` numbers up to `maxNumber`, then `|`, a target up to
 * `maxTarget` and `=` (`3,7,25,4|24=`); the answer is a reference expression reaching the target
 * with `+ - * /` and parentheses, each number used at most once. Many expressions are right, so
 * score it with `rewards.countdown()`.
 *
 * @example
 * ```ts
 * tasks.countdown({ numbers: 4, maxNumber: 25, maxTarget: 100 });
 * ```
 */
function countdownTask(options: OptionsOf<Countdown> = {}): Countdown {
  return { kind: "countdown", ...options };
}

/**
 * Built-in synthetic tasks.
 *
 * @example
 * ```ts
 * const data = tasks.sorting({ length: 8, maxValue: 99, train: 20000 });
 * ```
 */
export const tasks = { addition, multiplication, sorting, countdown: countdownTask } as const;

/**
 * The options of `jsonl()`: field mapping, template, held-out rows.
 *
 * @example
 * ```ts
 * const options: JsonlOptions = { prompt: "question", template: "Q: {prompt}\nA:", eval: 100 };
 * jsonl("data/problems.jsonl", options);
 * ```
 */
export type JsonlOptions = Omit<OptionsOf<Jsonl>, "path">;

/**
 * Problems from a JSON Lines file, one object per line; `prompt` and `answer` name the fields.
 *
 * @example
 * ```ts
 * jsonl("data/gsm8k.jsonl", { prompt: "question", answer: "answer", eval: 200 });
 * ```
 */
export function jsonl(path: string, options: JsonlOptions = {}): Jsonl {
  return { kind: "jsonl", path, ...options };
}

// ---------------------------------------------------------------------------------------------
// Reward sources

type Source<K extends RewardSource["kind"]> = KindOf<RewardSource, K>;

/** 1 when the completion equals the reference answer (after the chosen normalisation), else 0. */
function exactMatch(options: OptionsOf<Source<"exactMatch">> = {}): Source<"exactMatch"> {
  return { kind: "exactMatch", ...options };
}

/**
 * 1 when the completion's number (the last number, GSM8K's `#### 42` or LaTeX `\boxed{42}`)
 * equals the reference within `tolerance`, else 0. An empty answer scores 0.
 */
function numericAnswer(options: OptionsOf<Source<"numericAnswer">> = {}): Source<"numericAnswer"> {
  return { kind: "numericAnswer", ...options };
}

/** 1 when the completion matches `pattern`, else 0. */
function regexFormat(
  pattern: string,
  options: Omit<OptionsOf<Source<"regexFormat">>, "pattern"> = {},
): Source<"regexFormat"> {
  return { kind: "regexFormat", pattern, ...options };
}

/** DAPO's soft overlong penalty over a buffer of `buffer` tokens before `maxTokens`. */
function overlongPenalty(options: OptionsOf<Source<"overlongPenalty">>): Source<"overlongPenalty"> {
  return { kind: "overlongPenalty", ...options };
}

/**
 * 1 when the completion is an arithmetic expression (`+ - * /`, parentheses) over the problem's
 * numbers, each used at most once, whose value is the target; else 0. Needs problems that carry
 * numbers and a target: `tasks.countdown()`, or `jsonl` rows with `numbers` and `target` fields.
 */
function countdownVerifier(): Source<"countdown"> {
  return { kind: "countdown" };
}

/**
 * Built-in verifiers.
 *
 * @example
 * ```ts
 * const scored = [
 *   { source: rewards.numericAnswer(), weight: 1, success: true },
 *   { source: rewards.regexFormat("^\\d+$"), weight: 0.1 },
 * ];
 * const countdown = [{ source: rewards.countdown() }];
 * ```
 */
export const rewards = {
  exactMatch,
  numericAnswer,
  regexFormat,
  overlongPenalty,
  countdown: countdownVerifier,
} as const;

/**
 * The options of `fn()`: the declared range, the sandbox and the per-call timeout.
 *
 * @example
 * ```ts
 * const options: FnOptions = { range: [0, 1], timeoutMs: 2000 };
 * fn("./my_reward.ts", "score", options);
 * ```
 */
export type FnOptions = Omit<OptionsOf<Source<"fn">>, "module" | "export">;

/**
 * A reward written in TypeScript, referenced by module specifier (relative to the recipe) and
 * export name, so that a JSON recipe can name it too. By default it runs in a subprocess with no
 * permissions (`sandbox: true`) and each call may take `timeoutMs` (10000) milliseconds.
 *
 * @example
 * ```ts
 * fn("./my_reward.ts", "score", { range: [0, 1] });
 * fn("./needs_files.ts", undefined, { sandbox: false, timeoutMs: 60_000 });
 * ```
 */
export function fn(
  module: string,
  exportName?: string,
  options: FnOptions = {},
): Source<"fn"> {
  return {
    kind: "fn",
    module,
    ...(exportName === undefined ? {} : { export: exportName }),
    ...options,
  };
}

/**
 * A remote scorer: samples are POSTed as JSON in batches and scores come back.
 *
 * @example
 * ```ts
 * http({ url: "http://127.0.0.1:8000/score", timeoutMs: 5000 });
 * ```
 */
export function http(options: OptionsOf<Source<"http">>): Source<"http"> {
  return { kind: "http", ...options };
}

/**
 * The options of `rewardModel()`: batch size and declared range.
 *
 * @example
 * ```ts
 * const options: RewardModelOptions = { batchSize: 16, range: [-5, 5] };
 * rewardModel("checkpoints/rm", options);
 * ```
 */
export type RewardModelOptions = Omit<OptionsOf<Source<"rewardModel">>, "checkpoint">;

/**
 * A learned reward model with a scalar head, which scores each sample (prompt and completion) in
 * batches of `batchSize` (64): a giftwrap checkpoint directory, or a Hugging Face
 * `*ForSequenceClassification` directory of a supported architecture with its own tokenizer (the
 * sample read as a user prompt and an assistant reply when the tokenizer has a chat template). It
 * is not a verifier, so it cannot be `eval.metric`; declare its `range` when you know it.
 *
 * @example
 * ```ts
 * rewardModel("runs/rm-20261201/checkpoints/final", { batchSize: 32, range: [-5, 5] });
 * rewardModel("/models/qwen2-reward"); // a Qwen2ForSequenceClassification directory
 * ```
 */
export function rewardModel(
  checkpoint: string,
  options: RewardModelOptions = {},
): Source<"rewardModel"> {
  return { kind: "rewardModel", checkpoint, ...options };
}

// ---------------------------------------------------------------------------------------------
// Objectives (their defaults are the schema's, dsl/schema.ts, filled in by compile())

type Of<K extends Objective["kind"]> = KindOf<Objective, K>;

/**
 * GIFT: match the group-standardised implicit reward to the group-standardised reward.
 *
 * @example
 * ```ts
 * gift(); // β_c = 1, the paper's form
 * gift({ betaC: 0.5 });
 * ```
 */
export function gift(options: OptionsOf<Of<"gift">> = {}): Of<"gift"> {
  return { kind: "gift", ...options };
}

/**
 * GRPO: group-standardised advantages, clipped token ratio, k3 KL in the loss, sequence-mean.
 *
 * @example
 * ```ts
 * grpo({ beta: 0, epsilonHigh: 0.28 }); // no KL term, DAPO's upper clip
 * ```
 */
export function grpo(options: OptionsOf<Of<"grpo">> = {}): Of<"grpo"> {
  return { kind: "grpo", ...options };
}

/**
 * Dr. GRPO: GRPO without std scaling, with a constant normaliser; no KL term by default.
 *
 * @example
 * ```ts
 * drGrpo({ beta: 0.01 }); // with a small KL term, which needs a reference
 * ```
 */
export function drGrpo(options: OptionsOf<Of<"drGrpo">> = {}): Of<"drGrpo"> {
  return { kind: "drGrpo", ...options };
}

/**
 * DAPO: clip-higher, token-mean aggregation, dynamic sampling (which needs a success reward).
 *
 * @example
 * ```ts
 * dapo({ maxSamplingRounds: 5, maskTruncated: true });
 * ```
 */
export function dapo(options: OptionsOf<Of<"dapo">> = {}): Of<"dapo"> {
  return { kind: "dapo", ...options };
}

/**
 * GSPO: a length-normalised sequence ratio, clipped to a narrow range.
 *
 * @example
 * ```ts
 * gspo({ epsilon: 3e-4, epsilonHigh: 4e-4 });
 * ```
 */
export function gspo(options: OptionsOf<Of<"gspo">> = {}): Of<"gspo"> {
  return { kind: "gspo", ...options };
}

/**
 * RLOO: leave-one-out baseline, sequence ratio, KL to the reference subtracted from the reward.
 *
 * @example
 * ```ts
 * rloo({ beta: 0 }); // no KL in the reward, so no reference needed
 * ```
 */
export function rloo(options: OptionsOf<Of<"rloo">> = {}): Of<"rloo"> {
  return { kind: "rloo", ...options };
}

/**
 * Online DPO: the best against the worst completion of each group, ties skipped.
 *
 * @example
 * ```ts
 * onlineDpo({ beta: 0.2 }); // the DPO temperature
 * ```
 */
export function onlineDpo(options: OptionsOf<Of<"onlineDpo">> = {}): Of<"onlineDpo"> {
  return { kind: "onlineDpo", ...options };
}

/**
 * UNA: (σ(β·u) − σ(r))² with u the summed log-ratio to the reference.
 *
 * @example
 * ```ts
 * una({ beta: 0.05 }); // the sigmoid's temperature
 * ```
 */
export function una(options: OptionsOf<Of<"una">> = {}): Of<"una"> {
  return { kind: "una", ...options };
}

/**
 * The options of `customObjective()`: the export name, the loss's options and what it reads.
 *
 * @example
 * ```ts
 * const options: CustomObjectiveOptions = { export: "reinforce", reads: { reference: false } };
 * customObjective("./objectives/reinforce.ts", options);
 * ```
 */
export type CustomObjectiveOptions = Omit<OptionsOf<CustomObjective>, "module">;

/**
 * Your own objective: a module (relative to the recipe) whose export (`"default"`) implements the
 * runtime's `Objective` contract `{ name, loss(batch, options) }`. `options`
 * (JSON, `{}`) is passed to `loss()` as it is. `reads` declares what the batch must carry:
 * `reference` (true) adds `refLogp` under the recipe's reference, which then defaults to
 * `"initial"`; `old` (false) says the loss reads `oldLogp`, so that with several optimiser steps
 * per batch the trainer computes π_old in a separate pass. Advantages are not computed: the loss
 * receives the raw rewards.
 *
 * @example
 * ```ts
 * customObjective("./losses/clipped_reinforce.ts");
 * customObjective("./losses/mine.ts", {
 *   export: "ratioLoss",
 *   options: { clip: 0.2, normalise: "token" },
 *   reads: { reference: false, old: true },
 * });
 * ```
 */
export function customObjective(
  module: string,
  options: CustomObjectiveOptions = {},
): CustomObjective {
  return { kind: "custom", module, ...options };
}
