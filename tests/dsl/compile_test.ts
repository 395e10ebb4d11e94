import assert from "node:assert/strict";
import {
  compile,
  customObjective,
  dapo,
  drGrpo,
  fn,
  formatIssue,
  gift,
  grpo,
  gspo,
  http,
  type Issue,
  jsonl,
  onlineDpo,
  planHash,
  recipe,
  RecipeError,
  rewardModel,
  rewards,
  rloo,
  safeCompile,
  tasks,
  tinyGpt,
  una,
  validateRecipe,
} from "../../mod.ts";
import { runMain, STACK, withTempDir, writeRecipeModule } from "../_helpers.ts";
import { base, plain } from "./_fixtures.ts";

/** One inconsistent recipe: valid against the schema, rejected by the compiler. */
interface Rejected {
  name: string;
  input: unknown;
  path: string;
  message: RegExp;
  hint: RegExp;
}

const REJECTED: Rejected[] = [
  {
    name: "a group smaller than 2",
    input: { ...base, group: { size: 1, prompts: 16 } },
    path: "group.size",
    message: /^a group needs at least 2 completions to compare, got 1$/,
    hint: /^set group\.size to 2 or more/,
  },
  {
    name: "mini-batches that would split a group",
    input: { ...base, miniBatches: 3 },
    path: "miniBatches",
    message:
      /^expected a divisor of group\.prompts \(16\) so that every mini-batch holds whole groups, got 3$/,
    hint: /^use one of 1, 2, 4, 8, 16$/,
  },
  {
    name: "a custom objective that reads the reference (by default) with none",
    input: { ...base, objective: customObjective("./loss.ts"), reference: "none" },
    path: "objective.reads.reference",
    message:
      /^the custom objective '\.\/loss\.ts' reads the reference's log-probs \(reads\.reference defaults to true\), but reference is 'none'$/,
    hint: /^set objective\.reads\.reference to false, or reference to 'initial'$/,
  },
  {
    name: "a default KL coefficient with no reference",
    input: { ...base, objective: grpo(), reference: "none" },
    path: "objective.beta",
    message:
      /^a KL coefficient of 0\.04 \(grpo's default\) needs a reference, but reference is 'none'$/,
    hint: /^set objective\.beta to 0, or reference to 'initial'$/,
  },
  {
    name: "a declared KL coefficient with no reference",
    input: { ...base, objective: dapo({ beta: 0.1 }), reference: "none" },
    path: "objective.beta",
    message: /^a KL coefficient of 0\.1 needs a reference/,
    hint: /objective\.beta to 0/,
  },
  {
    name: "an implicit reward with no reference",
    input: { ...base, objective: gift(), reference: "none" },
    path: "reference",
    message: /^gift needs a reference for its implicit reward/,
    hint: /'initial'.*'rollout'/,
  },
  {
    name: "dynamic sampling without a success signal",
    input: {
      ...base,
      objective: dapo(),
      rewards: [{ source: rewards.numericAnswer() }, { source: rewards.regexFormat("^\\d+$") }],
    },
    path: "rewards",
    message: /^dapo's dynamic sampling drops groups whose success rewards are all equal/,
    hint: /success: true.*dynamicSampling to false/,
  },
  {
    name: "evaluation every 0 steps",
    input: { ...base, eval: { every: 0 } },
    path: "eval.every",
    message: /^expected a positive number of steps, got 0, which does not mean never$/,
    hint: /^omit eval\.every, and evaluation runs only at step 0 and at the end$/,
  },
  {
    name: "checkpoints every 0 steps",
    input: { ...base, checkpoint: { every: 0 } },
    path: "checkpoint.every",
    message: /got 0/,
    hint: /^omit checkpoint\.every, and only the final checkpoint is written$/,
  },
  {
    name: "heads that do not divide the width",
    input: { ...base, policy: tinyGpt({ dModel: 64, heads: 5 }) },
    path: "policy.heads",
    message: /^expected a divisor of policy\.dModel \(64\), got 5$/,
    hint: /^use one of 1, 2, 4, 8, 16, 32, 64$/,
  },
  {
    name: "an odd head width",
    input: { ...base, policy: tinyGpt({ dModel: 48, heads: 16 }) },
    path: "policy.heads",
    message: /even head width, but dModel \/ heads = 48 \/ 16 = 3$/,
    hint: /even/,
  },
  {
    name: "key/value heads that do not divide the heads",
    input: { ...base, policy: tinyGpt({ dModel: 64, heads: 4, kvHeads: 3 }) },
    path: "policy.kvHeads",
    message: /^expected a divisor of policy\.heads \(4\), got 3$/,
    hint: /^use one of 1, 2, 4$/,
  },
  {
    name: "a context too short for prompt and completion",
    input: { ...base, policy: tinyGpt({ contextLength: 8 }) },
    path: "policy.contextLength",
    message: /^expected at least 11 \(7 prompt tokens \+ 4 new tokens\), got 8$/,
    hint: /^raise policy\.contextLength to 11/,
  },
  {
    name: "more problems than the task has",
    input: { ...base, data: tasks.addition({ digits: 1, train: 90, eval: 20 }) },
    path: "data.train",
    message:
      /^addition of 1-digit numbers has 100 distinct problems, but train 90 \+ eval 20 = 110 were asked for$/,
    hint: /^raise data\.digits to 2/,
  },
  {
    name: "two success signals",
    input: {
      ...base,
      rewards: [
        { source: rewards.numericAnswer(), success: true },
        { source: rewards.exactMatch(), success: true },
      ],
    },
    path: "rewards[1].success",
    message: /^at most one reward can be the success signal, but rewards\[0\] already is$/,
    hint: /success: true/,
  },
  {
    name: "two rewards with one name",
    input: {
      ...base,
      rewards: [{ source: rewards.numericAnswer(), name: "score" }, {
        source: rewards.exactMatch(),
        name: "score",
      }],
    },
    path: "rewards[1].name",
    message: /got 'score', the name of rewards\[0\]$/,
    hint: /rename/,
  },
  {
    name: "an invalid regular expression",
    input: {
      ...base,
      rewards: [{ source: rewards.numericAnswer() }, { source: rewards.regexFormat("(") }],
    },
    path: "rewards[1].source.pattern",
    message: /^expected a valid regular expression, got '\('/,
    hint: /.*/,
  },
  {
    name: "every weight 0",
    input: { ...base, rewards: [{ source: rewards.numericAnswer(), weight: 0 }] },
    path: "rewards",
    message: /^every reward has weight 0/,
    hint: /non-zero weight/,
  },
  {
    name: "a range upside down",
    input: {
      ...base,
      rewards: [{ source: fn("./r.ts", "score", { range: [1, 0] }), success: true }],
    },
    path: "rewards[0].source.range",
    message: /^expected \[low, high\] with low <= high, got \[1, 0\]$/,
    hint: /\[0, 1\]/,
  },
  {
    name: "an overlong buffer longer than the completion",
    input: {
      ...base,
      rewards: [{ source: rewards.numericAnswer() }, {
        source: rewards.overlongPenalty({ buffer: 9 }),
      }],
    },
    path: "rewards[1].source.buffer",
    message: /^expected a buffer of at most maxTokens \(4\), got 9$/,
    hint: /lower the buffer/,
  },
  {
    name: "evaluation with no verifier to score it",
    input: { ...base, rewards: [{ source: rewards.overlongPenalty({ buffer: 2 }) }] },
    path: "eval.metric",
    message:
      /^missing; accuracy needs a verifier .* and the success reward \(overlongPenalty\) is not a verifier$/,
    hint: /eval\.metric/,
  },
  {
    name: "a countdown verifier scoring addition",
    input: { ...base, rewards: [{ source: rewards.countdown() }] },
    path: "rewards[0].source",
    message:
      /^the countdown verifier needs problems with numbers and a target \(countdown or jsonl data\), but data is addition$/,
    hint: /^score addition with rewards\.numericAnswer\(\), or use data: tasks\.countdown\(\)$/,
  },
  {
    name: "a countdown eval metric on sorting",
    input: {
      ...base,
      data: tasks.sorting(),
      rewards: [{ source: rewards.exactMatch() }],
      eval: { metric: rewards.countdown() },
    },
    path: "eval.metric",
    message: /but data is sorting$/,
    hint: /^score sorting with rewards\.exactMatch\(\)/,
  },
  {
    name: "more multiplication problems than there are",
    input: { ...base, data: tasks.multiplication({ digits: 1, train: 90, eval: 20 }) },
    path: "data.train",
    message:
      /^multiplication of 1-digit numbers has 100 distinct problems, but train 90 \+ eval 20 = 110 were asked for$/,
    hint: /^raise data\.digits to 2, or ask for at most 100 problems$/,
  },
  {
    name: "more sorting problems than there are",
    input: { ...base, data: tasks.sorting({ length: 2, maxValue: 9, train: 200 }) },
    path: "data.train",
    message:
      /^sorting 2 numbers from 0 to 9 has 100 distinct problems, but train 200 \+ eval 500 = 700 were asked for$/,
    // 10³ = 1000 lists of 3 values, or 27² = 729 pairs of values up to 26, hold 700 problems.
    hint: /^raise data\.length to 3 or data\.maxValue to 26, or ask for at most 100 problems$/,
  },
  {
    name: "evaluation on the train rows of a JSON Lines file without a limit",
    input: { ...base, data: jsonl("data/train.jsonl", { eval: 10 }), eval: { split: "train" } },
    path: "eval.limit",
    message: /^missing; evaluating on the train split of jsonl data needs a limit/,
    hint: /^set eval\.limit/,
  },
];

function issueAt(issues: readonly Issue[], path: string): Issue {
  const issue = issues.find((i) => i.path === path);
  assert.ok(issue, `no issue at '${path}'; got ${issues.map(formatIssue).join(" | ")}`);
  return issue;
}

for (const bad of REJECTED) {
  Deno.test(`compile() rejects ${bad.name}, with a fix`, () => {
    assert.ok(validateRecipe(bad.input).ok, "the schema alone accepts it");
    const result = safeCompile(bad.input);
    assert.equal(result.ok, false);
    if (result.ok) return;
    const issue = issueAt(result.issues, bad.path);
    assert.match(issue.message, bad.message);
    assert.match(issue.hint ?? "", bad.hint);
    assert.throws(() => compile(bad.input as typeof base), RecipeError);
  });
}

Deno.test("cli validate exits 2 on each inconsistent recipe, printing the fix, no stack trace", async () => {
  await withTempDir(async (dir) => {
    for (const [i, bad] of REJECTED.entries()) {
      const file = await writeRecipeModule(dir, `rejected_${i}`, plain(bad.input));
      const ran = await runMain(["validate", file]);
      assert.equal(ran.code, 2, bad.name);
      for (const line of ran.stderr) assert.doesNotMatch(line, STACK);
      const line = ran.stderr.find((l) => l.startsWith(`${file}: ${bad.path}: `));
      assert.ok(line, ran.stderr.join("\n"));
      assert.match(line, /; fix: .+$/);
    }
  });
});

Deno.test("compile() rejects a custom objective that declares it reads the reference, with none", () => {
  const result = safeCompile({
    ...base,
    objective: customObjective("./loss.ts", { reads: { reference: true } }),
    reference: "none",
  });
  assert.equal(result.ok, false);
  if (result.ok) return;
  // One issue, at the declaration: not a second one about an implicit reward.
  assert.deepEqual(result.issues.map((i) => i.path), ["objective.reads.reference"]);
  assert.equal(
    result.issues[0]!.message,
    "the custom objective './loss.ts' reads the reference's log-probs, but reference is 'none'",
  );
  const without = customObjective("./loss.ts", { reads: { reference: false } });
  assert.ok(safeCompile({ ...base, objective: without, reference: "none" }).ok);
});

Deno.test("compile() throws a RecipeError that lists every issue", () => {
  const bad = { ...base, group: { size: 1, prompts: 16 }, miniBatches: 3 } as const;
  try {
    compile(bad);
    assert.fail("compile() accepted an invalid recipe");
  } catch (e) {
    assert.ok(e instanceof RecipeError);
    assert.deepEqual(e.issues.map((i) => i.path), ["group.size", "miniBatches"]);
    assert.match(e.message, /^Invalid recipe \(2 issues\):\ngroup\.size: /);
  }
});

// ---------------------------------------------------------------------------------------------
// Warnings

function warningsOf(input: unknown): Issue[] {
  const result = safeCompile(input);
  assert.ok(result.ok, result.ok ? "" : result.issues.map(formatIssue).join("\n"));
  return result.plan.warnings;
}

Deno.test("compile() warns that GIFT with a rollout reference and one optimiser step is REINFORCE", () => {
  const w = warningsOf({ ...base, reference: "rollout", miniBatches: 1 });
  assert.equal(w.length, 1);
  assert.equal(w[0]!.path, "miniBatches");
  assert.match(
    w[0]!.message,
    /implicit reward is always 0 and GIFT reduces to normalised REINFORCE$/,
  );
  assert.deepEqual(warningsOf({ ...base, reference: "rollout", miniBatches: 2 }), []);
  assert.deepEqual(warningsOf({ ...base, reference: "rollout", miniBatches: 1, epochs: 2 }), []);
  assert.deepEqual(warningsOf({ ...base, reference: "initial", miniBatches: 1 }), []);
});

Deno.test("compile() warns about a declared reference the objective never reads", () => {
  const w = warningsOf({ ...base, objective: dapo(), reference: "initial" });
  assert.deepEqual(w.map((i) => i.path), ["reference"]);
  assert.deepEqual(warningsOf({ ...base, objective: dapo() }), []);
  assert.deepEqual(
    warningsOf({ ...base, objective: dapo({ beta: 0.01 }), reference: "initial" }),
    [],
  );
});

Deno.test("compile() warns when countdown problems are scored against the reference expression", () => {
  const w = warningsOf({
    ...base,
    data: tasks.countdown(),
    rewards: [{ source: rewards.countdown(), success: true }, {
      source: rewards.exactMatch(),
      weight: 0.1,
    }],
    eval: { metric: rewards.numericAnswer() },
  });
  assert.deepEqual(w.map((i) => i.path), ["rewards[1].source", "eval.metric"]);
  assert.match(w[0]!.message, /many right expressions, but exactMatch accepts only the reference/);
  assert.match(w[1]!.message, /^numericAnswer reads the last number of a countdown expression/);
  assert.match(w[1]!.hint ?? "", /rewards\.countdown\(\)/);
  assert.deepEqual(
    warningsOf({ ...base, data: tasks.countdown(), rewards: [{ source: rewards.countdown() }] }),
    [],
  );
});

Deno.test("compile() warns about a custom objective's unread reference and a rollout reference it reads", () => {
  const unread = warningsOf({
    ...base,
    objective: customObjective("./loss.ts", { reads: { reference: false } }),
    reference: "initial",
  });
  assert.deepEqual(unread.map((i) => i.path), ["reference"]);
  assert.match(unread[0]!.message, /^the custom objective declares reads\.reference: false/);
  assert.match(unread[0]!.hint ?? "", /objective\.reads\.reference to true/);
  const rollout = warningsOf({
    ...base,
    objective: customObjective("./loss.ts"),
    reference: "rollout",
  });
  assert.deepEqual(rollout.map((i) => i.path), ["miniBatches"]);
  assert.match(rollout[0]!.message, /refLogp is logp detached, so log π\/π_ref is always 0$/);
  assert.deepEqual(
    warningsOf({
      ...base,
      objective: customObjective("./loss.ts"),
      reference: "rollout",
      miniBatches: 2,
    }),
    [],
  );
});

Deno.test("compile() warns about evaluation, checkpoints and top-k that cannot act", () => {
  const w = warningsOf({
    ...base,
    eval: { every: 50, limit: 1000 },
    checkpoint: { every: 30 },
    sampling: { topK: 15 },
  });
  assert.deepEqual(w.map((i) => i.path), [
    "sampling.topK",
    "eval.every",
    "eval.limit",
    "checkpoint.every",
  ]);
});

// ---------------------------------------------------------------------------------------------
// Resolution

Deno.test("compile() resolves every default into a recipe that is itself valid and compiles the same", () => {
  const custom = customObjective("./loss.ts", {
    options: { clip: 0.2, modes: ["token"] },
    reads: { old: true },
  });
  for (
    const objective of [
      gift(),
      grpo(),
      drGrpo(),
      dapo(),
      gspo(),
      rloo(),
      onlineDpo(),
      una(),
      custom,
    ]
  ) {
    const plan = compile({ ...base, objective });
    assert.ok(validateRecipe(plan.recipe).ok, objective.kind);
    const again = compile(plan.recipe);
    assert.equal(planHash(again), planHash(plan), objective.kind);
    assert.deepEqual(again, plan, objective.kind);
  }
});

Deno.test("compile() keeps onError, the new sources, tasks and eval split through its own recipe", () => {
  const plan = compile({
    ...base,
    data: tasks.countdown({ numbers: 3 }),
    rewards: [
      { source: rewards.countdown(), success: true, onError: "zero" },
      { source: fn("./r.ts", "score", { sandbox: false }), weight: 0.1, onError: "skip-group" },
      { source: rewardModel("rm", { range: [-1, 1] }), weight: 0.1 },
    ],
    eval: { split: "train", limit: 20 },
  });
  assert.ok(validateRecipe(plan.recipe).ok);
  assert.deepEqual(compile(plan.recipe), plan);
  assert.deepEqual(plan.recipe.rewards.map((r) => r.onError), ["zero", "skip-group", "fail"]);
  assert.deepEqual(plan.recipe.eval, { split: "train", limit: 20 });
});

Deno.test("compile() resolves onError, fn's sandbox and timeout and the reward model's batch", () => {
  const plan = compile({
    ...base,
    rewards: [
      { source: rewards.numericAnswer(), success: true },
      { source: fn("./r.ts") },
      { source: rewardModel("runs/rm/checkpoints/final"), onError: "skip-group" },
      { source: http({ url: "http://127.0.0.1:9/score", range: [0, 2] }), onError: "zero" },
    ],
  });
  assert.deepEqual(plan.rewards.map((r) => r.onError), ["fail", "fail", "skip-group", "zero"]);
  assert.deepEqual(plan.rewards[1], {
    name: "fn",
    source: {
      kind: "fn",
      module: "./r.ts",
      export: "default",
      sandbox: true,
      timeoutMs: 10_000,
    },
    weight: 1,
    success: false,
    range: null,
    onError: "fail",
  });
  assert.deepEqual(plan.rewards[2]!.source, {
    kind: "rewardModel",
    checkpoint: "runs/rm/checkpoints/final",
    batchSize: 64,
  });
  assert.equal(plan.rewards[2]!.range, null);
  assert.deepEqual(plan.rewards[3]!.range, [0, 2]);
  const countdown = compile({
    ...base,
    data: tasks.countdown(),
    rewards: [{ source: rewards.countdown() }],
  });
  assert.deepEqual(countdown.rewards[0]!.range, [0, 1]);
  assert.deepEqual(countdown.schedule.evalMetric, { kind: "countdown" });
});

Deno.test("compile() evaluates the eval split by default, and the train split when asked", () => {
  const plan = compile(base);
  assert.equal(plan.schedule.evalSplit, "eval");
  assert.equal(plan.schedule.evalProblems, 100);
  assert.equal(plan.recipe.eval?.split, "eval");
  const train = compile({ ...base, eval: { split: "train" } });
  assert.equal(train.schedule.evalSplit, "train");
  assert.equal(train.schedule.evalProblems, 1000);
  const eval0 = train.stages.find((s) => s.name === "eval")!;
  assert.match(eval0.detail, /^step 0: greedy decoding of 1,000 train problems, scored by/);
  assert.deepEqual(eval0.shapes["ids"], [1000, 11]);
  const limited = compile({ ...base, eval: { split: "train", limit: 64 } });
  assert.equal(limited.schedule.evalProblems, 64);
  assert.deepEqual(limited.warnings, []);
  const over = compile({ ...base, eval: { split: "train", limit: 2000 } });
  assert.equal(over.schedule.evalProblems, 1000);
  assert.deepEqual(over.warnings.map((w) => w.message), [
    "a limit of 2000 is more than the 1000 train problems, so all are used",
  ]);
  // The train split is never empty, so an empty eval split does not stop it.
  const noHeldOut = compile({
    ...base,
    data: tasks.addition({ train: 100, eval: 0 }),
    eval: { split: "train" },
  });
  assert.equal(noHeldOut.schedule.evaluations, 2);
  assert.equal(noHeldOut.schedule.evalProblems, 100);
  // JSON Lines: the file alone knows its train rows, so the limit is the count.
  const file = compile({
    ...base,
    data: jsonl("data/train.jsonl", { eval: 10 }),
    eval: { split: "train", limit: 50 },
  });
  assert.equal(file.schedule.evalProblems, 50);
});

Deno.test("compile() keeps the error for a success reward that is not a verifier and no metric", () => {
  const result = safeCompile({
    ...base,
    rewards: [{ source: rewardModel("rm") }],
    eval: { split: "train" },
  });
  assert.equal(result.ok, false);
  if (result.ok) return;
  assert.deepEqual(result.issues.map((i) => i.path), ["eval.metric"]);
  assert.match(result.issues[0]!.message, /the success reward \(rewardModel\) is not a verifier$/);
  assert.ok(
    safeCompile({
      ...base,
      rewards: [{ source: rewardModel("rm") }],
      eval: { metric: rewards.numericAnswer() },
    }).ok,
  );
});

Deno.test("compile() fills the defaults of docs/objectives.md", () => {
  const options = (objective: Parameters<typeof recipe>[0]["objective"]) =>
    compile({ ...base, objective, reference: "initial" }).objective.options;
  assert.deepEqual(options(gift()), { kind: "gift", betaC: 1, stdEpsilon: 1e-6 });
  assert.deepEqual(options(grpo()), { kind: "grpo", beta: 0.04, epsilon: 0.2, epsilonHigh: 0.2 });
  assert.deepEqual(options(grpo({ epsilon: 0.1 })), {
    kind: "grpo",
    beta: 0.04,
    epsilon: 0.1,
    epsilonHigh: 0.1,
  });
  assert.deepEqual(options(drGrpo()), { kind: "drGrpo", beta: 0, epsilon: 0.2, epsilonHigh: 0.2 });
  assert.deepEqual(options(dapo()), {
    kind: "dapo",
    beta: 0,
    epsilon: 0.2,
    epsilonHigh: 0.28,
    dynamicSampling: true,
    maxSamplingRounds: 10,
    maskTruncated: false,
  });
  assert.deepEqual(options(gspo()), { kind: "gspo", beta: 0, epsilon: 3e-4, epsilonHigh: 4e-4 });
  assert.deepEqual(options(rloo()), { kind: "rloo", beta: 0.05, epsilon: 0.2 });
  assert.deepEqual(options(onlineDpo()), { kind: "onlineDpo", beta: 0.1 });
  assert.deepEqual(options(una()), { kind: "una", beta: 0.03 });
  assert.deepEqual(options(customObjective("./loss.ts")), {
    kind: "custom",
    module: "./loss.ts",
    export: "default",
    options: {},
    reads: { reference: true, old: false },
  });
});

Deno.test("compile() maps each preset to its axes", () => {
  const axes = (objective: Parameters<typeof recipe>[0]["objective"]) =>
    compile({ ...base, objective }).objective.axes;
  assert.deepEqual(axes(grpo()).advantage, {
    baseline: "group-mean",
    scale: "group-std",
    epsilon: 1e-4,
  });
  assert.deepEqual(axes(grpo()).ratio, { level: "token", clipLow: 0.2, clipHigh: 0.2 });
  assert.deepEqual(axes(grpo()).kl, { beta: 0.04, estimator: "k3", placement: "loss" });
  assert.equal(axes(drGrpo()).aggregation, "constant");
  assert.equal(axes(drGrpo()).advantage?.scale, "none");
  assert.equal(axes(dapo()).aggregation, "token-mean");
  assert.deepEqual(axes(dapo()).dynamicSampling, { maxRounds: 10 });
  assert.equal(axes(dapo({ dynamicSampling: false })).dynamicSampling, null);
  assert.deepEqual(axes(gspo()).ratio, { level: "sequence", clipLow: 3e-4, clipHigh: 4e-4 });
  assert.equal(axes(rloo()).advantage?.baseline, "leave-one-out");
  assert.deepEqual(axes(rloo()).kl, { beta: 0.05, estimator: "k3", placement: "reward" });
  assert.equal(axes(onlineDpo()).loss, "dpo-pairs");
  assert.equal(axes(una()).loss, "una");
  const g = axes(gift());
  assert.deepEqual(g.advantage, { baseline: "group-mean", scale: "group-std", epsilon: 1e-6 });
  assert.equal(g.ratio, null);
  assert.equal(g.kl, null);
  assert.equal(g.implicitReward, true);
  // π_old is read exactly by the presets with a ratio.
  for (const objective of [gift(), grpo(), drGrpo(), dapo(), gspo(), rloo(), onlineDpo(), una()]) {
    const a = axes(objective);
    assert.equal(a.readsOld, a.ratio !== null, objective.kind);
  }
});

Deno.test("compile() gives a custom objective no advantages, ratio or KL, and reads what it declares", () => {
  const axes = (objective: Parameters<typeof recipe>[0]["objective"]) =>
    compile({ ...base, objective }).objective.axes;
  assert.deepEqual(axes(customObjective("./loss.ts")), {
    loss: "custom",
    advantage: null,
    ratio: null,
    kl: null,
    aggregation: "sequence-mean",
    implicitReward: true,
    readsOld: false,
    dynamicSampling: null,
    maskTruncated: false,
  });
  const declared = axes(customObjective("./loss.ts", { reads: { reference: false, old: true } }));
  assert.equal(declared.implicitReward, false);
  assert.equal(declared.readsOld, true);
  const plan = compile({
    ...base,
    objective: customObjective("./losses/mine.ts", { export: "clipped", options: { clip: 0.2 } }),
  });
  assert.equal(plan.objective.kind, "custom");
  assert.equal(
    plan.objective.formula,
    'clipped from "./losses/mine.ts" with options {"clip":0.2}',
  );
  // The loss receives the raw rewards: no advantage, target or pair stage.
  assert.deepEqual(
    plan.stages.filter((s) => s.when === "step").map((s) => s.name),
    ["sample", "score", "reference log-probs", "update"],
  );
  assert.equal(plan.schedule.miniBatches, 1);
});

Deno.test("compile() adds the old log-probs stage when a custom objective reads π_old and steps more than once", () => {
  const stages = (reads: { old?: boolean }, miniBatches: number) =>
    compile({ ...base, objective: customObjective("./loss.ts", { reads }), miniBatches });
  const on = stages({ old: true }, 2);
  const old = on.stages.find((s) => s.name === "old log-probs");
  assert.ok(old, "no old log-probs stage");
  assert.match(old.detail, /^log π_old of the completions, no gradient, in the update's 2 mini/);
  assert.deepEqual(old.shapes, { oldLogp: [128, 4] });
  assert.ok(on.budget.perStep.flops.oldLogp > 0);
  assert.equal(on.budget.perStep.forwardPasses, 3); // old, reference, update
  // One optimiser step per batch: π_old is π detached, with no pass of its own.
  const one = stages({ old: true }, 1);
  assert.equal(one.stages.find((s) => s.name === "old log-probs"), undefined);
  assert.equal(one.budget.perStep.flops.oldLogp, 0);
  assert.match(
    one.stages.find((s) => s.name === "update")!.detail,
    /; π_old is π detached \(one optimiser step per batch\)$/,
  );
  // A loss that does not read π_old gets no pass for it, whatever the mini-batches.
  for (const reads of [{}, { old: false }]) {
    const off = stages(reads, 2);
    assert.equal(off.stages.find((s) => s.name === "old log-probs"), undefined);
    assert.doesNotMatch(off.stages.find((s) => s.name === "update")!.detail, /π_old/);
  }
});

Deno.test("compile() defaults the reference to what the objective reads", () => {
  const kind = (objective: Parameters<typeof recipe>[0]["objective"]) =>
    compile({ ...base, objective }).reference;
  assert.deepEqual(kind(gift()), { kind: "initial", checkpoint: null, used: true });
  assert.deepEqual(kind(grpo()), { kind: "initial", checkpoint: null, used: true });
  assert.deepEqual(kind(grpo({ beta: 0 })), { kind: "none", checkpoint: null, used: false });
  assert.deepEqual(kind(dapo()), { kind: "none", checkpoint: null, used: false });
  assert.deepEqual(kind(customObjective("./loss.ts")), {
    kind: "initial",
    checkpoint: null,
    used: true,
  });
  assert.deepEqual(kind(customObjective("./loss.ts", { reads: { reference: false } })), {
    kind: "none",
    checkpoint: null,
    used: false,
  });
  assert.deepEqual(
    compile({ ...base, reference: { checkpoint: "runs/x/checkpoints/final" } }).reference,
    { kind: "checkpoint", checkpoint: "runs/x/checkpoints/final", used: true },
  );
});

Deno.test("compile() gives GIFT several optimiser steps per batch by default, on whole groups", () => {
  const at = (prompts: number) =>
    compile({ ...base, group: { size: 4, prompts } }).schedule.miniBatches;
  assert.equal(at(16), 2);
  assert.equal(at(9), 3);
  assert.equal(at(7), 7);
  assert.equal(compile({ ...base, objective: grpo() }).schedule.miniBatches, 1);
  const plan = compile({ ...base, group: { size: 8, prompts: 12 }, miniBatches: 4, epochs: 2 });
  assert.equal(plan.schedule.optimizerStepsPerBatch, 8);
  assert.equal(plan.shapes.miniBatchGroups, 3);
  assert.equal(plan.shapes.miniBatchRows, 24);
});

Deno.test("compile() computes the shapes P, G, B, T and the vocabulary", () => {
  const plan = compile({ ...base, data: tasks.addition({ digits: 3, train: 100, eval: 10 }) });
  // <bos> + 3 + '+' + 3 + '=' = 9 prompt tokens; a sum of up to 4 digits + <eos> = 5 new tokens.
  assert.deepEqual(plan.shapes, {
    prompts: 16,
    groupSize: 8,
    rows: 128,
    promptTokens: 9,
    newTokens: 5,
    sequenceTokens: 14,
    vocab: 15, // 3 special tokens + "0123456789+="
    miniBatchRows: 64,
    miniBatchGroups: 8,
  });
  assert.equal(plan.model.contextLength, 14);
  assert.equal(compile({ ...base, sampling: { maxNewTokens: 6 } }).shapes.sequenceTokens, 13);
});

Deno.test("compile() counts evaluations at step 0, every N steps and at the end", () => {
  const count = (every: number | undefined, steps: number) =>
    compile({ ...base, steps, ...(every === undefined ? {} : { eval: { every } }) }).schedule
      .evaluations;
  assert.equal(count(undefined, 20), 2); // step 0 and the end
  assert.equal(count(10, 20), 3); // 0, 10, 20 (the end is step 20)
  assert.equal(count(10, 25), 4); // 0, 10, 20, 25
  assert.equal(count(1, 3), 4);
  assert.equal(
    compile({ ...base, data: tasks.addition({ train: 100, eval: 0 }) }).schedule.evaluations,
    0,
  );
});

Deno.test("compile() makes the single reward the success signal, and none of several unmarked ones", () => {
  assert.equal(compile(base).rewards[0]!.success, true);
  const two = compile({
    ...base,
    rewards: [{ source: rewards.numericAnswer() }, {
      source: rewards.numericAnswer(),
      weight: 0.5,
    }],
    eval: { metric: rewards.numericAnswer() },
  });
  assert.deepEqual(two.rewards.map((r) => [r.name, r.success]), [["numericAnswer", false], [
    "numericAnswer_2",
    false,
  ]]);
  assert.equal(
    compile({
      ...base,
      rewards: [{ source: rewards.numericAnswer(), success: false }],
      eval: { metric: rewards.exactMatch() },
    }).rewards[0]!.success,
    false,
  );
});

Deno.test("compile() resolves the backend: the recipe, the caller's override, or the fastest present", () => {
  const BLAS = "; matmul through OpenBLAS where it loads (--allow-ffi)";
  assert.deepEqual(compile(base).backend, {
    name: "wasm",
    requested: "auto",
    reason: `auto: the fastest present of wasm, cpu${BLAS}`,
  });
  assert.deepEqual(compile(base, { available: ["cpu", "webgpu", "wasm"] }).backend, {
    name: "webgpu",
    requested: "auto",
    reason: "auto: the fastest present of cpu, webgpu, wasm",
  });
  assert.deepEqual(compile({ ...base, backend: "cpu" }).backend, {
    name: "cpu",
    requested: "cpu",
    reason: `requested${BLAS}`,
  });
  // An override is written into the plan's recipe, which then compiles to the same plan alone.
  const overridden = compile({ ...base, backend: "cpu" }, { backend: "wasm" });
  assert.deepEqual(overridden.backend, {
    name: "wasm",
    requested: "wasm",
    reason: `requested${BLAS}`,
  });
  assert.equal(overridden.recipe.backend, "wasm");
  assert.equal(planHash(compile(overridden.recipe)), planHash(overridden));
});

Deno.test("compile() is deterministic and does not touch its input", () => {
  const input = plain(base);
  const before = JSON.stringify(input);
  const a = compile(input);
  const b = compile(plain(base));
  assert.equal(JSON.stringify(input), before);
  assert.deepEqual(a, b);
  assert.equal(planHash(a), planHash(b));
});

Deno.test("compile() accepts a composed recipe: recipe({ ...base, objective: grpo() })", () => {
  const composed = recipe({ ...base, name: "composed", objective: grpo({ beta: 0.01 }) });
  const plan = compile(composed);
  assert.equal(plan.name, "composed");
  assert.equal(plan.objective.kind, "grpo");
  assert.equal(plan.objective.axes.kl?.beta, 0.01);
  assert.notEqual(planHash(plan), planHash(compile(base)));
});

Deno.test("compile() evaluates by a function or endpoint success reward when there is no verifier", () => {
  for (const source of [fn("./story.ts"), http({ url: "http://127.0.0.1:9/score" })]) {
    const plan = compile({ ...base, rewards: [{ source, name: "mine" }] });
    assert.deepEqual(plan.schedule.evalMetric, { kind: "successReward", name: "mine" });
    const stage = plan.stages.find((s) => s.name === "eval")!;
    assert.match(stage.detail, /scored by the success reward 'mine' \(1 is a success\)$/);
  }
  // A verifier named as the metric wins over the success reward.
  const named = compile({
    ...base,
    rewards: [{ source: fn("./story.ts") }],
    eval: { metric: rewards.numericAnswer() },
  });
  assert.equal(named.schedule.evalMetric?.kind, "numericAnswer");
});
