import assert from "node:assert/strict";
import {
  extractNumber,
  overlongPenalty,
  type Sample,
  verifier,
} from "../../../../runtime/rl/rewards/verifiers.ts";

function sample(completion: string, answer: string, tokens = 3, row = {}): Sample {
  return { prompt: "1+1=", completion, answer, row, tokens, truncated: false };
}

Deno.test("extractNumber() reads '#### n', then \\boxed{n}, then the last number", () => {
  assert.equal(extractNumber("42"), 42);
  assert.equal(extractNumber("first 3 then 17"), 17);
  assert.equal(extractNumber("#### 1,234 and later 5"), 1234);
  assert.equal(extractNumber("so \\boxed{-7} is it, not 9"), -7);
  assert.equal(extractNumber("2.50"), 2.5);
  assert.equal(extractNumber("no digits"), null);
  assert.equal(extractNumber(""), null);
});

Deno.test("extractNumber() reads whole numbers only, not lists or dates glued together", () => {
  assert.equal(extractNumber("190"), 190);
  assert.equal(extractNumber("3,4"), 4);
  assert.equal(extractNumber("12,3456"), 3456);
  assert.equal(extractNumber("1,234,567"), 1234567);
  assert.equal(extractNumber("on 2024-12"), 12);
  assert.equal(extractNumber("it is -12"), -12);
});

Deno.test("verifier() numericAnswer gives 1 for the exact number, else 0", () => {
  const score = verifier({ kind: "numericAnswer", tolerance: 0 });
  assert.equal(score(sample("90", "90")), 1);
  assert.equal(score(sample("090", "90")), 1);
  assert.equal(score(sample("91", "90")), 0);
  assert.equal(score(sample("9", "90")), 0);
  assert.equal(score(sample("190", "90")), 0);
  assert.equal(score(sample("90", "190")), 0);
  assert.equal(score(sample("", "90")), 0);
  assert.equal(score(sample("+=", "90")), 0);
  const loose = verifier({ kind: "numericAnswer", tolerance: 0.5 });
  assert.equal(loose(sample("90.4", "90")), 1);
});

Deno.test("verifier() numericAnswer gives 0 for an empty, missing or number-less reference", () => {
  const score = verifier({ kind: "numericAnswer" });
  assert.equal(score(sample("90", "")), 0);
  assert.equal(score(sample("90", "ninety")), 0);
  assert.equal(score(sample("", "")), 0);
  const missing = { ...sample("90", "90"), answer: undefined } as unknown as Sample;
  assert.equal(score(missing), 0);
});

Deno.test("verifier() exactMatch and regexFormat apply their options", () => {
  assert.equal(verifier({ kind: "exactMatch" })(sample(" Paris ", "Paris")), 1);
  assert.equal(verifier({ kind: "exactMatch" })(sample("paris", "Paris")), 0);
  const loose = verifier({
    kind: "exactMatch",
    trim: true,
    caseSensitive: false,
    collapseWhitespace: true,
  });
  assert.equal(loose(sample("new   york", "New York")), 1);
  const format = verifier({ kind: "regexFormat", pattern: "^\\d+$", flags: "g" });
  assert.equal(format(sample("12", "")), 1);
  assert.equal(format(sample("12", "")), 1, "no lastIndex carried over by the g flag");
  assert.equal(format(sample("12a", "")), 0);
});

Deno.test("verifier() countdown reads the row's numbers and target", () => {
  const score = verifier({ kind: "countdown" });
  assert.equal(score(sample("(7/2)*4", "", 3, { numbers: [2, 4, 7], target: 14 })), 1);
  assert.equal(score(sample("7+7", "", 3, { numbers: [2, 4, 7], target: 14 })), 0);
  assert.throws(() => score(sample("7*2", "", 3, { target: 14 })), /'numbers' is not an array/);
});

Deno.test("overlongPenalty() is 0, then linear to -1, then -1 (DAPO)", () => {
  // L_max 10, buffer 4: free up to 6 tokens.
  assert.equal(overlongPenalty(6, 4, 10), 0);
  assert.equal(overlongPenalty(7, 4, 10), -0.25);
  assert.equal(overlongPenalty(10, 4, 10), -1);
  assert.equal(overlongPenalty(11, 4, 10), -1);
});
