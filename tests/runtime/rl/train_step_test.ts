// trainStep() on its own, on a run built in tests/runtime/_run.ts (no run directory, no execute()): one step of the
// tiny recipe on cpu checked against the same step done by hand (draw the prompts, sample them,
// score them, REINFORCE's loss and its gradient in plain code, one AdamW update), the data
// cursor and random streams it advances, updates skipped for a non-finite loss or gradient, and
// the groups a "skip-group" source leaves out of the update.

import assert from "node:assert/strict";
import { tf } from "../../../runtime/engine/backend.ts";
import { tokenLogProbs } from "../../../runtime/engine/model/transformer.ts";
import { adamW, adamWStep, disposeAdamW } from "../../../runtime/engine/optim.ts";
import { Rng } from "../../../runtime/engine/random.ts";
import type { SourceScorer } from "../../../runtime/rl/rewards/mod.ts";
import type { Sample } from "../../../runtime/rl/rewards/types.ts";
import { sampleCompletions } from "../../../runtime/rl/sample.ts";
import { encodePrompt } from "../../../runtime/data/task.ts";
import { NonFiniteUpdateError, type Run, trainStep } from "../../../runtime/rl/train_step.ts";
import { reinforce } from "../../../recipes/objectives/reinforce.ts";
import type { ObjectiveBatch, ObjectiveResult } from "../../../runtime/mod.ts";
import { LENGTH_REWARD, releaseRun as release, tinyRun, valuesOf as values } from "../_run.ts";

/** `objective`, recording the mask and rewards of each batch it is given. */
function recording(objective: Run["objective"]) {
  const seen: { mask: number[][]; rewards: number[] }[] = [];
  const spy = {
    ...objective,
    loss(batch: ObjectiveBatch, options: unknown): ObjectiveResult {
      seen.push({ mask: batch.mask.arraySync(), rewards: batch.rewards.arraySync() });
      return objective.loss(batch, options);
    },
  };
  return { spy, seen };
}

Deno.test("trainStep() takes the step a hand-written one takes: prompts, samples, loss, gradient, update", async () => {
  const run = await tinyRun();
  try {
    const { plan, config, task } = run;
    const { prompts: P, groupSize: G, rows: B, promptTokens, newTokens: C } = plan.shapes;
    assert.equal(plan.schedule.optimizerStepsPerBatch, 1, "one update: the loss at the start");
    const promptState = run.promptRng.state();
    const sampleState = run.sampleRng.state();
    const before = Object.fromEntries(
      Object.entries(run.params).map(([name, p]) => [name, tf.variable(p.clone())]),
    );

    const { metrics, samples } = await trainStep(run, 1);

    // 1) the prompts: the first P of a fresh shuffle of the train split, each G times
    const order = Rng.fromState(promptState).shuffle(task.splits.train.map((_, i) => i));
    assert.deepEqual(run.cursor, { order, next: P });
    const problems = order.slice(0, P).map((i) => task.splits.train[i]!);
    const prompts = problems.flatMap((p) =>
      Array.from({ length: G }, () => encodePrompt(task.tokenizer, p))
    );
    // 2) the completions, drawn from the sample stream at the policy before the update
    const batch = await sampleCompletions(
      run.kernels,
      before,
      config,
      task.tokenizer,
      prompts,
      { ...plan.sampling, promptLength: promptTokens },
      Rng.fromState(sampleState),
    );
    assert.deepEqual(
      samples.flatMap((g) => g.completions.map((c) => c.text)),
      batch.texts,
    );
    assert.deepEqual(samples.map((g) => g.prompt), problems.map((p) => p.prompt));
    // 3) the rewards (lengths) and REINFORCE's advantages: r − the group's mean
    const r = batch.lengths;
    const advantage = r.map((x, i) => {
      const group = r.slice(i - (i % G), i - (i % G) + G);
      return x - group.reduce((a, b) => a + b, 0) / G;
    });
    const mean = r.reduce((a, b) => a + b, 0) / B;
    assert.ok(Math.abs(metrics.rewardMean - mean) < 1e-6, `${metrics.rewardMean} vs ${mean}`);
    const std = Math.sqrt(r.reduce((a, x) => a + (x - mean) ** 2, 0) / B);
    assert.ok(Math.abs(metrics.rewardStd - std) < 1e-6);
    assert.equal(metrics.completionLength, mean);
    assert.equal(metrics.truncated, batch.truncated.filter(Boolean).length / B);
    // 4) L = −(1/B) Σ_i A_i Σ_t mask·logp, at the policy before the update, and its gradient
    const ids = tf.tensor2d(batch.ids, [B, promptTokens + C], "int32");
    const mask = tf.tensor2d(batch.mask, [B, C]);
    const { value, grads } = tf.variableGrads(() =>
      tf.tidy(() => {
        const logp = tokenLogProbs(
          run.kernels,
          before,
          config,
          ids,
          promptTokens,
          1,
          batch.padding,
        ); // [B, C]
        const perRow = tf.sum(tf.mul(logp, mask), 1); // [B]
        return tf.neg(tf.div(tf.sum(tf.mul(tf.tensor1d(advantage), perRow)), B)) as tf.Scalar;
      })
    );
    const loss = value.dataSync()[0]!;
    assert.ok(loss !== 0, "a step with a signal");
    assert.ok(Math.abs(metrics.loss - loss) < 1e-5, `loss ${metrics.loss}, by hand ${loss}`);
    let squares = 0;
    for (const g of Object.values(grads)) squares += tf.sum(tf.square(g)).dataSync()[0]!;
    const norm = Math.sqrt(squares);
    assert.ok(
      Math.abs(metrics.gradNorm - norm) < 1e-4 * norm,
      `gradNorm ${metrics.gradNorm}, by hand ${norm}`,
    );
    assert.deepEqual(Object.keys(metrics.objective), ["advantageAbs"]);
    const absMean = advantage.reduce((a, x) => a + Math.abs(x), 0) / B;
    assert.ok(Math.abs(metrics.objective.advantageAbs! - absMean) < 1e-6);
    // 5) one AdamW update with that gradient
    const byName = Object.fromEntries(
      Object.entries(before).map(([name, v]) => [name, grads[v.name]!]),
    );
    const optimizer = adamW(before, plan.optimizer, plan.schedule.steps);
    const update = await adamWStep(run.kernels, optimizer, before, byName);
    assert.equal(metrics.lr, update.lr);
    assert.equal(run.optimizer.t, 1);
    const [got, expected] = [values(run.params), values(before)];
    for (const [name, want] of Object.entries(expected)) {
      const diff = want.reduce((m, x, i) => Math.max(m, Math.abs(x - got[name]![i]!)), 0);
      assert.ok(diff < 1e-6, `${name}: off by ${diff}`);
    }
    assert.equal(metrics.skippedUpdates, 0);
    assert.deepEqual(run.faults, { inRow: 0, total: 0 });
    assert.equal(metrics.kl, null, "no reference");
    disposeAdamW(optimizer);
    tf.dispose([ids, mask, value, ...Object.values(grads), ...Object.values(before)]);
  } finally {
    release(run);
  }
});

Deno.test("trainStep() reshuffles the train split when the cursor runs out, and is deterministic", async () => {
  const data = { kind: "addition" as const, digits: 1, train: 6, eval: 4 };
  const [run, twin] = [await tinyRun({ data }), await tinyRun({ data })];
  try {
    const promptState = run.promptRng.state();
    const sampleState = run.sampleRng.state();
    const first = await trainStep(run, 1);
    const order = Rng.fromState(promptState);
    const one = order.shuffle([0, 1, 2, 3, 4, 5]);
    assert.deepEqual(run.cursor, { order: one, next: 4 });
    assert.notDeepEqual(run.sampleRng.state(), sampleState, "sampling drew from its stream");
    // Step 2 takes the last 2 of the first order, then the first 2 of a new one.
    const second = await trainStep(run, 2);
    const two = order.shuffle([0, 1, 2, 3, 4, 5]);
    assert.deepEqual(run.cursor, { order: two, next: 2 });
    assert.deepEqual(run.promptRng.state(), order.state());
    const train = run.task.splits.train;
    assert.deepEqual(
      second.samples.map((g) => g.prompt),
      [one[4]!, one[5]!, two[0]!, two[1]!].map((i) => train[i]!.prompt),
    );
    // The same run again: the same steps, number for number (timings aside).
    const timeless = (
      { sampleSeconds: _, stepSeconds: __, tokensPerSecond: ___, ...m }: typeof first.metrics,
    ) => m;
    const again = [await trainStep(twin, 1), await trainStep(twin, 2)];
    assert.deepEqual(
      again.map((s) => timeless(s.metrics)),
      [first, second].map((s) => timeless(s.metrics)),
    );
    assert.deepEqual(again.map((s) => s.samples), [first.samples, second.samples]);
    assert.deepEqual(values(twin.params), values(run.params));
  } finally {
    release(run);
    release(twin);
  }
});

/** REINFORCE with a NaN loss at the updates listed (counted from 1), or a NaN gradient. */
function poisoned(nanLoss: number[], nanGradient: number[] = []): Run["objective"] {
  let updates = 0;
  return {
    ...reinforce,
    loss(batch: ObjectiveBatch, options: unknown): ObjectiveResult {
      updates++;
      const result = reinforce.loss(batch, options as object);
      if (nanLoss.includes(updates)) return { ...result, loss: tf.add(result.loss, NaN) };
      if (!nanGradient.includes(updates)) return result;
      // 0 · √(0 · Σ logp): the value is 0, its gradient 0 · ∞ · 0 = NaN.
      const nan = tf.mul(0, tf.sqrt(tf.mul(0, tf.sum(batch.logp))));
      return { ...result, loss: tf.add(result.loss, nan) };
    },
  } as Run["objective"];
}

Deno.test("trainStep() skips an update with a non-finite loss or gradient, and stops after maxSkippedUpdates in a row", async () => {
  // Updates 1 (NaN loss) and 2 (NaN gradient) are skipped, 3 is applied, 4–6 are NaN again.
  const run = await tinyRun({}, poisoned([1, 4, 5, 6], [2]));
  try {
    const untouched = values(run.params);
    const one = await trainStep(run, 1);
    assert.deepEqual([one.metrics.skippedUpdates, one.metrics.loss, one.metrics.gradNorm], [
      1,
      NaN,
      NaN,
    ]);
    assert.deepEqual(run.faults, { inRow: 1, total: 1 });
    const two = await trainStep(run, 2);
    assert.equal(two.metrics.skippedUpdates, 1);
    assert.ok(Number.isFinite(two.metrics.loss) && Number.isNaN(two.metrics.gradNorm));
    assert.deepEqual(run.faults, { inRow: 2, total: 2 });
    // Neither update moved the policy or the optimiser.
    assert.deepEqual(values(run.params), untouched);
    assert.equal(run.optimizer.t, 0);
    assert.ok(Object.values(run.optimizer.m).every((m) => m.dataSync().every((x) => x === 0)));

    const three = await trainStep(run, 3);
    assert.equal(three.metrics.skippedUpdates, 0);
    assert.deepEqual(run.faults, { inRow: 0, total: 2 });
    assert.equal(run.optimizer.t, 1);
    assert.notDeepEqual(values(run.params), untouched);

    await trainStep(run, 4);
    await trainStep(run, 5);
    const tensors = tf.memory().numTensors;
    await assert.rejects(
      () => trainStep(run, 6),
      (e: Error) =>
        e instanceof NonFiniteUpdateError && e.step === 6 && e.count === 3 &&
        e.message ===
          "Stopped at step 6: 3 updates in a row had a non-finite loss (NaN), so none was " +
            "applied (optimizer.maxSkippedUpdates)",
    );
    assert.deepEqual(run.faults, { inRow: 3, total: 5 });
    assert.equal(tf.memory().numTensors, tensors, "the failed step left tensors behind");
  } finally {
    release(run);
  }
});

Deno.test("trainStep() leaves a group a 'skip-group' source cannot score out of the update", async () => {
  // The judge cannot score group 1 (rows 4–7) of each batch.
  const judge: SourceScorer = {
    name: "judge",
    weight: 0.5,
    success: false,
    onError: "skip-group",
    scorer: {
      score: (samples: readonly Sample[]) =>
        Promise.resolve(samples.map((_, i) => Math.floor(i / 4) === 1 ? new Error("down") : 1)),
    },
  };
  const { spy, seen } = recording(reinforce as Run["objective"]);
  const run = await tinyRun({ miniBatches: 2 }, spy, [LENGTH_REWARD, judge]);
  try {
    const { metrics, samples } = await trainStep(run, 1);
    assert.equal(seen.length, 2, "two mini-batches of 2 groups");
    const mask = seen.flatMap((s) => s.mask);
    const rewards = seen.flatMap((s) => s.rewards);
    const lengths = samples.flatMap((g) => g.completions.map((c) => c.length));
    lengths.forEach((length, row) => {
      const skipped = Math.floor(row / 4) === 1;
      // A skipped group: no token counts and equal rewards (0), so no gradient from it.
      assert.deepEqual(
        mask[row],
        [0, 1, 2].map((t) => !skipped && t < length ? 1 : 0),
        `row ${row}`,
      );
      assert.equal(rewards[row], skipped ? 0 : length + 0.5, `row ${row}`);
    });
    assert.equal(metrics.skippedGroups, 1 / 4);
    assert.deepEqual(metrics.rewardErrors, { judge: 4 });
    // The logged total keeps the length of the skipped rows, the judge's 0 for them.
    const total = lengths.map((l, row) => l + (Math.floor(row / 4) === 1 ? 0 : 0.5));
    assert.deepEqual(samples.flatMap((g) => g.completions.map((c) => c.reward)), total);
    assert.ok(Math.abs(metrics.rewardMean - total.reduce((a, b) => a + b, 0) / 16) < 1e-6);
    assert.deepEqual(samples[1]!.completions.map((c) => c.rewards.judge), [0, 0, 0, 0]);
  } finally {
    release(run);
  }
});

Deno.test("trainStep() measures KL to a frozen reference as exactly 0 before any update", async () => {
  const run = await tinyRun({
    reference: "initial",
    objective: {
      kind: "custom",
      module: "file:///objective.ts",
      export: "objective",
      reads: { reference: true },
    },
  });
  assert.ok(run.plan.stages.some((s) => s.name === "reference log-probs"));
  // The reference, and the policy RL started from: the policy as it is now, frozen.
  const frozen = Object.fromEntries(
    Object.entries(run.params).map(([name, p]) => [name, tf.keep(p.clone())]),
  );
  run.reference = frozen;
  run.initial = frozen;
  try {
    // Step 1's one update is at the reference itself: KL 0, exactly, not float noise. At sampling
    // time the policy was the initial one too (the sampler's log-probs against a full pass).
    const one = (await trainStep(run, 1)).metrics;
    assert.equal(one.kl, 0);
    assert.ok(Math.abs(one.klInitial!) < 1e-6, `klInitial ${one.klInitial}`);
    // Step 2 starts one update away from both.
    const two = (await trainStep(run, 2)).metrics;
    assert.ok(two.kl! > 0 && two.klInitial! > 0, `kl ${two.kl}, klInitial ${two.klInitial}`);
  } finally {
    tf.dispose(Object.values(frozen));
    release(run);
  }
});
