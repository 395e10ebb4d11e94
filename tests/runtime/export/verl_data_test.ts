// verlRows() on real recipes: recipes/qwen_gsm8k.ts (pointed at a small random Qwen3-shaped
// checkpoint with Qwen3's real tokenizer) gives the 12 train and 4 eval problems of the run, in
// its order, under the recipe's system prompt; a conversation row keeps its messages; a synthetic
// task gives its drawn problems. Each row's messages, through the model's chat template with the
// recipe's template arguments (as verl renders them), are the text the giftwrap run reads.
// writeVerlData()'s files read back with npm hyparquet.

import assert from "node:assert/strict";
import { parquetReadObjects } from "hyparquet";
import { hfModel } from "../../../mod.ts";
import type { Recipe } from "../../../dsl/schema.ts";
import qwenGsm8k from "../../../recipes/qwen_gsm8k.ts";
import { loadTask } from "../../../runtime/data/task.ts";
import { additionSplits } from "../../../runtime/data/addition.ts";
import { Rng } from "../../../runtime/engine/random.ts";
import {
  type VerlData,
  type VerlRow,
  verlRows,
  writeVerlData,
} from "../../../runtime/export/verl_data.ts";
import type { HfTokenizerSpec, Plan } from "../../../dsl/plan.ts";
import type { Splits } from "../../../runtime/data/types.ts";
import { chatPrompt, renderPrompt } from "../../../runtime/data/prompt.ts";
import { renderChat } from "../../../runtime/engine/model/chat_template.ts";
import { loadHfTokenizer } from "../../../runtime/engine/model/hf_tokenizer.ts";
import { withTempDir } from "../../_helpers.ts";
import { writeQwen3 } from "../../recipes/_hf_checkpoints.ts";
import { SAMPLE, SYSTEM } from "../../recipes/_gsm8k.ts";
import { hfPlan, QWEN3_TOKENIZER, TINY_QWEN3, writeHfModel, writeJsonl } from "../_hf.ts";
import { tinyPlan } from "../_tiny.ts";

const RECIPES = new URL("../../../recipes/", import.meta.url);

/** The sample's lines, as objects. */
const LINES: Record<string, string>[] = (await Deno.readTextFile(SAMPLE)).trim().split("\n")
  .map((line) => JSON.parse(line));

/**
 * recipes/qwen_gsm8k.ts with its policy at `model` and `changes` spread over it, planned on cpu
 * (its budget is over wasm's heap at Qwen3's vocabulary; the backend does not touch the data).
 */
async function qwenPlan(model: string, changes: Partial<Recipe> = {}) {
  const policy = qwenGsm8k.policy;
  assert.equal(policy.kind, "hfModel");
  const recipe: Recipe = {
    ...qwenGsm8k,
    policy: { ...policy, path: model },
    backend: "cpu",
    ...changes,
  };
  return await hfPlan(recipe, RECIPES);
}

/** The rows hyparquet reads from the Parquet file `path`. */
async function readParquet(path: string): Promise<Record<string, unknown>[]> {
  const bytes = await Deno.readFile(path);
  return await parquetReadObjects({ file: bytes.buffer as ArrayBuffer });
}

/**
 * That verl's rendering of each row — the model's chat template over `prompt` with the plan's
 * template arguments, `add_generation_prompt` on — is the text giftwrap's run reads for the
 * problem.
 */
async function assertSameText(plan: Plan, model: string, rows: VerlData, splits: Splits) {
  const tokenizer = await loadHfTokenizer(model);
  assert.ok(plan.tokenizer.kind === "hf" && tokenizer.chatTemplate !== null);
  const templateArgs = plan.tokenizer.templateArgs;
  for (const split of ["train", "eval"] as const) {
    rows[split].forEach((row, i) => {
      assert.equal(
        renderChat(tokenizer.chatTemplate, { messages: row.prompt }, { templateArgs }),
        renderPrompt(tokenizer, plan.tokenizer as HfTokenizerSpec, chatPrompt(splits[split][i]!)),
      );
    });
  }
}

/** `rows` as a reader gives them back: `extra_info.index` an int64 (bigint). */
function asRead(rows: VerlRow[]): unknown[] {
  return rows.map((row) => ({
    ...row,
    extra_info: { ...row.extra_info, index: BigInt(row.extra_info.index) },
  }));
}

Deno.test("verlRows() gives recipes/qwen_gsm8k.ts's train and eval problems in the run's order, under its system prompt", async () => {
  await withTempDir(async (dir) => {
    await writeQwen3(`${dir}/qwen3`);
    const plan = await qwenPlan(`${dir}/qwen3`);
    const rows = await verlRows(plan, RECIPES);
    // The run's problems: execute() forks its data stream from the plan's seed.
    const { splits } = await loadTask(plan, new Rng(plan.seed).fork("data"), RECIPES);
    assert.deepEqual(rows.train.map((r) => r.extra_info.prompt), splits.train.map((p) => p.prompt));
    assert.deepEqual(rows.eval.map((r) => r.extra_info.prompt), splits.eval.map((p) => p.prompt));
    // 4 of the sample's 16 problems held out; together, every line of the file once.
    assert.equal(rows.eval.length, 4);
    assert.equal(rows.train.length, 12);
    assert.deepEqual(
      [...rows.train, ...rows.eval].map((r) => r.extra_info.prompt).sort(),
      LINES.map((line) => line.question).sort(),
    );
    for (const [split, list] of [["train", rows.train], ["eval", rows.eval]] as const) {
      list.forEach((row, index) => {
        const line = LINES.find((l) => l.question === row.extra_info.prompt)!;
        assert.deepEqual(row, {
          data_source: "giftwrap/qwen-gsm8k",
          prompt: [{ role: "system", content: SYSTEM }, { role: "user", content: line.question }],
          ability: "jsonl",
          reward_model: { style: "rule", ground_truth: line.answer },
          extra_info: {
            split,
            index,
            prompt: line.question,
            answer: line.answer,
            row: JSON.stringify(line),
          },
        });
      });
    }
    await assertSameText(plan, `${dir}/qwen3`, rows, splits);
    // Another seed holds out other problems: the split is the seed's, not the file's order.
    const other = await verlRows(await qwenPlan(`${dir}/qwen3`, { seed: 2 }), RECIPES);
    assert.notDeepEqual(
      other.eval.map((r) => r.extra_info.prompt),
      rows.eval.map((r) => r.extra_info.prompt),
    );
  });
});

Deno.test("writeVerlData() writes train.parquet and eval.parquet that hyparquet reads back as the rows", async () => {
  await withTempDir(async (dir) => {
    await writeQwen3(`${dir}/qwen3`);
    const rows = await verlRows(await qwenPlan(`${dir}/qwen3`), RECIPES);
    const files = await writeVerlData(rows, `${dir}/out/data`);
    assert.deepEqual(files, {
      train: `${dir}/out/data/train.parquet`,
      eval: `${dir}/out/data/eval.parquet`,
    });
    assert.deepEqual(await readParquet(files.train), asRead(rows.train));
    assert.deepEqual(await readParquet(files.eval!), asRead(rows.eval));
    // Written again, the same bytes.
    const first = await Deno.readFile(files.train);
    await writeVerlData(rows, `${dir}/out/data`);
    assert.deepEqual(await Deno.readFile(files.train), first);
    // Nothing held out: no eval file, and the earlier one is gone.
    const none = await writeVerlData({ train: rows.train, eval: [] }, `${dir}/out/data`);
    assert.equal(none.eval, null);
    assert.deepEqual(
      (await Array.fromAsync(Deno.readDir(`${dir}/out/data`))).map((e) => e.name),
      ["train.parquet"],
    );
  });
});

Deno.test("verlRows() keeps a row's conversation, the system prompt first unless it opens with its own", async () => {
  await withTempDir(async (dir) => {
    await writeHfModel(`${dir}/qwen3`, TINY_QWEN3, QWEN3_TOKENIZER);
    const lines = [
      { messages: [{ role: "user", content: "Dis bonjour 👋" }], answer: "bonjour" },
      {
        messages: [
          { role: "system", content: "Réponds en français." },
          { role: "user", content: "Hi" },
          { role: "assistant", content: "Salut" },
          { role: "user", content: "Bye" },
        ],
        answer: "au revoir",
      },
      { prompt: "What is 2+2?", answer: "4" },
    ];
    await writeJsonl(`${dir}/chat.jsonl`, lines);
    const recipe: Recipe = {
      ...qwenGsm8k,
      name: "chat",
      policy: hfModel({
        path: "qwen3",
        chat: { system: "Be brief.", args: { enable_thinking: false } },
      }),
      data: { kind: "jsonl", path: "chat.jsonl", eval: 0, maxPromptTokens: 64 },
      sampling: { maxNewTokens: 8, temperature: 1 },
    };
    const plan = await hfPlan(recipe, `file://${dir}/`);
    const rows = await verlRows(plan, `file://${dir}/`);
    const { splits } = await loadTask(plan, new Rng(plan.seed).fork("data"), `file://${dir}/`);
    await assertSameText(plan, `${dir}/qwen3`, rows, splits);
    assert.equal(rows.eval.length, 0);
    const byAnswer = new Map(rows.train.map((r) => [r.extra_info.answer, r]));
    assert.deepEqual(byAnswer.get("bonjour")!.prompt, [
      { role: "system", content: "Be brief." },
      { role: "user", content: "Dis bonjour 👋" },
    ]);
    assert.equal(byAnswer.get("bonjour")!.extra_info.prompt, "Dis bonjour 👋");
    assert.equal(byAnswer.get("bonjour")!.extra_info.row, JSON.stringify(lines[0]));
    // Its own system message stands; Sample.prompt is the last user message.
    assert.deepEqual(byAnswer.get("au revoir")!.prompt, lines[1]!.messages);
    assert.equal(byAnswer.get("au revoir")!.extra_info.prompt, "Bye");
    assert.deepEqual(byAnswer.get("4")!.prompt, [
      { role: "system", content: "Be brief." },
      { role: "user", content: "What is 2+2?" },
    ]);
    assert.deepEqual(rows.train.map((r) => r.extra_info.index), [0, 1, 2]);
  });
});

Deno.test("verlRows() gives a synthetic task's drawn problems as one user message each, no system prompt", async () => {
  const plan = tinyPlan(); // one-digit addition, 60 train and 20 eval problems, seed 7
  const rows = await verlRows(plan, "file:///");
  const drawn = additionSplits({ digits: 1, train: 60, eval: 20 }, new Rng(7).fork("data"));
  assert.equal(rows.train.length, 60);
  assert.equal(rows.eval.length, 20);
  for (const [split, problems] of [["train", drawn.train], ["eval", drawn.eval]] as const) {
    assert.deepEqual(
      rows[split],
      problems.map((p, index) => ({
        data_source: "giftwrap/tiny",
        prompt: [{ role: "user", content: p.prompt }],
        ability: "addition",
        reward_model: { style: "rule", ground_truth: p.answer },
        extra_info: {
          split,
          index,
          prompt: p.prompt,
          answer: p.answer,
          row: `{"a":${p.row.a},"b":${p.row.b}}`,
        },
      })),
    );
  }
  // Each answer the sum of its row's operands, as a reward reading the row would check it.
  for (const row of [...rows.train, ...rows.eval]) {
    const { a, b } = JSON.parse(row.extra_info.row);
    assert.equal(row.extra_info.prompt, `${a}+${b}=`);
    assert.equal(row.reward_model.ground_truth, String(a + b));
  }
});
