import assert from "node:assert/strict";
import { tf, useBackend } from "../../../runtime/engine/backend.ts";
import { additionProblem } from "../../../runtime/data/addition.ts";
import type { Problem } from "../../../runtime/data/types.ts";
import {
  DynamicSamplingError,
  type GroupSampler,
  sampleGroups,
} from "../../../runtime/rl/groups.ts";
import { charTokenizer } from "../../../runtime/engine/model/tokenizer.ts";
import { initParams, type ModelConfig } from "../../../runtime/engine/model/transformer.ts";
import { Rng } from "../../../runtime/engine/random.ts";
import type { SourceScorer } from "../../../runtime/rl/rewards/mod.ts";
import type { Sample } from "../../../runtime/rl/rewards/types.ts";

const tok = charTokenizer("0123456789+=");
const CONFIG: ModelConfig = {
  vocab: tok.vocab,
  dModel: 16,
  layers: 1,
  heads: 2,
  kvHeads: 2,
  headDim: 8,
  ffnDim: 32,
  contextLength: 12,
  tiedEmbeddings: true,
  ropeTheta: 10_000,
  normEps: 1e-5,
};

/**
 * A success source that gives every completion of a problem whose first operand is even the same
 * score (a flat group), and alternates 0, 1 within the other groups.
 */
function parity(): SourceScorer {
  return {
    name: "parity",
    weight: 1,
    success: true,
    onError: "fail",
    scorer: {
      score: (samples: readonly Sample[]) =>
        Promise.resolve(
          samples.map((s, i) => ((s.row as { a: number }).a % 2 === 0 ? 1 : i % 2)),
        ),
    },
  };
}

async function withSampler<T>(source: SourceScorer, body: (s: GroupSampler) => Promise<T>) {
  const { kernels } = await useBackend("wasm");
  const params = initParams(CONFIG, new Rng(1));
  let next = 0;
  const sampler: GroupSampler = {
    kernels,
    params,
    config: CONFIG,
    tokenizer: tok,
    sampling: { temperature: 1, topK: 0, topP: 1, maxNewTokens: 3, promptLength: 5 },
    sources: [source],
    rng: new Rng(2),
    // operands 0+0, 1+1, 2+2, …: even, odd, even, odd …
    nextProblems: (count: number): Problem[] =>
      Array.from({ length: count }, () => additionProblem(11 * (next++ % 10), 1)),
  };
  try {
    return await body(sampler);
  } finally {
    tf.dispose(Object.values(params));
  }
}

Deno.test("sampleGroups() without dynamic sampling keeps the first P groups as drawn", async () => {
  await withSampler(parity(), async (s) => {
    const out = await sampleGroups(s, 4, 2, null);
    assert.deepEqual(out.problems.map((p) => p.prompt), ["0+0=", "1+1=", "2+2=", "3+3="]);
    assert.equal(out.batch.rows, 8);
    assert.equal(out.groupsDropped, 0);
    assert.equal(out.promptsResampled, 0);
    assert.deepEqual(Array.from(out.scores.total), [1, 1, 0, 1, 1, 1, 0, 1]);
  });
});

Deno.test("sampleGroups() with dynamic sampling replaces flat groups with fresh prompts", async () => {
  await withSampler(parity(), async (s) => {
    const out = await sampleGroups(s, 4, 2, { maxRounds: 5 });
    // Round 1: 0,1,2,3 keeps 1, 3 (drops 0, 2); round 2 samples a whole batch again, 4,5,6,7,
    // and keeps 5, 7 (drops 4, 6).
    assert.deepEqual(out.problems.map((p) => p.prompt), ["1+1=", "3+3=", "5+5=", "7+7="]);
    assert.equal(out.groupsDropped, 4);
    assert.equal(out.promptsResampled, 4);
    assert.equal(out.batch.rows, 8);
    assert.deepEqual(Array.from(out.scores.total), [0, 1, 0, 1, 0, 1, 0, 1]);
    assert.equal(out.samples.length, 8);
    assert.equal(out.batch.texts.length, 8);
    assert.equal(out.batch.ids.length, 8 * (5 + 3));
    assert.equal(out.scores.skippedGroups.length, 4);
  });
});

Deno.test("sampleGroups() stops with a clear error when the rounds run out", async () => {
  const flat: SourceScorer = {
    ...parity(),
    scorer: { score: (samples) => Promise.resolve(samples.map(() => 0)) },
  };
  await withSampler(flat, async (s) => {
    await assert.rejects(
      () => sampleGroups(s, 4, 2, { maxRounds: 3 }),
      (e: Error) =>
        e instanceof DynamicSamplingError &&
        e.message ===
          "DAPO's dynamic sampling found 0 of 4 groups whose success rewards differ after 3 " +
            "rounds (12 groups dropped); raise objective.maxSamplingRounds, or use data where the " +
            "policy is sometimes right",
    );
  });
});
