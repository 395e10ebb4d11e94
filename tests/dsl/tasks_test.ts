import assert from "node:assert/strict";
import { compile, recipe, rewards, tasks } from "../../mod.ts";
import { type Data, type RewardSource } from "../../dsl/schema.ts";
import { charVocabSize, taskSpec } from "../../dsl/tasks.ts";
import { fillDefaults, type SchemaLike } from "../../dsl/_schema_walk.ts";
import { DataSchema } from "../../dsl/schema.ts";
import { base } from "./_fixtures.ts";

// Token counts are worked out by hand from the longest prompt and answer each setting can draw:
// `<bos>` counts in the prompt, `<eos>` in the answer, one token per character otherwise.

/** The task spec of `data` with its schema defaults filled in, as compile() sees it. */
function spec(data: Data) {
  return taskSpec(fillDefaults(DataSchema as unknown as SchemaLike, data) as Data);
}

Deno.test("taskSpec() of multiplication counts zero-padded operands and the product", () => {
  // "07*42=": <bos> 0 7 * 4 2 = is 7 tokens; "9801" (99·99) + <eos> is 5.
  const two = spec(tasks.multiplication({ digits: 2 }));
  assert.equal(two.alphabet, "0123456789*=");
  assert.equal(two.promptTokens, 7);
  assert.equal(two.answerTokens, 5);
  assert.equal(two.distinctProblems, 10_000);
  assert.deepEqual([two.train, two.eval], [5000, 500]);
  assert.equal(two.description, "multiplication of two 2-digit numbers, zero-padded: 'a*b=' → 'c'");
  // "123*456=": 9 tokens; "998001" (999·999) + <eos> is 7.
  const three = spec(tasks.multiplication({ digits: 3, train: 10, eval: 2 }));
  assert.deepEqual([three.promptTokens, three.answerTokens], [9, 7]);
  assert.equal(three.distinctProblems, 1_000_000);
  assert.deepEqual([three.train, three.eval], [10, 2]);
  // "999999*999999=" is 14 characters, 15 tokens; the product has 12 digits, 13 tokens.
  const six = spec(tasks.multiplication({ digits: 6 }));
  assert.deepEqual([six.promptTokens, six.answerTokens], [15, 13]);
  assert.equal(six.distinctProblems, 1e12);
});

Deno.test("taskSpec() of sorting counts the values, the commas and '='", () => {
  // "3,1,4,1,5=": 10 characters, 11 tokens; "1,1,3,4,5" + <eos> is 10.
  const small = spec(tasks.sorting());
  assert.equal(small.alphabet, "0123456789,=");
  assert.deepEqual([small.promptTokens, small.answerTokens], [11, 10]);
  assert.equal(small.distinctProblems, 100_000); // 10 values in each of 5 places
  assert.deepEqual([small.train, small.eval], [5000, 500]);
  assert.equal(
    small.description,
    "sorting 5 numbers from 0 to 9: 'x1,…,x5=' → the same numbers ascending",
  );
  // The longest list of 3 values up to 100 is "100,100,100": 11 characters (12 tokens with "=",
  // 13 with <bos>), and 12 tokens as an answer with <eos>.
  const wide = spec(tasks.sorting({ length: 3, maxValue: 100 }));
  assert.deepEqual([wide.promptTokens, wide.answerTokens], [13, 12]);
  assert.equal(wide.distinctProblems, 101 ** 3);
  // 20 values of 2 digits: 40 digits and 19 commas.
  const long = spec(tasks.sorting({ length: 20, maxValue: 99 }));
  assert.deepEqual([long.promptTokens, long.answerTokens], [61, 60]);
});

Deno.test("taskSpec() of countdown counts the numbers, the target and the longest expression", () => {
  // "25,25,25,25|100=": 16 characters, 17 tokens. An answer uses 4 two-digit numbers, 3
  // operators and 2 pairs of parentheses, "((25-25)*25)+25"-like: 15 characters + <eos>.
  const four = spec(tasks.countdown());
  assert.equal(four.alphabet, "0123456789+-*/()|,=");
  assert.deepEqual([four.promptTokens, four.answerTokens], [17, 16]);
  assert.equal(four.distinctProblems, null);
  assert.deepEqual([four.train, four.eval], [5000, 500]);
  assert.equal(
    four.description,
    "countdown with 4 numbers up to 25 and a target up to 100: 'a,b,…|t=' → an expression of " +
      "+ - * / and parentheses",
  );
  // "9,9|10=": 8 tokens; "9+9" + <eos>: 4, no parentheses with two numbers.
  const two = spec(tasks.countdown({ numbers: 2, maxNumber: 9, maxTarget: 10 }));
  assert.deepEqual([two.promptTokens, two.answerTokens], [8, 4]);
  // Six 3-digit numbers and a 4-digit target: 1 + 18 + 5 + 1 + 4 + 1 = 30 prompt tokens;
  // 18 digits + 5 operators + 8 parentheses + <eos> = 32 answer tokens.
  const six = spec(tasks.countdown({ numbers: 6, maxNumber: 100, maxTarget: 1000 }));
  assert.deepEqual([six.promptTokens, six.answerTokens], [30, 32]);
});

Deno.test("compile() gives each new task its shapes and vocabulary", () => {
  const shapes = (data: Data, reward: RewardSource = rewards.numericAnswer()) => {
    const plan = compile(recipe({ ...base, data, rewards: [{ source: reward }] }));
    const { promptTokens, newTokens, sequenceTokens, vocab } = plan.shapes;
    return { promptTokens, newTokens, sequenceTokens, vocab };
  };
  assert.deepEqual(shapes(tasks.multiplication({ digits: 3, train: 100, eval: 10 })), {
    promptTokens: 9,
    newTokens: 7,
    sequenceTokens: 16,
    vocab: 15, // 3 special tokens + "0123456789*="
  });
  assert.deepEqual(shapes(tasks.sorting({ length: 4, maxValue: 50 }), rewards.exactMatch()), {
    promptTokens: 13, // <bos> "50,50,50,50="
    newTokens: 12, // "50,50,50,50" <eos>
    sequenceTokens: 25,
    vocab: 15, // 3 special tokens + "0123456789,="
  });
  assert.deepEqual(shapes(tasks.countdown({ numbers: 3, maxNumber: 9 }), rewards.countdown()), {
    promptTokens: 11, // <bos> "9,9,9|100="
    newTokens: 8, // "(9+9)*9" <eos>
    sequenceTokens: 19,
    vocab: 22, // 3 special tokens + "0123456789+-*/()|,="
  });
  assert.equal(charVocabSize("0123456789+-*/()|,="), 22);
});
