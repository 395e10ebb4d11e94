import assert from "node:assert/strict";
import { assertDisjointSplits } from "./_splits.ts";
import {
  ALPHABET,
  type CountdownExpr,
  countdownProblem,
  countdownSplits,
  countdownValue,
  formatCountdown,
  maxAnswerChars,
  maxPromptChars,
} from "../../../runtime/data/countdown.ts";
import type { Problem } from "../../../runtime/data/types.ts";
import { Rng } from "../../../runtime/engine/random.ts";

/**
 * A tiny evaluator for answers: `expr := operand op operand`, `operand := digits | (expr)`. Returns
 * the value and the numbers used; throws when the text is not of that form or when a step is not a
 * positive integer.
 */
function evaluate(text: string): { value: number; used: number[] } {
  let at = 0;
  const used: number[] = [];
  function operand(): number {
    if (text[at] === "(") {
      at++;
      const value = binary();
      assert.equal(text[at], ")", `expected ')' at ${at} in ${text}`);
      at++;
      return value;
    }
    const digits = /^\d+/.exec(text.slice(at))?.[0];
    assert.ok(digits !== undefined, `expected a number at ${at} in ${text}`);
    assert.ok(digits === "0" || !digits.startsWith("0"), `a leading zero in ${text}`);
    at += digits.length;
    used.push(Number(digits));
    return Number(digits);
  }
  function binary(): number {
    const left = operand();
    const op = text[at++];
    const right = operand();
    const value = op === "+"
      ? left + right
      : op === "-"
      ? left - right
      : op === "*"
      ? left * right
      : op === "/"
      ? left / right
      : NaN;
    assert.ok(Number.isInteger(value) && value > 0, `a step is ${value} in ${text}`);
    return value;
  }
  const value = binary();
  assert.equal(at, text.length, `trailing text in ${text}`);
  return { value, used };
}

/** Asserts that `problem`'s answer reaches its target with its numbers, each at most as given. */
function assertSolves({ prompt, answer, row }: Problem<{ numbers: number[]; target: number }>) {
  assert.equal(prompt, `${row.numbers.join(",")}|${row.target}=`);
  const { value, used } = evaluate(answer);
  assert.equal(value, row.target, `${answer} is not ${row.target}`);
  const left = [...row.numbers];
  for (const n of used) {
    const i = left.indexOf(n);
    assert.ok(i >= 0, `${answer} uses ${n} more often than ${prompt} gives it`);
    left.splice(i, 1);
  }
}

const E: CountdownExpr = { op: "*", left: { op: "-", left: 25, right: 7 }, right: 4 };

Deno.test("countdownValue() evaluates expressions whose steps are positive integers", () => {
  assert.equal(countdownValue(E), 72);
  assert.equal(countdownValue(5), 5);
  assert.equal(countdownValue({ op: "/", left: 12, right: { op: "+", left: 1, right: 3 } }), 3);
  assert.equal(countdownValue({ op: "/", left: 7, right: 2 }), null, "inexact division");
  assert.equal(countdownValue({ op: "-", left: 3, right: 3 }), null, "zero");
  assert.equal(countdownValue({ op: "-", left: 3, right: 5 }), null, "negative");
  assert.equal(countdownValue({ op: "*", left: 2 ** 30, right: 2 ** 30 }), null, "past 2^53");
});

Deno.test("formatCountdown() parenthesises every compound operand, not the whole", () => {
  assert.equal(formatCountdown(E), "(25-7)*4");
  const sum: CountdownExpr = { op: "+", left: 3, right: 7 };
  assert.equal(
    formatCountdown({ op: "-", left: { op: "*", left: sum, right: 4 }, right: 25 }),
    "((3+7)*4)-25",
  );
  assert.equal(formatCountdown(sum), "3+7");
  assert.equal(
    formatCountdown({ op: "/", left: sum, right: { op: "-", left: 9, right: 4 } }),
    "(3+7)/(9-4)",
  );
  assert.equal(formatCountdown(8), "8");
});

Deno.test("countdownProblem() writes the numbers, the target and the expression", () => {
  assert.deepEqual(countdownProblem([3, 7, 25, 4], E), {
    prompt: "3,7,25,4|72=",
    answer: "(25-7)*4",
    row: { numbers: [3, 7, 25, 4], target: 72 },
  });
  assert.throws(
    () => countdownProblem([3, 5], { op: "-", left: 3, right: 5 }),
    /Cannot make a countdown problem as '3-5' has a step that is not a positive integer/,
  );
});

Deno.test("countdownSplits() answers reach their targets with the numbers given", () => {
  // [numbers, maxNumber, maxTarget, problems]: the first space holds only a few hundred.
  const cases = [[2, 10, 20, 200], [4, 25, 100, 1500], [6, 100, 999, 1500]] as const;
  for (const [numbers, maxNumber, maxTarget, wanted] of cases) {
    const options = { numbers, maxNumber, maxTarget, train: wanted - 100, eval: 100 };
    const { train, eval: held } = countdownSplits(options, new Rng(numbers));
    for (const problem of [...train, ...held]) {
      assertSolves(problem);
      const { numbers: given, target } = problem.row;
      assert.equal(given.length, numbers);
      assert.ok(given.every((n) => Number.isInteger(n) && n >= 1 && n <= maxNumber));
      assert.ok(Number.isInteger(target) && target >= 1 && target <= maxTarget);
    }
  }
});

Deno.test("countdownSplits() uses random subsets, orders and operators", () => {
  const options = { numbers: 4, maxNumber: 25, maxTarget: 200, train: 2000, eval: 0 };
  const { train } = countdownSplits(options, new Rng(1));
  const counts = new Set(train.map((p) => evaluate(p.answer).used.length));
  assert.deepEqual([...counts].sort(), [2, 3, 4], "subset sizes");
  for (const op of "+-*/") assert.ok(train.some((p) => p.answer.includes(op)), `no ${op}`);
  assert.ok(train.some((p) => /^\(.*\)[-+*/]\d+$/.test(p.answer)), "no compound left operand");
  assert.ok(train.some((p) => /^\d+[-+*/]\(.*\)$/.test(p.answer)), "no compound right operand");
});

Deno.test("countdownSplits() reaches a target of 1", () => {
  const options = { numbers: 3, maxNumber: 10, maxTarget: 1, train: 20, eval: 5 };
  const { train, eval: held } = countdownSplits(options, new Rng(1));
  for (const problem of [...train, ...held]) {
    assert.equal(problem.row.target, 1);
    assertSolves(problem);
  }
});

Deno.test("countdownSplits() never puts a problem in both splits, nor twice in one", () => {
  const want = { numbers: 3, maxNumber: 6, maxTarget: 30, train: 700, eval: 300 };
  assertDisjointSplits(countdownSplits(want, new Rng(2)), want);
});

Deno.test("countdownSplits() is a function of the seed", () => {
  const options = { numbers: 4, maxNumber: 25, maxTarget: 100, train: 50, eval: 10 };
  assert.deepEqual(countdownSplits(options, new Rng(3)), countdownSplits(options, new Rng(3)));
  assert.notDeepEqual(countdownSplits(options, new Rng(3)), countdownSplits(options, new Rng(4)));
});

Deno.test("countdownSplits() gives up when it finds no new problem", () => {
  // Two 1s make only "1,1|2=" (1+1) and "1,1|1=" (1*1, 1/1).
  const options = { numbers: 2, maxNumber: 1, maxTarget: 10, train: 1, eval: 1 };
  const { train, eval: held } = countdownSplits(options, new Rng(1));
  assert.deepEqual([...train, ...held].map((p) => p.prompt).sort(), ["1,1|1=", "1,1|2="]);
  assert.throws(
    () => countdownSplits({ ...options, train: 2 }, new Rng(1)),
    {
      message: "Cannot draw 3 distinct countdown problems of 2 numbers in 1..1 with targets in " +
        "1..10: found 2, then 100000 tries in a row gave none new (0 with a target above 10, " +
        "100000 already drawn)",
    },
  );
});

Deno.test("countdownSplits() refuses fewer than 2 numbers", () => {
  assert.throws(
    () =>
      countdownSplits({ numbers: 1, maxNumber: 9, maxTarget: 9, train: 1, eval: 0 }, new Rng(1)),
    /Cannot draw countdown problems as 'numbers' must be an integer >= 2: current value is 1/,
  );
  assert.throws(
    () =>
      countdownSplits({ numbers: 3, maxNumber: 9, maxTarget: 0, train: 1, eval: 0 }, new Rng(1)),
    /'maxTarget' must be an integer >= 1: current value is 0/,
  );
});

Deno.test("countdownSplits() writes only its alphabet", () => {
  const options = { numbers: 4, maxNumber: 25, maxTarget: 100, train: 2000, eval: 200 };
  const { train, eval: held } = countdownSplits(options, new Rng(1));
  const used = new Set([...train, ...held].flatMap((p) => [...p.prompt, ...p.answer]));
  assert.deepEqual([...used].filter((c) => !ALPHABET.includes(c)), []);
  assert.deepEqual([...used].sort().join(""), [...ALPHABET].sort().join(""), "every symbol used");
});

Deno.test("maxPromptChars() and maxAnswerChars() bound countdown problems", () => {
  // [numbers, maxNumber, maxTarget, problems]
  const cases = [
    [2, 9, 9, 100],
    [3, 9, 9, 2000],
    [4, 25, 100, 2000],
    [5, 100, 999, 2000],
    [3, 1000, 50, 300],
  ] as const;
  for (const [numbers, maxNumber, maxTarget, wanted] of cases) {
    const options = { numbers, maxNumber, maxTarget };
    const [d, dt] = [String(maxNumber).length, String(maxTarget).length];
    assert.equal(maxPromptChars(options), numbers * d + (numbers - 1) + 1 + dt + 1);
    assert.equal(maxAnswerChars(options), numbers * d + (numbers - 1) + 2 * (numbers - 2));
    const { train } = countdownSplits({ ...options, train: wanted, eval: 0 }, new Rng(1));
    const prompts = train.map((p) => p.prompt.length);
    const answers = train.map((p) => p.answer.length);
    assert.ok(Math.max(...prompts) <= maxPromptChars(options), "a prompt over the bound");
    assert.ok(Math.max(...answers) <= maxAnswerChars(options), "an answer over the bound");
    // One-digit numbers and targets: every prompt is the longest, and some answer uses them all.
    if (maxNumber === 9 && maxTarget === 9) {
      assert.equal(Math.min(...prompts), maxPromptChars(options));
      assert.equal(Math.max(...answers), maxAnswerChars(options));
    }
  }
});
