import assert from "node:assert/strict";
import { assertDisjointSplits } from "./_splits.ts";
import {
  ALPHABET,
  maxAnswerChars,
  maxPromptChars,
  multiplicationProblem,
  multiplicationSplits,
} from "../../../runtime/data/multiplication.ts";
import { Rng } from "../../../runtime/engine/random.ts";

Deno.test("multiplicationProblem() zero-pads operands and writes the plain product", () => {
  assert.deepEqual(multiplicationProblem(1207, 2), {
    prompt: "12*07=",
    answer: "84",
    row: { a: 12, b: 7 },
  });
  assert.deepEqual(multiplicationProblem(9999, 2), {
    prompt: "99*99=",
    answer: "9801",
    row: { a: 99, b: 99 },
  });
  assert.deepEqual(multiplicationProblem(5, 1), {
    prompt: "0*5=",
    answer: "0",
    row: { a: 0, b: 5 },
  });
});

Deno.test("multiplicationSplits() never puts a problem in both splits, nor twice in one", () => {
  // All of the 1- and 2-digit spaces; 10,000 of the 3-digit one (still a full permutation).
  for (const digits of [1, 2, 3]) {
    const drawn = Math.min(10 ** (2 * digits), 10_000);
    const want = { digits, train: Math.floor(drawn * 0.7), eval: Math.floor(drawn * 0.3) };
    assertDisjointSplits(multiplicationSplits(want, new Rng(digits)), want);
  }
});

Deno.test("multiplicationSplits() draws large problem spaces without enumerating them", () => {
  const options = { digits: 6, train: 3000, eval: 1000 };
  const { train, eval: held } = multiplicationSplits(options, new Rng(1));
  const all = new Set([...train, ...held].map((p) => p.prompt));
  assert.equal(all.size, 4000);
  assert.ok(train.every((p) => /^\d{6}\*\d{6}=$/.test(p.prompt)));
});

Deno.test("multiplicationSplits() writes products past 2^53 exactly", () => {
  const { train } = multiplicationSplits({ digits: 9, train: 200, eval: 0 }, new Rng(1));
  for (const { answer, row } of train) {
    assert.equal(answer, String(BigInt(row.a) * BigInt(row.b)));
  }
  assert.ok(train.some((p) => p.row.a * p.row.b > Number.MAX_SAFE_INTEGER), "no large product");
});

Deno.test("multiplicationSplits() is a function of the seed", () => {
  const options = { digits: 2, train: 50, eval: 10 };
  assert.deepEqual(
    multiplicationSplits(options, new Rng(3)),
    multiplicationSplits(options, new Rng(3)),
  );
  assert.notDeepEqual(
    multiplicationSplits(options, new Rng(3)),
    multiplicationSplits(options, new Rng(4)),
  );
});

Deno.test("multiplicationSplits() refuses more problems than exist", () => {
  assert.throws(
    () => multiplicationSplits({ digits: 1, train: 90, eval: 20 }, new Rng(1)),
    /Cannot draw 110 distinct 1-digit multiplication problems: only 100 exist/,
  );
});

Deno.test("multiplicationSplits() refuses digits outside [1, 9]", () => {
  assert.throws(
    () => multiplicationSplits({ digits: 0, train: 1, eval: 1 }, new Rng(1)),
    {
      name: "RangeError",
      message: "Cannot draw multiplication problems as 'digits' must be an integer in [1, 9]: " +
        "current value is 0",
    },
  );
  assert.throws(() => multiplicationSplits({ digits: 10, train: 1, eval: 1 }, new Rng(1)));
});

Deno.test("multiplicationSplits() writes only its alphabet", () => {
  const { train, eval: held } = multiplicationSplits(
    { digits: 2, train: 9000, eval: 1000 },
    new Rng(1),
  );
  const used = new Set([...train, ...held].flatMap((p) => [...p.prompt, ...p.answer]));
  assert.deepEqual([...used].filter((c) => !ALPHABET.includes(c)), []);
  assert.deepEqual([...used].sort().join(""), [...ALPHABET].sort().join(""), "every symbol used");
});

Deno.test("maxPromptChars() and maxAnswerChars() bound multiplication problems tightly", () => {
  for (const digits of [1, 2, 3]) {
    const wanted = Math.min(10 ** (2 * digits), 20_000);
    const { train } = multiplicationSplits({ digits, train: wanted, eval: 0 }, new Rng(1));
    const longest = (texts: string[]) => Math.max(...texts.map((t) => t.length));
    assert.equal(maxPromptChars({ digits }), 2 * digits + 2);
    assert.equal(maxAnswerChars({ digits }), 2 * digits);
    assert.equal(longest(train.map((p) => p.prompt)), maxPromptChars({ digits }));
    assert.equal(longest(train.map((p) => p.answer)), maxAnswerChars({ digits }));
  }
});
