/**
 * The checks both GSM8K templates pass, pointed by their environment variable at a small random
 * checkpoint of their architecture: the plan as `deno task plan` prints it, and one step trained
 * as `deno task run` trains it, to a Hugging Face `model/` that reloads.
 *
 * @module
 */

import assert from "node:assert/strict";
import { giftwrap, lines, RUN_PERMISSIONS, withTempDir } from "../_helpers.ts";
import { loadHfModel, loadModelDir } from "../../runtime/engine/model/hf.ts";
import { loadHfTokenizer } from "../../runtime/engine/model/hf_tokenizer.ts";
import type { TensorData } from "../../runtime/engine/model/safetensors.ts";
import { promptIds, renderPrompt } from "../../runtime/data/prompt.ts";

const ROOT = new URL("../../", import.meta.url);

/** The permissions of `deno task plan`, from deno.json. */
const PLAN_PERMISSIONS: string[] = JSON.parse(
  await Deno.readTextFile(new URL("deno.json", ROOT)),
).tasks.plan.split(" ").filter((word: string) => word.startsWith("--"));

/** The sample data the templates read when GIFTWRAP_GSM8K_PATH is not set. */
export const SAMPLE = decodeURIComponent(
  new URL("recipes/data/gsm8k_sample.jsonl", ROOT).pathname,
);

/** The system prompt both templates give. */
export const SYSTEM =
  "Solve the math problem step by step. Put the final answer, a number alone, in \\boxed{}.";

/** The sample's first question: the row the plan renders. */
export const FIRST_QUESTION: string = JSON.parse(
  (await Deno.readTextFile(SAMPLE)).split("\n")[0]!,
).question;

/** What a template is checked with. */
export interface Template {
  /** The recipe, relative to the repository. */
  recipe: string;
  /** The environment variable naming its model directory. */
  env: string;
  /** Writes the random checkpoint into a directory and returns its weights. */
  write: (dir: string) => Promise<Record<string, TensorData>>;
  /** The plan's `model` row, from the architecture on. */
  model: string;
  /** The first data row rendered as the model reads it, by hand. */
  prompt: string;
  /** That prompt's token count. */
  tokens: number;
  /** The template arguments the recipe gives. */
  templateArgs?: Record<string, boolean>;
  /** The learning rate the template trains with. */
  lr: number;
  /**
   * Options of `plan` beyond the recipe, and whether it may read the machine's memory (without
   * it, the cpu backend has no limit to hold the estimate to).
   *
   * @default {{ args: [], machineMemory: true }}
   */
  plan?: { args: string[]; machineMemory: boolean };
  /** What the one-step run changes besides the schedule (TypeScript source of object fields). */
  runChanges?: string;
}

/** The rows of a printed plan, each wrapped row joined into one line, by name. */
function planRows(stdout: string): Map<string, string> {
  const rows = new Map<string, string>();
  let name = "";
  for (const line of lines(stdout)) {
    const match = /^ {2}([a-z][a-z ]*?) {2,}(.*)$/.exec(line);
    if (match !== null) {
      name = match[1]!;
      rows.set(name, match[2]!);
    } else if (/^ {14}\S/.test(line) && rows.has(name)) {
      rows.set(name, `${rows.get(name)} ${line.trim()}`);
    } else {
      name = "";
    }
  }
  return rows;
}

/** `text` as the plan excerpts a long prompt: its first and last 79 characters. */
function excerpt(text: string): string {
  const chars = [...text];
  return chars.length <= 160
    ? text
    : `${chars.slice(0, 79).join("")}…${chars.slice(chars.length - 79).join("")}`;
}

/**
 * `deno task plan <template>` with the template's variable pointing at a fresh random checkpoint:
 * the architecture and dtype read from it, and the first sample problem rendered in the chat
 * template under the system prompt, with its token count.
 */
export async function checkPlan(t: Template): Promise<void> {
  await withTempDir(async (dir) => {
    const model = `${dir}/model`;
    const weights = await t.write(model);
    const { args, machineMemory } = t.plan ?? { args: [], machineMemory: true };
    const { code, stdout, stderr } = await giftwrap(
      ["plan", t.recipe, ...args],
      ROOT,
      machineMemory
        ? PLAN_PERMISSIONS
        : PLAN_PERMISSIONS.filter((p) => !p.startsWith("--allow-sys")),
      { [t.env]: model },
    );
    assert.equal(code, 0, stderr);
    const rows = planRows(stdout);
    assert.equal(
      rows.get("model")!.split(" · ").slice(0, 3).join(" · "),
      `'${model}' · ${t.model}`,
    );
    // Its parameters, a tied lm_head stored in the file not among them.
    const parameters = Object.values(weights).reduce((n, w) => n + w.data.length, 0);
    assert.ok(rows.get("policy")!.endsWith(` · ${parameters.toLocaleString("en-US")} parameters`));
    assert.match(rows.get("tokenizer")!, / · chat template, system prompt/);
    // The line wraps at spaces: the excerpt's own spaces come back as one each.
    const printed = `${JSON.stringify(excerpt(t.prompt))} · ${t.tokens} tokens`;
    assert.equal(rows.get("prompt"), printed.replace(/ +/g, " "));
    assert.match(rows.get("data")!, /^JSON Lines from '\.\/data\/gsm8k_sample\.jsonl'/);
    assert.match(stdout, /^warnings: none$/m);
  });
}

/**
 * `deno task run` of the template cut to one small step (a module spreading it, as a user would
 * shrink it), its variable pointing at a fresh random checkpoint and GIFTWRAP_GSM8K_PATH at the
 * sample: the run finishes, and its `model/` reloads as the same architecture with the same
 * tokenizer, each weight within the few AdamW steps of `lr` it took.
 */
export async function checkRun(t: Template): Promise<void> {
  await withTempDir(async (dir) => {
    const model = `${dir}/source`;
    const initial = await t.write(model);
    const recipe = `${dir}/one_step.ts`;
    await Deno.writeTextFile(
      recipe,
      `import template from ${JSON.stringify(new URL(t.recipe, ROOT).href)};\n` +
        "export default {\n" +
        "  ...template,\n" +
        "  data: { ...template.data, eval: 2 },\n" +
        "  group: { size: 4, prompts: 2 },\n" +
        "  miniBatches: 2,\n" +
        "  sampling: { ...template.sampling, maxNewTokens: 6 },\n" +
        "  steps: 1,\n" +
        "  eval: { limit: 1 },\n" +
        "  checkpoint: {},\n" +
        (t.runChanges ?? "") +
        "};\n",
    );
    const ran = await giftwrap(["run", recipe], dir, RUN_PERMISSIONS, {
      [t.env]: model,
      GIFTWRAP_GSM8K_PATH: SAMPLE,
    });
    assert.equal(ran.code, 0, ran.stderr);
    const runs = (await Array.fromAsync(Deno.readDir(`${dir}/runs`))).map((e) => e.name);
    assert.equal(runs.length, 1, runs.join(", "));
    const run = `${dir}/runs/${runs[0]}`;
    const info = JSON.parse(await Deno.readTextFile(`${run}/run.json`));
    assert.equal(info.status, "finished");
    const metrics = lines(await Deno.readTextFile(`${run}/metrics.jsonl`)).map((l) =>
      JSON.parse(l)
    );
    // the evaluation before training, then the step, its rewards named as the recipe names them
    assert.deepEqual(metrics.map((m) => m.step), [0, 1]);
    assert.deepEqual(Object.keys(metrics[1].rewards).sort(), ["correct", "format"]);

    const saved = await loadHfModel(`${run}/model`, "[out, in]");
    const source = await loadHfModel(model, "[out, in]");
    assert.equal(saved.modelType, source.modelType);
    assert.deepEqual(saved.config, source.config);
    assert.equal(saved.dtype, "F32"); // the source's dtype
    assert.deepEqual(Object.keys(saved.weights).sort(), Object.keys(initial).sort());
    // model/ holds the final checkpoint's weights, as they were trained (F32 in, F32 out).
    const final = await loadModelDir(`${run}/checkpoints/final`, "[out, in]");
    for (const [name, { data }] of Object.entries(saved.weights)) {
      assert.deepEqual(data, final.weights[name]!.data, name);
    }
    // Two AdamW steps of lr move a weight by at most about 2·lr (each ≤ lr·|m̂|/√v̂).
    for (const [name, { data }] of Object.entries(saved.weights)) {
      const before = initial[name]!.data;
      for (let i = 0; i < data.length; i++) {
        assert.ok(Math.abs(data[i]! - before[i]!) <= 3 * t.lr, `${name}[${i}] moved too far`);
      }
    }
    // Its tokenizer files: the same prompt, rendered by its template and encoded to the same ids.
    const tokenizer = await loadHfTokenizer(`${run}/model`);
    const format = { chatTemplate: true, system: SYSTEM, templateArgs: t.templateArgs ?? {} };
    assert.equal(renderPrompt(tokenizer, format, FIRST_QUESTION), t.prompt);
    assert.equal(promptIds(tokenizer, format, FIRST_QUESTION).length, t.tokens);
  });
}
