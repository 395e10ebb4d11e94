import assert from "node:assert/strict";
import { assertDisjointSplits } from "./_splits.ts";
import {
  ALPHABET,
  maxAnswerChars,
  maxPromptChars,
  sortingProblem,
  sortingSplits,
} from "../../../runtime/data/sorting.ts";
import { Rng } from "../../../runtime/engine/random.ts";

Deno.test("sortingProblem() joins the values and sorts them numerically", () => {
  assert.deepEqual(sortingProblem([3, 1, 4, 1, 5]), {
    prompt: "3,1,4,1,5=",
    answer: "1,1,3,4,5",
    row: { values: [3, 1, 4, 1, 5] },
  });
  assert.deepEqual(sortingProblem([10, 2, 100]), {
    prompt: "10,2,100=",
    answer: "2,10,100",
    row: { values: [10, 2, 100] },
  });
  assert.deepEqual(sortingProblem([0]), { prompt: "0=", answer: "0", row: { values: [0] } });
});

Deno.test("sortingProblem() keeps its own copy of the values", () => {
  const values = [2, 1];
  const problem = sortingProblem(values);
  values[0] = 9;
  assert.deepEqual(problem.row.values, [2, 1]);
});

Deno.test("sortingSplits() never puts a problem in both splits, nor twice in one", () => {
  for (const [length, maxValue] of [[1, 9], [3, 9], [4, 5], [2, 99]] as const) {
    const distinct = (maxValue + 1) ** length;
    const want = {
      length,
      maxValue,
      train: Math.floor(distinct * 0.7),
      eval: Math.floor(distinct / 10),
    };
    assertDisjointSplits(sortingSplits(want, new Rng(length)), want);
  }
});

Deno.test("sortingSplits() can draw every sequence", () => {
  const { train, eval: held } = sortingSplits(
    { length: 2, maxValue: 2, train: 6, eval: 3 },
    new Rng(1),
  );
  const prompts = [...train, ...held].map((p) => p.prompt).sort();
  assert.deepEqual(prompts, [
    "0,0=",
    "0,1=",
    "0,2=",
    "1,0=",
    "1,1=",
    "1,2=",
    "2,0=",
    "2,1=",
    "2,2=",
  ]);
});

Deno.test("sortingSplits() draws large problem spaces without enumerating them", () => {
  const options = { length: 8, maxValue: 99, train: 3000, eval: 1000 };
  const { train, eval: held } = sortingSplits(options, new Rng(1));
  const all = [...train, ...held];
  assert.equal(new Set(all.map((p) => p.prompt)).size, 4000);
  assert.ok(all.every((p) => p.row.values.length === 8 && p.row.values.every((v) => v <= 99)));
  assert.ok(
    all.some((p) => p.row.values.includes(99)) && all.some((p) => p.row.values.includes(0)),
  );
  // Past 2^53 sequences too.
  const huge = sortingSplits({ length: 40, maxValue: 999, train: 10, eval: 10 }, new Rng(1));
  assert.equal(new Set([...huge.train, ...huge.eval].map((p) => p.prompt)).size, 20);
});

Deno.test("sortingSplits() is a function of the seed", () => {
  const options = { length: 4, maxValue: 9, train: 50, eval: 10 };
  assert.deepEqual(sortingSplits(options, new Rng(3)), sortingSplits(options, new Rng(3)));
  assert.notDeepEqual(sortingSplits(options, new Rng(3)), sortingSplits(options, new Rng(4)));
});

Deno.test("sortingSplits() refuses more problems than exist", () => {
  assert.throws(
    () => sortingSplits({ length: 2, maxValue: 2, train: 8, eval: 2 }, new Rng(1)),
    /Cannot draw 10 distinct sorting problems of 2 values in 0\.\.2: only 9 exist/,
  );
});

Deno.test("sortingSplits() refuses a length below 1 or a negative maxValue", () => {
  assert.throws(
    () => sortingSplits({ length: 0, maxValue: 9, train: 1, eval: 1 }, new Rng(1)),
    /Cannot draw sorting problems as 'length' must be an integer >= 1: current value is 0/,
  );
  assert.throws(
    () => sortingSplits({ length: 3, maxValue: -1, train: 1, eval: 1 }, new Rng(1)),
    /'maxValue' must be an integer in \[0, 4294967295\]: current value is -1/,
  );
});

Deno.test("sortingSplits() writes only its alphabet", () => {
  const { train, eval: held } = sortingSplits(
    { length: 5, maxValue: 20, train: 2000, eval: 200 },
    new Rng(1),
  );
  const used = new Set([...train, ...held].flatMap((p) => [...p.prompt, ...p.answer]));
  assert.deepEqual([...used].filter((c) => !ALPHABET.includes(c)), []);
  assert.deepEqual([...used].sort().join(""), [...ALPHABET].sort().join(""), "every symbol used");
});

Deno.test("maxPromptChars() and maxAnswerChars() bound sorting problems tightly", () => {
  for (const [length, maxValue] of [[1, 0], [1, 9], [3, 9], [4, 12], [2, 100], [6, 999]] as const) {
    const options = { length, maxValue };
    const digits = String(maxValue).length;
    assert.equal(maxPromptChars(options), length * digits + (length - 1) + 1);
    assert.equal(maxAnswerChars(options), length * digits + length - 1);
    const distinct = (maxValue + 1) ** length;
    const { train } = sortingSplits(
      { ...options, train: Math.min(distinct, 5000), eval: 0 },
      new Rng(1),
    );
    const prompts = train.map((p) => p.prompt.length);
    const answers = train.map((p) => p.answer.length);
    assert.ok(Math.max(...prompts) <= maxPromptChars(options), `prompt over the bound`);
    assert.ok(Math.max(...answers) <= maxAnswerChars(options), `answer over the bound`);
    // Tight where the draw covers the space or has all-D-digit sequences with fair odds.
    if (distinct <= 5000 || length <= 2) {
      assert.equal(Math.max(...prompts), maxPromptChars(options));
      assert.equal(Math.max(...answers), maxAnswerChars(options));
    }
  }
});
