import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { gift } from "../../../../runtime/rl/objectives/gift.ts";
import { objectives } from "../../../../runtime/rl/objectives/mod.ts";
import { standardize } from "../../../../runtime/rl/objectives/group.ts";
import {
  type BatchData,
  disposeBatch,
  logpGradient,
  mulberry32,
  presetReadsReference,
  randomBatchData,
  runObjectiveConformance,
  toBatch,
} from "./_conformance.ts";

await tf.setBackend("cpu");

// GIFT's loss at an equal-reward group is β_c²·mean(ũ²): only u ≡ const gives a zero gradient.
runObjectiveConformance(gift, { betaC: 1 }, {
  name: "gift",
  zeroAdvantageGradient: "at-reference",
});

// ---- reference math in plain JS (float64) ----

function mean(xs: number[]): number {
  return xs.reduce((a, b) => a + b, 0) / xs.length;
}

function sampleStd(xs: number[]): number {
  const m = mean(xs);
  return Math.sqrt(xs.reduce((a, x) => a + (x - m) ** 2, 0) / (xs.length - 1));
}

function corr(xs: number[], ys: number[]): number {
  const mx = mean(xs);
  const my = mean(ys);
  let sxy = 0;
  let sxx = 0;
  let syy = 0;
  xs.forEach((x, i) => {
    const y = ys[i] ?? Number.NaN;
    sxy += (x - mx) * (y - my);
    sxx += (x - mx) ** 2;
    syy += (y - my) ** 2;
  });
  return sxy / Math.sqrt(sxx * syy);
}

/** (x − mean)/(std + ε) within each consecutive group of `groupSize`; 0 for an all-equal group. */
function standardizeJs(xs: number[], groupSize: number, epsilon: number): number[] {
  const out: number[] = [];
  for (let start = 0; start < xs.length; start += groupSize) {
    const group = xs.slice(start, start + groupSize);
    const m = mean(group);
    const s = sampleStd(group);
    out.push(...group.map((x) => (s === 0 ? 0 : (x - m) / (s + epsilon))));
  }
  return out;
}

/** u_i = Σ_t mask·(logp − refLogp). */
function implicitRewards(data: BatchData): number[] {
  return data.logp.map((row, i) =>
    row.reduce((a, v, t) => a + (data.mask[i]?.[t] ?? 0) * (v - (data.refLogp[i]?.[t] ?? 0)), 0)
  );
}

function lossOf(data: BatchData, options: { betaC?: number; stdEpsilon?: number }): number {
  const batch = toBatch(data, true);
  const { loss, metrics } = gift.loss(batch, options);
  const value = loss.dataSync()[0] ?? Number.NaN;
  tf.dispose([loss, metrics]);
  disposeBatch(batch);
  return value;
}

function assertClose(actual: number, expected: number, tolerance: number, what: string): void {
  assert.ok(
    Math.abs(actual - expected) <= tolerance,
    `${what}: ${actual} differs from ${expected} by more than ${tolerance}`,
  );
}

// ---- GIFT properties (docs/objectives.md) ----

Deno.test("gift loss equals 2(G−1)/G · (1 − corr(r, u)) for one group (property 1)", () => {
  for (const [seed, groupSize] of [[1, 2], [2, 5], [3, 8], [4, 16]] as const) {
    const data = randomBatchData(seed, { groups: 1, groupSize, length: 5, regimes: ["random"] });
    const expected = (2 * (groupSize - 1)) / groupSize *
      (1 - corr(data.rewards, implicitRewards(data)));
    assertClose(lossOf(data, { stdEpsilon: 1e-12 }), expected, 2e-5, `G = ${groupSize}`);
  }
});

Deno.test("gift loss is invariant under r → a·r + b and u → c·u + d per group (property 2)", () => {
  const groupSize = 4;
  const data = randomBatchData(11, { groups: 3, groupSize, length: 5, regimes: ["random"] });
  const scales = [[2, -1, 0.25, 3], [0.5, 4, 7, -2], [10, 0, 1.5, 0.5]]; // per group: a, b, c, d
  const moved: BatchData = {
    ...data,
    rewards: data.rewards.map((r, i) => {
      const [a = 1, b = 0] = scales[Math.floor(i / groupSize)] ?? [];
      return a * r + b;
    }),
    // logp' = ref + c·(logp − ref) + d·[t = 0], so that u' = c·u + d (token 0 is never padding)
    logp: data.logp.map((row, i) => {
      const [, , c = 1, d = 0] = scales[Math.floor(i / groupSize)] ?? [];
      return row.map((v, t) => {
        const ref = data.refLogp[i]?.[t] ?? 0;
        return ref + c * (v - ref) + (t === 0 ? d : 0);
      });
    }),
  };
  const u = implicitRewards(data);
  const uMoved = implicitRewards(moved);
  uMoved.forEach((v, i) => {
    const [, , c = 1, d = 0] = scales[Math.floor(i / groupSize)] ?? [];
    assertClose(v, c * (u[i] ?? 0) + d, 1e-9, `u'[${i}]`);
  });
  const base = lossOf(data, {});
  assert.ok(base > 0.1, `the base loss ${base} is too small to test invariance`);
  assertClose(lossOf(moved, {}), base, 1e-4, "moved loss");
});

Deno.test("gift advantage equals GRPO's for binary rewards with k of G correct (property 3)", () => {
  const groupSize = 8;
  const rand = mulberry32(3);
  // group k has k correct completions (k = 0 … G), at shuffled positions
  const rewards = Array.from({ length: groupSize + 1 }, (_, k) => {
    const group = Array.from({ length: groupSize }, (_, j) => (j < k ? 1 : 0));
    return group.map((r) => ({ r, key: rand() })).sort((x, y) => x.key - y.key).map((x) => x.r);
  }).flat();
  const rows = rewards.length;
  const grpo = standardizeJs(rewards, groupSize, 1e-6); // [B] (r − mean)/(std + ε), sample std
  const grpoTrl = standardizeJs(rewards, groupSize, 1e-4); // [B] TRL's ε

  // 1) the standardisation GIFT uses for Â
  const r = tf.tensor1d(rewards);
  const advantage = standardize(r, groupSize, { epsilon: 1e-6, singleton: "identity" });
  const a = Array.from(advantage.dataSync());
  a.forEach((v, i) => {
    assertClose(v, grpo[i] ?? Number.NaN, 1e-5, `Â[${i}]`);
    assertClose(v, grpoTrl[i] ?? Number.NaN, 1e-3, `Â[${i}] vs TRL's ε`);
  });
  for (let i = 0; i < groupSize; i++) {
    assert.equal(a[i], 0, "k = 0 gives Â = 0");
    assert.equal(a[rows - 1 - i], 0, "k = G gives Â = 0");
  }

  // 2) the same Â read off the GIFT gradient at u ≡ 0 (T = 1): ∂L/∂u_i = −2β_c·Â_i / (B·ε)
  const zeros = tf.zeros([rows, 1]) as tf.Tensor2D;
  const batch = {
    logp: tf.zeros([rows, 1]) as tf.Tensor2D,
    oldLogp: zeros,
    refLogp: zeros,
    mask: tf.ones([rows, 1]) as tf.Tensor2D,
    rewards: r,
    groupSize,
  };
  const grad = logpGradient(gift, batch, {});
  Array.from(grad.dataSync()).forEach((g, i) => {
    assertClose((-g * rows * 1e-6) / 2, grpo[i] ?? Number.NaN, 1e-4, `Â[${i}] from the gradient`);
  });
  tf.dispose([advantage, grad, batch.logp, zeros, batch.mask, r]);
});

Deno.test("gift first step from the reference (u ≡ 0) follows the REINFORCE direction (property 4)", () => {
  const groupSize = 4;
  const data = randomBatchData(5, {
    groups: 4,
    groupSize,
    length: 6,
    regimes: ["at-reference"],
  });
  data.rewards = data.rewards.map((_, i) => (i < 12 ? Math.round(10 * Math.sin(i)) / 10 : 0.3));
  const betaC = 1.5;
  const batch = toBatch(data, true);
  const grad = logpGradient(gift, batch, { betaC }); // [B, T]
  const advantage = standardizeJs(data.rewards, groupSize, 1e-6); // [B]
  // the REINFORCE surrogate −Σ_i Â_i Σ_t mask·logp
  const a = tf.tensor1d(advantage);
  const reinforce = tf.grad((logp: tf.Tensor) =>
    tf.neg(tf.sum(tf.mul(tf.sum(tf.mul(logp, batch.mask), 1), a)))
  )(batch.logp); // [B, T]
  const g = Array.from(grad.dataSync());
  const h = Array.from(reinforce.dataSync());
  assert.ok(g.every(Number.isFinite), "the gradient at a zero-variance group must be finite");
  const dot = g.reduce((s, v, k) => s + v * (h[k] ?? 0), 0);
  const cosine = dot /
    Math.sqrt(g.reduce((s, v) => s + v * v, 0) * h.reduce((s, v) => s + v * v, 0));
  assert.ok(cosine > 1 - 1e-6, `cosine ${cosine}`);
  // and its scale is 2β_c / (B·ε): s_g = 0, so the gradient is the REINFORCE one times 1/ε
  const scale = (2 * betaC) / (data.rewards.length * 1e-6);
  g.forEach((v, k) => assertClose(v, scale * (h[k] ?? 0), 1e-4 * scale, `gradient [${k}]`));
  // the equal-reward group (rows 12 … 15) gets exactly no gradient
  assert.ok(g.slice(12 * 6).every((v) => v === 0));
  tf.dispose([grad, a, reinforce]);
  disposeBatch(batch);
});

Deno.test("gift loss at an equal-reward group is β_c² · mean(ũ²) (property 5)", () => {
  const groupSize = 4;
  const data = randomBatchData(9, { groups: 2, groupSize, length: 5, regimes: ["random"] });
  data.rewards = [0.1, 0.1, 0.1, 0.1, 0.7, 0.7, 0.7, 0.7];
  const uTilde = standardizeJs(implicitRewards(data), groupSize, 1e-6);
  const meanSquare = mean(uTilde.map((v) => v * v));
  for (const betaC of [1, 2.5]) {
    const batch = toBatch(data, true);
    const { loss, metrics } = gift.loss(batch, { betaC });
    assertClose(loss.dataSync()[0] ?? Number.NaN, betaC ** 2 * meanSquare, 1e-5, `β_c = ${betaC}`);
    assert.equal(metrics.advantageAbs?.dataSync()[0], 0, "Â is exactly 0");
    // unlike GRPO's policy-gradient term, GIFT still pulls each u towards its group mean
    const grad = logpGradient(gift, batch, { betaC });
    assert.ok((tf.max(tf.abs(grad)).dataSync()[0] ?? 0) > 0.01);
    tf.dispose([loss, metrics, grad]);
    disposeBatch(batch);
  }
});

Deno.test("gift drives log π − log π_ref to an increasing affine function of r on a tabular bandit (property 10)", () => {
  const prompts = 3;
  const counts = [2, 1, 3, 1, 1]; // a fixed full-support sampling distribution q over K = 5 outcomes
  const outcomes = counts.length;
  const groupSize = counts.reduce((a, b) => a + b, 0); // G = 8 rows per prompt
  const rand = mulberry32(42);
  const refLogits = Array.from({ length: prompts }, () => counts.map(() => 2 * rand() - 1));
  const reward = Array.from({ length: prompts }, () => counts.map(() => rand())); // distinct
  const index: number[] = []; // [B] flat (prompt, outcome) of each row
  const rewards: number[] = []; // [B]
  for (let p = 0; p < prompts; p++) {
    counts.forEach((n, k) => {
      for (let j = 0; j < n; j++) {
        index.push(p * outcomes + k);
        rewards.push(reward[p]?.[k] ?? 0);
      }
    });
  }
  const rows = index.length;
  const rowIndex = tf.tensor1d(index, "int32");
  const r = tf.tensor1d(rewards);
  const mask = tf.ones([rows, 1]) as tf.Tensor2D;
  const refLogProbs = tf.logSoftmax(tf.tensor2d(refLogits)); // [P, K]
  const refLogp = tf.reshape(tf.gather(tf.reshape(refLogProbs, [-1]), rowIndex), [rows, 1]);
  const logits = tf.variable(tf.tensor2d(refLogits)); // [P, K], starts at the reference
  const optimizer = tf.train.adam(0.05);
  let last = Number.NaN;
  // The first step (u ≡ 0, s_g = 0) has a gradient of order 1/ε; clip its norm to 1 as the trainer
  // does, otherwise Adam's second moment remembers it for thousands of steps.
  for (let step = 0; step < 200; step++) {
    const { value, grads } = tf.variableGrads(() => {
      const logProbs = tf.logSoftmax(logits); // [P, K]
      const logp = tf.reshape(tf.gather(tf.reshape(logProbs, [-1]), rowIndex), [rows, 1]); // [B, 1]
      const batch = {
        logp: logp as tf.Tensor2D,
        oldLogp: refLogp as tf.Tensor2D,
        refLogp: refLogp as tf.Tensor2D,
        mask,
        rewards: r,
        groupSize,
      };
      return gift.loss(batch, {}).loss;
    }, [logits]);
    const grad = grads[logits.name] ?? tf.zerosLike(logits); // [P, K]
    const clipped = tf.tidy(() => tf.div(grad, tf.maximum(tf.norm(grad), 1))); // [P, K]
    optimizer.applyGradients([{ name: logits.name, tensor: clipped }]);
    last = value.dataSync()[0] ?? Number.NaN;
    tf.dispose([value, grad, clipped]);
  }
  assert.ok(last < 1e-6, `final loss ${last}`);
  const shift = tf.tidy(() => tf.sub(tf.logSoftmax(logits), refLogProbs).arraySync()) as number[][];
  for (let p = 0; p < prompts; p++) {
    const d = shift[p] ?? [];
    const rp = reward[p] ?? [];
    const c = corr(rp, d);
    const slope = (c * sampleStd(d)) / sampleStd(rp);
    assert.ok(c > 0.999, `prompt ${p}: corr(log π − log π_ref, r) = ${c}`);
    assert.ok(slope > 0, `prompt ${p}: slope ${slope}`);
  }
  tf.dispose([rowIndex, r, mask, refLogProbs, refLogp, logits]);
  optimizer.dispose();
});

// ---- GIFT's own cases ----

Deno.test("gift falls back to oldLogp (the rollout reference) when refLogp is absent", () => {
  const data = randomBatchData(13, { groups: 2, groupSize: 4, length: 5, regimes: ["random"] });
  const withOld = { ...data, refLogp: data.oldLogp };
  const batch = toBatch(data, false);
  const { loss, metrics } = gift.loss(batch, {});
  assertClose(loss.dataSync()[0] ?? Number.NaN, lossOf(withOld, {}), 1e-6, "rollout reference");
  assert.ok(Math.abs(lossOf(data, {}) - lossOf(withOld, {})) > 1e-3, "refLogp is read when given");
  tf.dispose([loss, metrics]);
  disposeBatch(batch);
});

Deno.test("gift metrics are mean u, mean group std of u and mean |Â|", () => {
  const groupSize = 4;
  const data = randomBatchData(17, { groups: 3, groupSize, length: 5, regimes: ["random"] });
  const u = implicitRewards(data);
  const stds = [0, 1, 2].map((g) => sampleStd(u.slice(g * groupSize, (g + 1) * groupSize)));
  const advantage = standardizeJs(data.rewards, groupSize, 1e-6);
  const batch = toBatch(data, true);
  const { loss, metrics } = gift.loss(batch, {});
  assert.deepEqual(Object.keys(metrics).sort(), ["advantageAbs", "implicitReward", "implicitStd"]);
  const value = (key: string) => metrics[key]?.dataSync()[0] ?? Number.NaN;
  assertClose(value("implicitReward"), mean(u), 1e-5, "implicitReward");
  assertClose(value("implicitStd"), mean(stds), 1e-5, "implicitStd");
  assertClose(value("advantageAbs"), mean(advantage.map(Math.abs)), 1e-5, "advantageAbs");
  tf.dispose([loss, metrics]);
  disposeBatch(batch);
});

Deno.test("gift treats a group of size 1 as Â = r and ũ = 0", () => {
  const data = randomBatchData(19, { groups: 3, groupSize: 1, length: 4, regimes: ["random"] });
  const batch = toBatch(data, true);
  const { loss, metrics } = gift.loss(batch, { betaC: 2 });
  assertClose(loss.dataSync()[0] ?? Number.NaN, mean(data.rewards.map((r) => r * r)), 1e-6, "L");
  assertClose(metrics.implicitStd?.dataSync()[0] ?? Number.NaN, 0, 0, "implicitStd");
  const grad = logpGradient(gift, batch, { betaC: 2 });
  assert.ok(Array.from(grad.dataSync()).every((v) => v === 0), "no gradient without a group");
  tf.dispose([loss, metrics, grad]);
  disposeBatch(batch);
});

Deno.test("gift rejects tensors whose shapes disagree", () => {
  const batch = toBatch(randomBatchData(23, { groups: 2, groupSize: 2, length: 3 }), true);
  const short = tf.tensor1d([1, 0, 1]);
  assert.throws(() => gift.loss({ ...batch, rewards: short }, {}), /'rewards' has shape \[3\]/);
  assert.throws(() => gift.loss({ ...batch, groupSize: 0 }, {}), /integer >= 1/);
  short.dispose();
  disposeBatch(batch);
});

Deno.test("gift is reachable as objectives.gift with options carrying a kind", () => {
  assert.equal(objectives.gift, gift);
  assert.equal(gift.name, "gift");
  assert.equal(presetReadsReference("gift"), true);
  const batch = toBatch(randomBatchData(29, { groups: 2, groupSize: 2, length: 3 }), true);
  const options = { kind: "gift" as const, betaC: 1, stdEpsilon: 1e-6 };
  const { loss, metrics } = objectives.gift.loss(batch, options);
  assert.equal(loss.rank, 0);
  tf.dispose([loss, metrics]);
  disposeBatch(batch);
});
