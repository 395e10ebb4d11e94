import assert from "node:assert/strict";
import { tf, useBackend } from "../../../runtime/engine/backend.ts";
import { initParams } from "../../../runtime/engine/model/transformer.ts";
import { Rng } from "../../../runtime/engine/random.ts";
import { evaluate } from "../../../runtime/rl/evaluate.ts";
import { verifier } from "../../../runtime/rl/rewards/verifiers.ts";
import type { Sample } from "../../../runtime/rl/rewards/types.ts";
import { ADDITION_CONFIG, ADDITION_TOKENIZER } from "../_tiny.ts";

const tok = ADDITION_TOKENIZER;
const CONFIG = ADDITION_CONFIG;
const PROBLEMS = ["12+34=", "55+01=", "99+99=", "10+10="].map((prompt, i) => ({
  prompt,
  answer: String(i),
  row: { i },
}));
const SHAPES = { promptTokens: 7, newTokens: 4 };

Deno.test("evaluate() counts a batch scorer's 1s as successes, and its errors as failures", async () => {
  const { kernels } = await useBackend("cpu");
  const params = initParams(CONFIG, new Rng(5));
  try {
    // A verifier as the metric, and the same check as a batch scorer: the same accuracy.
    const check = verifier({ kind: "regexFormat", pattern: "^\\d" });
    const byVerifier = await evaluate(kernels, params, CONFIG, tok, PROBLEMS, {
      kind: "regexFormat",
      pattern: "^\\d",
    }, SHAPES);
    const seen: Sample[] = [];
    const byScorer = await evaluate(kernels, params, CONFIG, tok, PROBLEMS, {
      score: (samples) => {
        seen.push(...samples);
        return Promise.resolve(samples.map(check));
      },
    }, SHAPES);
    assert.deepEqual(byScorer, byVerifier);
    // The scorer saw each problem once, with its row, in order.
    assert.deepEqual(seen.map((s) => s.row), PROBLEMS.map((p) => p.row));
    // By hand: the first two score 1, the third 0.5 (not a success), the fourth an error.
    const scores = [1, 1, 0.5, new Error("down")];
    const mixed = await evaluate(kernels, params, CONFIG, tok, PROBLEMS, {
      score: (samples) => Promise.resolve(samples.map((_, i) => scores[i]!)),
    }, SHAPES);
    assert.equal(mixed.correct, 2);
    assert.equal(mixed.total, 4);
    assert.equal(mixed.accuracy, 0.5);
  } finally {
    tf.dispose(Object.values(params));
  }
});
