/**
 * What `validate` checks beyond the compiler: everything a run would find before its first step,
 * without training and without loading TensorFlow.js (every module imported here is free of it).
 *
 * - each `fn` reward loads as the run loads it (in its sandboxed subprocess, or in-process with
 *   `sandbox: false`) and its export exists and is a function;
 * - a JSON Lines file parses, and every problem fits the plan as the run checks it
 *   (`problemFit`: the tokenizer's alphabet, the prompt length, the answer for the warm start),
 *   split with the run's seed so that the same rows are train and eval;
 * - a checkpoint a recipe names (reference, reward model) holds `config.json` and
 *   `model.safetensors`, and a custom objective's module exists.
 *
 * Each problem is one line: `<file>:<line>: <field>: what was expected, what was given` for data,
 * `<recipe>: <field>: …` for the recipe's own fields.
 *
 * @module
 */

import type { Plan } from "../../dsl/plan.ts";
import { DataError, loadJsonlLines, type NumberedProblem } from "../data/jsonl.ts";
import { jsonlOptions, jsonlPath, loadTask, problemFit, TaskError } from "../data/task.ts";
import { charTokenizer } from "../engine/model/tokenizer.ts";
import { Rng } from "../engine/random.ts";
import { fnScorer } from "../rl/rewards/fn.ts";

/** Options of {@linkcode preflight}. */
export interface PreflightOptions {
  /** Where relative paths start: the recipe's location. */
  baseUrl: string | URL;
  /** The recipe as the user named it, which starts the lines about its fields. */
  recipe: string;
  /** Problems shown per data file; a last line counts the rest. @default 20 */
  maxPerFile?: number;
}

/**
 * Every problem a run of `plan` would meet before training, one line each; none when it would
 * start. It loads reward modules (and closes them) and reads data files, nothing more.
 *
 * @example
 * ```ts
 * const problems = await preflight(plan, { baseUrl: loaded.url, recipe: "my_recipe.ts" });
 * for (const line of problems) console.error(line);
 * // "/work/data.jsonl:3: prompt: expected characters of the tokenizer's alphabet (…), got …"
 * ```
 */
export async function preflight(plan: Plan, options: PreflightOptions): Promise<string[]> {
  const problems: string[] = [];
  const field = (path: string, message: string) =>
    problems.push(`${options.recipe}: ${path}: ${message}`);
  await checkRewards(plan, options.baseUrl, field);
  await checkFiles(plan, options.baseUrl, field);
  if (plan.recipe.data.kind === "jsonl") {
    problems.push(...await checkJsonl(plan, options.baseUrl, options.maxPerFile ?? 20));
  }
  return problems;
}

type Report = (path: string, message: string) => void;

/** Loads each `fn` reward as the run does, and closes it. */
async function checkRewards(plan: Plan, baseUrl: string | URL, report: Report): Promise<void> {
  for (const [i, spec] of plan.rewards.entries()) {
    const source = spec.source as {
      kind: string;
      module?: string;
      export?: string;
      sandbox?: boolean;
    };
    if (source.kind !== "fn") continue;
    let module: string;
    try {
      module = new URL(source.module!, baseUrl).href;
    } catch {
      report(`rewards[${i}].source.module`, `'${source.module}' does not resolve`);
      continue;
    }
    try {
      const scorer = await fnScorer({
        module,
        ...(source.export === undefined ? {} : { export: source.export }),
        ...(source.sandbox === undefined ? {} : { sandbox: source.sandbox }),
      });
      await scorer.close?.();
    } catch (e) {
      // "Cannot load reward <url>#<export>: <why>": the recipe's own words read better.
      const why = (e as Error).message.replace(/^Cannot load reward \S+: /, "");
      const name = `${source.module}#${source.export ?? "default"}`;
      report(`rewards[${i}].source`, `cannot load ${name}: ${why}`);
    }
  }
}

/** The checkpoints and objective module a recipe names exist. */
async function checkFiles(plan: Plan, baseUrl: string | URL, report: Report): Promise<void> {
  const exists = (url: URL) =>
    url.protocol !== "file:"
      ? Promise.resolve(true)
      : Deno.stat(url).then(() => true, (e) => !(e instanceof Deno.errors.NotFound));
  const checkpoint = async (path: string, dir: string) => {
    const base = new URL(dir.endsWith("/") ? dir : `${dir}/`, baseUrl);
    const missing = [];
    if (!await exists(new URL("config.json", base))) missing.push("config.json");
    // A Hugging Face directory may hold its weights in shards, listed by an index.
    const weights = ["model.safetensors", "model.safetensors.index.json"];
    if (!(await Promise.all(weights.map((f) => exists(new URL(f, base))))).includes(true)) {
      missing.push("model.safetensors");
    }
    if (missing.length > 0) {
      report(
        path,
        `expected a checkpoint directory with config.json and model.safetensors, got '${dir}' ` +
          `without ${missing.join(" and ")}`,
      );
    }
  };
  if (plan.reference.kind === "checkpoint") {
    await checkpoint("reference.checkpoint", plan.reference.checkpoint!);
  }
  for (const [i, spec] of plan.rewards.entries()) {
    const source = spec.source as { kind: string; checkpoint?: string };
    if (source.kind === "rewardModel") {
      await checkpoint(`rewards[${i}].source.checkpoint`, source.checkpoint!);
    }
  }
  const objective = plan.objective.options as { kind: string; module?: string };
  if (objective.kind === "custom" && !await exists(new URL(objective.module!, baseUrl))) {
    report("objective.module", `expected a module, got '${objective.module}' (not found)`);
  }
}

/** Every line of the plan's JSON Lines file that the run would refuse, in file order. */
async function checkJsonl(plan: Plan, baseUrl: string | URL, max: number): Promise<string[]> {
  const data = plan.recipe.data;
  if (data.kind !== "jsonl") return [];
  const file = jsonlPath(plan, baseUrl);
  let numbered;
  try {
    // The run's split, from the run's seed.
    numbered = await loadJsonlLines(file, jsonlOptions(plan), new Rng(plan.seed).fork("data"));
  } catch (e) {
    if (e instanceof DataError || e instanceof RangeError) return [(e as Error).message];
    throw e;
  }
  if (plan.tokenizer.kind === "hf") {
    // A Hugging Face tokenizer's prompts are encoded as the run encodes them: the first bad row.
    try {
      await loadTask(plan, new Rng(plan.seed).fork("data"), baseUrl);
      return [];
    } catch (e) {
      if (e instanceof DataError || e instanceof TaskError) return [e.message];
      throw e;
    }
  }
  const tokenizer = charTokenizer(plan.tokenizer.alphabet);
  const fit = (split: "train" | "eval") => (p: NumberedProblem) => ({
    line: p.line,
    why: problemFit(tokenizer, p.problem, split, plan),
  });
  const bad = [...numbered.train.map(fit("train")), ...numbered.eval.map(fit("eval"))]
    .filter((p) => p.why !== null)
    .sort((a, b) => a.line - b.line);
  const lines = bad.slice(0, max).map((p) => new DataError(file, p.line, p.why!).message);
  if (bad.length > max) lines.push(`${file}: ${bad.length - max} more problems like these`);
  return lines;
}
