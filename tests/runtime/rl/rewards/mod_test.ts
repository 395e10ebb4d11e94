import assert from "node:assert/strict";
import {
  type BatchScorer,
  createScorer,
  RewardError,
  type Sample,
  scoreSources,
  type SourceScorer,
  unscoredWarnings,
} from "../../../../runtime/rl/rewards/mod.ts";

function samples(n: number): Sample[] {
  return Array.from({ length: n }, (_, i) => ({
    prompt: "",
    completion: String(i),
    answer: String(i % 2),
    row: { i },
    tokens: i + 1,
    truncated: false,
  }));
}

/** Scores a sample's index (its completion) times `k`, an Error on the rows in `failing`. */
function byIndex(k: number, failing: number[] = []): BatchScorer {
  return {
    score(batch) {
      return Promise.resolve(batch.map((s) => {
        const i = Number(s.completion);
        return failing.includes(i) ? new Error(`row ${i}\nis bad`) : i * k;
      }));
    },
  };
}

function source(name: string, scorer: BatchScorer, more: Partial<SourceScorer> = {}): SourceScorer {
  return { name, weight: 1, success: false, onError: "fail", scorer, ...more };
}

Deno.test("scoreSources() sums the weighted sources and returns the success signal", async () => {
  const scores = await scoreSources(
    [
      source("a", byIndex(1), { weight: 2 }),
      source("b", byIndex(10), { weight: 0.5, success: true }),
    ],
    samples(4),
    2,
  );
  assert.deepEqual(Array.from(scores.total), [0, 7, 14, 21]);
  assert.deepEqual(Array.from(scores.bySource.a!), [0, 1, 2, 3]);
  assert.deepEqual(Array.from(scores.success!), [0, 10, 20, 30]);
  assert.deepEqual(scores.skippedGroups, [false, false]);
  assert.deepEqual(scores.errors, {});
  const none = await scoreSources([source("a", byIndex(1))], samples(2), 2);
  assert.equal(none.success, null);
});

Deno.test("scoreSources() 'fail' throws a RewardError naming the source and the first problem", async () => {
  const failing = scoreSources(
    [
      source("ok", byIndex(1)),
      source("judge", byIndex(1, [1, 3])),
    ],
    samples(4),
    2,
  );
  await assert.rejects(failing, (error) => {
    assert.ok(error instanceof RewardError);
    assert.equal(error.message, "reward 'judge' failed on 2 of 4 samples: row 1 is bad");
    assert.equal(error.source, "judge");
    assert.equal(error.failed, 2);
    return true;
  });
});

Deno.test("scoreSources() 'zero' scores a failed sample 0 and counts it", async () => {
  const scores = await scoreSources(
    [
      source("a", byIndex(1, [2]), { onError: "zero" }),
      source("b", byIndex(1)),
    ],
    samples(4),
    2,
  );
  assert.deepEqual(Array.from(scores.bySource.a!), [0, 1, 0, 3]);
  assert.deepEqual(Array.from(scores.total), [0, 2, 2, 6]);
  assert.deepEqual(scores.skippedGroups, [false, false]);
  assert.deepEqual(scores.errors, { a: { count: 1, first: "row 2 is bad" } });
});

Deno.test("scoreSources() 'skip-group' marks the failed sample's group", async () => {
  const scores = await scoreSources(
    [
      source("a", byIndex(1, [4]), { onError: "skip-group" }),
    ],
    samples(6),
    2,
  );
  assert.deepEqual(scores.skippedGroups, [false, false, true]);
  assert.deepEqual(Array.from(scores.bySource.a!), [0, 1, 2, 3, 0, 5]);
  assert.deepEqual(scores.errors, { a: { count: 1, first: "row 4 is bad" } });
});

Deno.test("scoreSources() turns a throwing scorer, a wrong count and NaN into errors", async () => {
  const throwing: BatchScorer = { score: () => Promise.reject(new Error("endpoint gone")) };
  const short: BatchScorer = { score: () => Promise.resolve([1]) };
  const nan: BatchScorer = { score: (b) => Promise.resolve(b.map(() => NaN)) };
  const scores = await scoreSources(
    [
      source("throwing", throwing, { onError: "zero" }),
      source("short", short, { onError: "zero" }),
      source("nan", nan, { onError: "zero" }),
    ],
    samples(2),
    2,
  );
  assert.deepEqual(scores.errors, {
    throwing: { count: 2, first: "endpoint gone" },
    short: { count: 2, first: "the scorer returned 1 scores for 2 samples" },
    nan: { count: 2, first: "score NaN is not a finite number" },
  });
  assert.deepEqual(Array.from(scores.total), [0, 0]);
});

Deno.test("scoreSources() runs the sources concurrently", async () => {
  let inFlight = 0;
  let most = 0;
  function slow(): BatchScorer {
    return {
      async score(batch) {
        inFlight++;
        most = Math.max(most, inFlight);
        await new Promise((resolve) => setTimeout(resolve, 20));
        inFlight--;
        return batch.map(() => 1);
      },
    };
  }
  const scores = await scoreSources(
    [source("a", slow()), source("b", slow()), source("c", slow())],
    samples(2),
    1,
  );
  assert.equal(most, 3);
  assert.deepEqual(Array.from(scores.total), [3, 3]);
});

Deno.test("scoreSources() refuses partial groups, two success signals and repeated names", async () => {
  await assert.rejects(
    scoreSources([source("a", byIndex(1))], samples(3), 2),
    { message: "Cannot score the batch as 3 samples are not whole groups of 2" },
  );
  await assert.rejects(
    scoreSources(
      [
        source("a", byIndex(1), { success: true }),
        source("b", byIndex(1), { success: true }),
      ],
      samples(2),
      2,
    ),
    /more than one source is the success signal/,
  );
  await assert.rejects(
    scoreSources([source("a", byIndex(1)), source("a", byIndex(1))], samples(2), 2),
    /'a' names two sources/,
  );
});

Deno.test("createScorer() builds the verifiers and the length penalty as batch scorers", async () => {
  const context = { baseUrl: "file:///recipes/r.ts", maxNewTokens: 4 };
  const batch = samples(4); // answers "0", "1", "0", "1"; tokens 1..4
  const numeric = await createScorer({ kind: "numericAnswer", tolerance: 0 }, context);
  assert.deepEqual(await numeric.score(batch), [1, 1, 0, 0]);
  const exact = await createScorer({
    kind: "exactMatch",
    trim: true,
    caseSensitive: true,
    collapseWhitespace: false,
  }, context);
  assert.deepEqual(await exact.score(batch), [1, 1, 0, 0]);
  const format = await createScorer({ kind: "regexFormat", pattern: "^[02]$", flags: "" }, context);
  assert.deepEqual(await format.score(batch), [1, 0, 1, 0]);
  const penalty = await createScorer({ kind: "overlongPenalty", buffer: 2 }, context);
  assert.deepEqual(await penalty.score(batch), [0, 0, -0.5, -1]);
  const countdown = await createScorer({ kind: "countdown" }, context);
  const [bad] = await countdown.score(batch.slice(0, 1)); // the row has no numbers
  assert.ok(bad instanceof Error);
  assert.match(bad.message, /'numbers' is not an array/);
});

Deno.test("createScorer() resolves fn modules against the recipe and enforces the range", async () => {
  const dir = await Deno.makeTempDir({ prefix: "giftwrap_mod_" });
  try {
    await Deno.writeTextFile(
      `${dir}/reward.ts`,
      "export function twice(s: { completion: string }): number {\n" +
        "  return 2 * Number(s.completion);\n}\n",
    );
    const scorer = await createScorer({
      kind: "fn",
      module: "./reward.ts",
      export: "twice",
      sandbox: false,
      timeoutMs: 1000,
      range: [0, 4],
    }, { baseUrl: `file://${dir}/recipe.ts`, maxNewTokens: 4 });
    const scores = await scorer.score(samples(4));
    assert.deepEqual(scores.slice(0, 3), [0, 2, 4]);
    assert.equal((scores[3] as Error).message, "score 6 is outside the declared range [0, 4]");
    await scorer.close?.();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("createScorer() loads a reward model through the context, and refuses one without", async () => {
  const context = { baseUrl: "file:///recipes/r.ts", maxNewTokens: 4 };
  await assert.rejects(
    createScorer({ kind: "rewardModel", checkpoint: "runs/rm", batchSize: 8 }, context),
    {
      message: "Cannot score with reward model 'runs/rm' as no reward model loader was given " +
        "(context.rewardModel)",
    },
  );
  const asked: [string, number][] = [];
  const scorer = await createScorer({ kind: "rewardModel", checkpoint: "runs/rm", batchSize: 8 }, {
    ...context,
    rewardModel(checkpoint, batchSize) {
      asked.push([checkpoint, batchSize]);
      return Promise.resolve(byIndex(1));
    },
  });
  assert.deepEqual(asked, [["runs/rm", 8]]);
  assert.deepEqual(await scorer.score(samples(2)), [0, 1]);
});

Deno.test("unscoredWarnings() names only sources whose onError hid a failure on every sample", () => {
  const errors = {
    zero: { count: 8, first: "down" },
    skip: { count: 8, first: "gone" },
    partial: { count: 7, first: "once" },
    fail: { count: 8, first: "stops the run" },
  };
  const lines = unscoredWarnings(
    [
      { name: "zero", onError: "zero" },
      { name: "skip", onError: "skip-group" },
      { name: "partial", onError: "zero" },
      { name: "fail", onError: "fail" },
      { name: "fine", onError: "zero" },
    ],
    errors,
    8,
    3,
  );
  assert.deepEqual(lines, [
    "warning: reward 'zero' failed on all 8 samples of step 3, which score 0 as its onError is " +
    '"zero" (said once; metrics.jsonl counts rewardErrors every step): down',
    "warning: reward 'skip' failed on all 8 samples of step 3, which leave their groups out of " +
    'the update as its onError is "skip-group" (said once; metrics.jsonl counts rewardErrors ' +
    "every step): gone",
  ]);
});
