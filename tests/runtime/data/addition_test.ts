import assert from "node:assert/strict";
import { assertDisjointSplits } from "./_splits.ts";
import { additionProblem, additionSplits } from "../../../runtime/data/addition.ts";
import { Rng } from "../../../runtime/engine/random.ts";

Deno.test("additionProblem() zero-pads operands and writes the plain sum", () => {
  assert.deepEqual(additionProblem(507, 2), {
    prompt: "05+07=",
    answer: "12",
    row: { a: 5, b: 7 },
  });
  assert.deepEqual(additionProblem(9999, 2), {
    prompt: "99+99=",
    answer: "198",
    row: { a: 99, b: 99 },
  });
  assert.deepEqual(additionProblem(0, 1), { prompt: "0+0=", answer: "0", row: { a: 0, b: 0 } });
});

Deno.test("additionSplits() never puts a problem in both splits, nor twice in one", () => {
  for (const digits of [1, 2, 3]) {
    const distinct = 10 ** (2 * digits);
    const want = { digits, train: Math.floor(distinct * 0.7), eval: Math.floor(distinct * 0.3) };
    assertDisjointSplits(additionSplits(want, new Rng(digits)), want);
  }
});

Deno.test("additionSplits() draws large problem spaces without enumerating them", () => {
  const { train, eval: held } = additionSplits({ digits: 6, train: 3000, eval: 1000 }, new Rng(1));
  const all = new Set([...train, ...held].map((p) => p.prompt));
  assert.equal(all.size, 4000);
  assert.ok(train.every((p) => /^\d{6}\+\d{6}=$/.test(p.prompt)));
});

Deno.test("additionSplits() is a function of the seed", () => {
  const options = { digits: 2, train: 50, eval: 10 };
  assert.deepEqual(additionSplits(options, new Rng(3)), additionSplits(options, new Rng(3)));
  assert.notDeepEqual(additionSplits(options, new Rng(3)), additionSplits(options, new Rng(4)));
});

Deno.test("additionSplits() refuses more problems than exist", () => {
  assert.throws(
    () => additionSplits({ digits: 1, train: 90, eval: 20 }, new Rng(1)),
    /Cannot draw 110 distinct 1-digit addition problems: only 100 exist/,
  );
});
