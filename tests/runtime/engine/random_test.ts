import assert from "node:assert/strict";
import { normalArray, Rng } from "../../../runtime/engine/random.ts";

function take(rng: Rng, n: number): number[] {
  return Array.from({ length: n }, () => rng.uniform());
}

Deno.test("Rng gives the recorded first five outputs for seed 1", () => {
  // A regression pin, recorded once from this implementation (sfc32 seeded by splitmix32, 12
  // outputs discarded). If it changes, every seeded run in the project changes with it.
  const rng = new Rng(1);
  assert.deepEqual(
    Array.from({ length: 5 }, () => rng.nextUint32()),
    [1130556604, 2591592147, 3014952990, 960850752, 2734082507],
  );
  assert.equal(new Rng(1).uniform(), 1130556604 / 2 ** 32);
});

Deno.test("Rng with the same seed gives the same sequence", () => {
  assert.deepEqual(take(new Rng(42), 100), take(new Rng(42), 100));
  const a = new Rng(3);
  const b = new Rng(3);
  assert.deepEqual(
    [a.int(10), a.normal(), a.shuffle([1, 2, 3, 4, 5])],
    [b.int(10), b.normal(), b.shuffle([1, 2, 3, 4, 5])],
  );
});

Deno.test("Rng with different seeds gives different sequences", () => {
  const seeds = [0, 1, 2, -1, 2 ** 32, 2 ** 32 + 1, Number.MAX_SAFE_INTEGER];
  const firsts = seeds.map((s) => take(new Rng(s), 4).join(","));
  assert.equal(new Set(firsts).size, seeds.length);
});

Deno.test("Rng() rejects a seed that is not a safe integer", () => {
  for (const seed of [1.5, NaN, Infinity, 2 ** 53]) {
    assert.throws(() => new Rng(seed), /'seed' must be a safe integer/);
  }
});

Deno.test("Rng.fork() does not advance the parent and is stable", () => {
  const parent = new Rng(5);
  const untouched = new Rng(5);
  const init = parent.fork("init");
  parent.fork("data");
  assert.deepEqual(take(parent, 20), take(untouched, 20));
  // The same label from the same state gives the same stream.
  assert.deepEqual(take(new Rng(5).fork("init"), 20), take(init, 20));
});

Deno.test("Rng.fork() with different labels gives different, uncorrelated streams", () => {
  const rng = new Rng(9);
  const labels = ["init", "data", "sample", "", "init2", "tini"];
  const streams = labels.map((l) => take(rng.fork(l), 2000));
  assert.equal(new Set(streams.map((s) => s.slice(0, 4).join(","))).size, labels.length);
  // The child differs from the parent, and forking after a draw gives a new stream.
  assert.notDeepEqual(take(rng.fork("init"), 4), take(new Rng(9), 4));
  const moved = new Rng(9);
  moved.uniform();
  assert.notDeepEqual(take(moved.fork("init"), 4), streams[0]!.slice(0, 4));
  // Pairwise sample correlation of 2000 uniforms: |r| < 0.1 (about 4.5 standard errors).
  for (let i = 0; i < streams.length; i++) {
    for (let j = i + 1; j < streams.length; j++) {
      const r = correlation(streams[i]!, streams[j]!);
      assert.ok(Math.abs(r) < 0.1, `${labels[i]} vs ${labels[j]}: r = ${r}`);
    }
  }
});

Deno.test("Rng.state() and Rng.fromState() round-trip and continue identically", () => {
  const rng = new Rng(11);
  take(rng, 37);
  rng.normal();
  const saved = JSON.parse(JSON.stringify(rng.state()));
  const restored = Rng.fromState(saved);
  assert.deepEqual(restored.state(), rng.state());
  assert.deepEqual(take(restored, 50), take(rng, 50));
  assert.deepEqual(restored.fork("x").state(), rng.fork("x").state());
  assert.ok(rng.state().every((w) => Number.isInteger(w) && w >= 0 && w < 2 ** 32));
});

Deno.test("Rng.fromState() rejects a malformed state", () => {
  for (const bad of [[1, 2, 3], [1, 2, 3, -1], [1, 2, 3, 2 ** 32], [1, 2, 3, 0.5]]) {
    assert.throws(() => Rng.fromState(bad), /'state' must be 4 unsigned 32-bit integers/);
  }
});

Deno.test("Rng.uniform() stays in [0, 1) with mean about 1/2 over 1e5 draws", () => {
  const rng = new Rng(123);
  const n = 100_000;
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const u = rng.uniform();
    assert.ok(u >= 0 && u < 1);
    sum += u;
  }
  // The standard error of the mean is sqrt(1/12 / n) ≈ 0.0009; allow about 5 of them.
  assert.ok(Math.abs(sum / n - 0.5) < 0.005, `mean ${sum / n}`);
});

Deno.test("Rng.int() has a flat histogram over 1e5 draws (chi-square)", () => {
  const rng = new Rng(77);
  const n = 100_000;
  for (const k of [2, 7, 10]) {
    const counts = new Array<number>(k).fill(0);
    for (let i = 0; i < n; i++) counts[rng.int(k)]!++;
    const expected = n / k;
    const chi2 = counts.reduce((s, c) => s + (c - expected) ** 2 / expected, 0);
    // The 99.9% quantile of chi-square with k - 1 ≤ 9 degrees of freedom is 27.9.
    assert.ok(chi2 < 27.9, `k ${k}: chi-square ${chi2} for ${counts}`);
  }
});

Deno.test("Rng.int() has no modulo bias for n near 2^32", () => {
  // With n = 3·2^30, `x % n` would put half the mass below 2^30 instead of a third.
  const rng = new Rng(5);
  const n = 3 * 2 ** 30;
  let low = 0;
  const draws = 30_000;
  for (let i = 0; i < draws; i++) {
    const x = rng.int(n);
    assert.ok(Number.isInteger(x) && x >= 0 && x < n);
    if (x < 2 ** 30) low++;
  }
  assert.ok(Math.abs(low / draws - 1 / 3) < 0.015, `fraction below 2^30: ${low / draws}`);
  assert.equal(new Rng(1).int(1), 0);
  assert.ok(new Rng(1).int(2 ** 32) < 2 ** 32);
});

Deno.test("Rng.int() rejects a bad range", () => {
  for (const n of [0, -1, 1.5, 2 ** 32 + 1, NaN]) {
    assert.throws(() => new Rng(1).int(n), /'n' must be an integer in \[1, 2\^32\]/);
  }
});

Deno.test("Rng.normal() has mean about 0 and std about 1 over 1e5 draws", () => {
  const rng = new Rng(2024);
  const n = 100_000;
  let sum = 0;
  let sumSq = 0;
  for (let i = 0; i < n; i++) {
    const z = rng.normal();
    assert.ok(Number.isFinite(z));
    sum += z;
    sumSq += z * z;
  }
  const mean = sum / n;
  const std = Math.sqrt(sumSq / n - mean * mean);
  assert.ok(Math.abs(mean) < 0.015, `mean ${mean}`); // standard error 0.0032
  assert.ok(Math.abs(std - 1) < 0.015, `std ${std}`); // standard error ≈ 0.0022
});

Deno.test("Rng.shuffle() returns a permutation in place, each order about equally often", () => {
  const rng = new Rng(8);
  const a = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
  const out = rng.shuffle(a);
  assert.equal(out, a);
  assert.deepEqual([...a].sort((x, y) => x - y), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  assert.deepEqual(rng.shuffle([]), []);
  assert.deepEqual(rng.shuffle(["x"]), ["x"]);
  // All 6 orders of 3 items over 60k shuffles: chi-square with 5 degrees of freedom < 20.5.
  const counts = new Map<string, number>();
  const n = 60_000;
  for (let i = 0; i < n; i++) {
    const key = rng.shuffle([0, 1, 2]).join("");
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  assert.equal(counts.size, 6);
  const chi2 = [...counts.values()].reduce((s, c) => s + (c - n / 6) ** 2 / (n / 6), 0);
  assert.ok(chi2 < 20.5, `chi-square ${chi2}`);
});

Deno.test("normalArray() scales normal draws by std and is seeded", () => {
  const w = normalArray(new Rng(1).fork("init"), 20_000, 0.02);
  assert.ok(w instanceof Float32Array);
  assert.equal(w.length, 20_000);
  const mean = w.reduce((s, x) => s + x, 0) / w.length;
  const std = Math.sqrt(w.reduce((s, x) => s + (x - mean) ** 2, 0) / w.length);
  assert.ok(Math.abs(mean) < 0.001, `mean ${mean}`);
  assert.ok(Math.abs(std - 0.02) < 0.0005, `std ${std}`);
  assert.deepEqual(normalArray(new Rng(1).fork("init"), 20_000, 0.02), w);
  const rng = new Rng(3);
  const same = rng.fork("a");
  const expected = [same.normal(), same.normal(), same.normal()].map(Math.fround);
  assert.deepEqual(Array.from(normalArray(rng.fork("a"), 3, 1)), expected);
  assert.equal(normalArray(rng, 0, 1).length, 0);
  assert.throws(() => normalArray(rng, -1, 1), /'n' must be an integer >= 0/);
});

function correlation(x: number[], y: number[]): number {
  const n = x.length;
  const mx = x.reduce((s, v) => s + v, 0) / n;
  const my = y.reduce((s, v) => s + v, 0) / n;
  let sxy = 0;
  let sxx = 0;
  let syy = 0;
  for (let i = 0; i < n; i++) {
    sxy += (x[i]! - mx) * (y[i]! - my);
    sxx += (x[i]! - mx) ** 2;
    syy += (y[i]! - my) ** 2;
  }
  return sxy / Math.sqrt(sxx * syy);
}
