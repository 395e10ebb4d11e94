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
  Jsonl,
  KindOf,
  Objective,
  OptionsOf,
  Recipe,
  RewardSource,
  TinyGpt,
} from "./schema.ts";

/**
 * Declares a recipe. It returns its argument unchanged: the value of the function is the type
 * check in the editor. Recipes compose by spreading: `recipe({ ...base, objective: grpo() })`.
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

/** Built-in synthetic tasks. */
export const tasks = { addition } as const;

/** The options of `jsonl()`: field mapping, template, held-out rows. */
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
 * Built-in verifiers.
 *
 * @example
 * ```ts
 * const scored = [
 *   { source: rewards.numericAnswer(), weight: 1, success: true },
 *   { source: rewards.regexFormat("^\\d+$"), weight: 0.1 },
 * ];
 * ```
 */
export const rewards = { exactMatch, numericAnswer, regexFormat, overlongPenalty } as const;

/**
 * A reward written in TypeScript, referenced by module specifier (relative to the recipe) and
 * export name, so that a JSON recipe can name it too.
 *
 * @example
 * ```ts
 * fn("./my_reward.ts", "score", { range: [0, 1] });
 * ```
 */
export function fn(
  module: string,
  exportName?: string,
  options: Pick<OptionsOf<Source<"fn">>, "range"> = {},
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

// ---------------------------------------------------------------------------------------------
// Objectives (defaults in OBJECTIVES.md, filled in by compile())

type Of<K extends Objective["kind"]> = KindOf<Objective, K>;

/** GIFT: match the group-standardised implicit reward to the group-standardised reward. */
export function gift(options: OptionsOf<Of<"gift">> = {}): Of<"gift"> {
  return { kind: "gift", ...options };
}

/** GRPO: group-standardised advantages, clipped token ratio, k3 KL (β 0.04), sequence-mean. */
export function grpo(options: OptionsOf<Of<"grpo">> = {}): Of<"grpo"> {
  return { kind: "grpo", ...options };
}

/** Dr. GRPO: GRPO without std scaling, constant normaliser, no KL. */
export function drGrpo(options: OptionsOf<Of<"drGrpo">> = {}): Of<"drGrpo"> {
  return { kind: "drGrpo", ...options };
}

/** DAPO: clip-higher (0.2/0.28), token-mean, dynamic sampling. */
export function dapo(options: OptionsOf<Of<"dapo">> = {}): Of<"dapo"> {
  return { kind: "dapo", ...options };
}

/** GSPO: length-normalised sequence ratio clipped to [1 − 3e-4, 1 + 4e-4]. */
export function gspo(options: OptionsOf<Of<"gspo">> = {}): Of<"gspo"> {
  return { kind: "gspo", ...options };
}

/** RLOO: leave-one-out baseline, sequence ratio, KL (β 0.05) in the reward. */
export function rloo(options: OptionsOf<Of<"rloo">> = {}): Of<"rloo"> {
  return { kind: "rloo", ...options };
}

/** Online DPO: best against worst completion of each group, ties skipped (β 0.1). */
export function onlineDpo(options: OptionsOf<Of<"onlineDpo">> = {}): Of<"onlineDpo"> {
  return { kind: "onlineDpo", ...options };
}

/** UNA: (σ(β·u) − σ(r))² with u the summed log-ratio to the reference (β 0.03). */
export function una(options: OptionsOf<Of<"una">> = {}): Of<"una"> {
  return { kind: "una", ...options };
}
