import assert from "node:assert/strict";
import { additionSplits } from "../../../runtime/data/addition.ts";
import { countdownSplits } from "../../../runtime/data/countdown.ts";
import { multiplicationSplits } from "../../../runtime/data/multiplication.ts";
import { sortingSplits } from "../../../runtime/data/sorting.ts";
import { DataError } from "../../../runtime/data/jsonl.ts";
import { encodePrompt, loadTask, supervisedExample } from "../../../runtime/data/task.ts";
import { BOS, EOS, PAD } from "../../../runtime/engine/model/tokenizer.ts";
import { Rng } from "../../../runtime/engine/random.ts";
import { withTempDir } from "../../_helpers.ts";
import { tinyPlan } from "../_tiny.ts";
import { alphabetOf } from "../../../runtime/engine/model/tokenizer.ts";
import type { CharTokenizerSpec, Plan } from "../../../dsl/plan.ts";

/** The plan's character tokenizer. */
function charSpec(plan: Plan): CharTokenizerSpec {
  assert.equal(plan.tokenizer.kind, "char");
  return plan.tokenizer as CharTokenizerSpec;
}

const SYNTHETIC = [
  [
    { kind: "addition", digits: 2, train: 30, eval: 10 },
    (rng: Rng) => additionSplits({ digits: 2, train: 30, eval: 10 }, rng),
  ],
  [
    { kind: "multiplication", digits: 1, train: 30, eval: 10 },
    (rng: Rng) => multiplicationSplits({ digits: 1, train: 30, eval: 10 }, rng),
  ],
  [
    { kind: "sorting", length: 3, maxValue: 5, train: 30, eval: 10 },
    (rng: Rng) => sortingSplits({ length: 3, maxValue: 5, train: 30, eval: 10 }, rng),
  ],
  [
    { kind: "countdown", numbers: 3, maxNumber: 9, maxTarget: 30, train: 30, eval: 10 },
    (rng: Rng) =>
      countdownSplits({ numbers: 3, maxNumber: 9, maxTarget: 30, train: 30, eval: 10 }, rng),
  ],
] as const;

Deno.test("loadTask() draws each synthetic task's splits from the seed, in the plan's tokenizer", async () => {
  for (const [data, splits] of SYNTHETIC) {
    const plan = tinyPlan({ data });
    const task = await loadTask(plan, new Rng(3), "file:///");
    // The task's own generator, drawn from the same stream.
    assert.deepEqual(task.splits, splits(new Rng(3)), data.kind);
    assert.equal(task.splits.train.length, 30);
    assert.equal(task.splits.eval.length, 10);
    assert.equal(alphabetOf(task.tokenizer), charSpec(plan).alphabet, data.kind);
    assert.equal(task.tokenizer.vocabSize, plan.shapes.vocab, data.kind);
    assert.equal(task.promptLength, plan.shapes.promptTokens);
    // The same seed draws the same problems; another seed others.
    assert.deepEqual((await loadTask(plan, new Rng(3), "file:///")).splits, task.splits);
    assert.notDeepEqual((await loadTask(plan, new Rng(4), "file:///")).splits, task.splits);
  }
});

/** `n` rows `{"q": "a+b", "a": "sum", "id": i}`. */
function sums(n: number): string {
  return Array.from({ length: n }, (_, i) => {
    const [a, b] = [i % 7, (i * 3) % 5];
    return JSON.stringify({ q: `${a}+${b}`, a: `${a + b}`, id: i });
  }).join("\n") + "\n";
}

/** The tiny recipe on `data/sums.jsonl`, with `changes` to its data and recipe. */
function jsonlPlan(data: Record<string, unknown> = {}, changes: Record<string, unknown> = {}) {
  return tinyPlan({
    data: {
      kind: "jsonl",
      path: "data/sums.jsonl",
      prompt: "q",
      answer: "a",
      template: "{prompt}=",
      eval: 4,
      maxPromptTokens: 8,
      ...data,
    } as never,
    sampling: { maxNewTokens: 3 },
    ...changes,
  });
}

Deno.test("loadTask() reads JSON Lines relative to the recipe, held-out rows drawn from the seed", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/data`);
    await Deno.writeTextFile(`${dir}/data/sums.jsonl`, sums(12));
    const plan = jsonlPlan();
    const base = new URL(`file://${dir}/recipe.ts`);
    const task = await loadTask(plan, new Rng(5), base);
    assert.equal(task.splits.train.length, 8);
    assert.equal(task.splits.eval.length, 4);
    assert.equal(task.promptLength, 8);
    assert.equal(alphabetOf(task.tokenizer), charSpec(plan).alphabet);
    // Every row once, the template applied, the row kept.
    const all = [...task.splits.train, ...task.splits.eval];
    assert.deepEqual(all.map((p) => (p.row as { id: number }).id).sort((a, b) => a - b), [
      ...Array(12).keys(),
    ]);
    const seven = all.find((p) => (p.row as { id: number }).id === 7)!;
    assert.deepEqual(seven, { prompt: "0+1=", answer: "1", row: { q: "0+1", a: "1", id: 7 } });
    assert.deepEqual((await loadTask(plan, new Rng(5), base)).splits, task.splits);
    assert.notDeepEqual((await loadTask(plan, new Rng(6), base)).splits.eval, task.splits.eval);
  });
});

Deno.test("loadTask() refuses data the plan cannot use, in one line naming the file and the problem", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/data`);
    const file = `${dir}/data/sums.jsonl`;
    const base = new URL(`file://${dir}/`);
    const failure = async (text: string, plan = jsonlPlan()): Promise<Error> => {
      await Deno.writeTextFile(file, text);
      try {
        await loadTask(plan, new Rng(1), base);
      } catch (e) {
        assert.ok(!(e as Error).message.includes("\n"), (e as Error).message);
        return e as Error;
      }
      assert.fail("loadTask() did not throw");
    };
    const rows = (...extra: object[]) =>
      sums(8) + extra.map((row) => JSON.stringify(row)).join("\n") + "\n";

    // 7 + 2 = 9 tokens with <bos> and the template's '=': more than maxPromptTokens (8).
    const long = await failure(rows({ q: "1234567", a: "1" }));
    assert.ok(long instanceof DataError);
    assert.equal(
      long.message,
      `${file}:9: prompt: expected at most 8 tokens with <bos> (data.maxPromptTokens), got 9`,
    );
    // A character outside the printable ASCII alphabet of JSON Lines data.
    const foreign = await failure(rows({ q: "1+é", a: "1" }));
    assert.ok(foreign instanceof DataError);
    assert.equal(
      foreign.message,
      `${file}:9: prompt: expected characters of the tokenizer's alphabet (printable ` +
        'ASCII or a newline), got "é" (U+00E9) at character 3',
    );
    // An answer the warm start cannot fit in maxNewTokens (3): 3 digits and <eos>. Only a train
    // row is trained on: with every row in train, the check cannot miss it.
    const answer = await failure(rows({ q: "1+1", a: "123" }), jsonlPlan({ eval: 0 }));
    assert.ok(answer instanceof DataError);
    assert.equal(
      answer.message,
      `${file}:9: answer: expected at most 3 tokens with <eos> (sampling.maxNewTokens), ` +
        "as the warm start trains on it, got 4",
    );
    // Without a warm start, that answer is only a reward's business.
    const cold = jsonlPlan({ eval: 0 }, {
      policy: { kind: "tinyGpt", layers: 1, dModel: 32, heads: 2 },
    });
    await Deno.writeTextFile(file, rows({ q: "1+1", a: "123" }));
    assert.equal((await loadTask(cold, new Rng(1), base)).splits.train.length, 9);
    // A missing file, and a line that is not JSON: the loader's errors, naming the file.
    await Deno.remove(file);
    await assert.rejects(() => loadTask(jsonlPlan(), new Rng(1), base), /data\/sums\.jsonl/);
    const bad = await failure(sums(3) + "{oops\n");
    assert.ok(bad instanceof DataError);
    assert.match(bad.message, /data\/sums\.jsonl:4: invalid JSON/);
  });
});

Deno.test("encodePrompt() and supervisedExample() lay a problem out as the model reads it", async () => {
  const { tokenizer } = await loadTask(tinyPlan(), new Rng(1), "file:///");
  const problem = { prompt: "1+4=", answer: "5", row: {} };
  // "0123456789+=": '0' is 3, so '1' 4, '4' 7, '5' 8, '+' 13, '=' 14.
  assert.deepEqual(encodePrompt(tokenizer, problem), [BOS, 4, 13, 7, 14]);
  assert.deepEqual(supervisedExample(tokenizer, problem, 7, 3), {
    ids: [PAD, PAD, BOS, 4, 13, 7, 14, 8, EOS, PAD],
    mask: [1, 1, 0],
    padding: 2,
  });
  assert.throws(
    () => supervisedExample(tokenizer, { ...problem, answer: "55" }, 7, 2),
    /^Error: Cannot train on answer "55": 3 tokens with <eos>, more than the 2 new tokens sampling allows$/,
  );
  assert.throws(
    () => supervisedExample(tokenizer, problem, 4, 3),
    /^Error: Cannot train on prompt "1\+4=": 5 tokens with <bos>, more than the plan's 4$/,
  );
});
