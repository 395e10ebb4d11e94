import assert from "node:assert/strict";
import {
  extractNumber,
  type Sample,
  scoreAll,
  scorer,
} from "../../../runtime/rewards/verifiers.ts";

function sample(completion: string, answer: string, tokens = 3): Sample {
  return { prompt: "1+1=", completion, answer, row: {}, tokens, truncated: false };
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

Deno.test("scorer() numericAnswer gives 1 for the exact number, else 0", () => {
  const score = scorer({ kind: "numericAnswer", tolerance: 0 }, 4);
  assert.equal(score(sample("90", "90")), 1);
  assert.equal(score(sample("090", "90")), 1);
  assert.equal(score(sample("91", "90")), 0);
  assert.equal(score(sample("9", "90")), 0);
  assert.equal(score(sample("", "90")), 0);
  assert.equal(score(sample("+=", "90")), 0);
  const loose = scorer({ kind: "numericAnswer", tolerance: 0.5 }, 4);
  assert.equal(loose(sample("90.4", "90")), 1);
});

Deno.test("scorer() overlongPenalty is 0, then linear to -1, then -1 (DAPO)", () => {
  const score = scorer({ kind: "overlongPenalty", buffer: 4 }, 10);
  assert.equal(score(sample("", "", 6)), 0);
  assert.equal(score(sample("", "", 7)), -0.25);
  assert.equal(score(sample("", "", 10)), -1);
  assert.equal(score(sample("", "", 11)), -1);
});

Deno.test("scoreAll() weights and sums the sources and picks the success signal", () => {
  const samples = [sample("12", "12"), sample("13", "12")];
  const scores = scoreAll(
    [
      {
        name: "right",
        source: { kind: "numericAnswer", tolerance: 0 },
        weight: 2,
        success: true,
        range: [0, 1],
      },
      {
        name: "format",
        source: { kind: "regexFormat", pattern: "^\\d+$", flags: "" },
        weight: 0.5,
        success: false,
        range: [0, 1],
      },
    ],
    samples,
    4,
  );
  assert.deepEqual(Array.from(scores.total), [2.5, 0.5]);
  assert.deepEqual(Array.from(scores.success!), [1, 0]);
  assert.deepEqual(Array.from(scores.bySource.format!), [1, 1]);
});
