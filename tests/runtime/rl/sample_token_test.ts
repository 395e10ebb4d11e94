import assert from "node:assert/strict";
import { Rng } from "../../../runtime/engine/random.ts";
import {
  argmax,
  logSoftmax,
  sampleRow,
  sampleToken,
  type TokenSampling,
} from "../../../runtime/rl/sample_token.ts";

const f32 = (xs: number[]) => new Float32Array(xs);
const greedy: TokenSampling = { temperature: 0, topK: 0, topP: 1 };
const plain: TokenSampling = { temperature: 1, topK: 0, topP: 1 };

/** A stand-in generator that returns the given uniforms in turn. */
function fixed(...us: number[]) {
  let i = 0;
  return {
    uniform() {
      const u = us[i++];
      if (u === undefined) throw new Error("fixed(): out of uniforms");
      return u;
    },
    get used() {
      return i;
    },
  };
}

/** Frequencies of each token over `n` draws. */
function frequencies(logits: Float32Array, options: TokenSampling, n: number, seed = 1): number[] {
  const rng = new Rng(seed);
  const counts = new Array<number>(logits.length).fill(0);
  for (let i = 0; i < n; i++) counts[sampleToken(logits, options, rng).token]!++;
  return counts.map((c) => c / n);
}

function assertClose(actual: number[], expected: number[], tol: number): void {
  assert.equal(actual.length, expected.length);
  actual.forEach((a, i) => {
    assert.ok(Math.abs(a - expected[i]!) <= tol, `[${i}]: ${a} vs ${expected[i]} (± ${tol})`);
  });
}

Deno.test("logSoftmax() matches hand-computed values", () => {
  // [0, ln 3] → [ln 1/4, ln 3/4].
  assertClose(
    Array.from(logSoftmax(f32([0, Math.log(3)]))),
    [Math.log(0.25), Math.log(0.75)],
    1e-6,
  );
  // [1, 2, 3]: log Σ = 3 + ln(1 + e^-1 + e^-2) = 3.4076059644.
  assertClose(
    Array.from(logSoftmax(f32([1, 2, 3]))),
    [-2.4076059644, -1.4076059644, -0.4076059644],
    1e-6,
  );
  // Stable for huge logits (a naive exp overflows), and -Infinity is probability 0.
  assertClose(Array.from(logSoftmax(f32([1000, 1000]))), [-Math.LN2, -Math.LN2], 1e-6);
  assert.deepEqual(Array.from(logSoftmax(f32([0, -Infinity]))), [0, -Infinity]);
});

Deno.test("argmax() picks the largest, the lowest index on ties, within a row", () => {
  assert.equal(argmax(f32([1, 3, 3, 2])), 1);
  assert.equal(argmax(f32([-Infinity, -5])), 1);
  const rows = f32([0, 9, 1, 5, 0, 7]); // [B 2, V 3]
  assert.equal(argmax(rows, 0, 3), 1);
  assert.equal(argmax(rows, 3, 3), 2);
  assert.equal(argmax(rows, 3), 2); // the length defaults to the rest of the buffer
  assert.throws(() => argmax(f32([0, NaN])), /logit 1 is NaN/);
  assert.throws(() => argmax(f32([])), /row must be non-empty/);
  assert.throws(() => argmax(rows, 4, 3), /row \[4, 7\) is beyond the 6 logits/);
});

Deno.test("sampleToken() with temperature 0 is greedy and draws nothing", () => {
  const logits = f32([0.5, 2, 2, -1]);
  const rng = fixed();
  const { token, logp } = sampleToken(logits, greedy, rng);
  assert.equal(token, 1);
  assert.equal(rng.used, 0);
  // logp is the raw (untempered) log-softmax at the argmax.
  assert.ok(Math.abs(logp - logSoftmax(logits)[1]!) < 1e-6);
});

Deno.test("sampleToken() with top-k 1 or a tiny top-p equals greedy", () => {
  const rng = new Rng(3);
  for (let trial = 0; trial < 50; trial++) {
    const logits = f32(Array.from({ length: 20 }, () => rng.normal() * 3));
    const best = argmax(logits);
    assert.equal(sampleToken(logits, { temperature: 1.3, topK: 1, topP: 1 }, rng).token, best);
    assert.equal(sampleToken(logits, { temperature: 0.7, topK: 0, topP: 1e-6 }, rng).token, best);
    assert.equal(sampleToken(logits, { temperature: 2, topK: 5, topP: 1e-6 }, rng).token, best);
  }
});

Deno.test("sampleToken() frequencies over 20k draws match softmax(logits / T)", () => {
  const logits = f32([1, 0.5, -0.5, 2, 0]);
  for (const temperature of [1, 0.5, 2]) {
    const expected = Array.from(logSoftmax(logits.map((x) => x / temperature)), Math.exp);
    const got = frequencies(logits, { temperature, topK: 0, topP: 1 }, 20_000);
    assertClose(got, expected, 0.015); // at most about 4.5 standard errors
  }
});

Deno.test("sampleToken() with top-k 2 draws from the renormalised two largest", () => {
  // [2, 1, 0.5, 0] keeps tokens 0 and 1: e²/(e² + e) = e/(e + 1) = 0.7311 and 0.2689.
  const got = frequencies(f32([2, 1, 0.5, 0]), { temperature: 1, topK: 2, topP: 1 }, 20_000);
  assertClose(got, [Math.E / (Math.E + 1), 1 / (Math.E + 1), 0, 0], 0.015);
  assert.equal(got[2], 0);
  assert.equal(got[3], 0);
  // Ties at the k-th place go to the lower index: [1, 3, 1, 1] with k 2 keeps tokens 0 and 1.
  const tied = frequencies(f32([1, 3, 1, 1]), { temperature: 1, topK: 2, topP: 1 }, 2000);
  assert.ok(tied[0]! > 0 && tied[2] === 0 && tied[3] === 0);
});

Deno.test("sampleToken() with top-p draws from the renormalised nucleus", () => {
  const logits = f32([0.5, 0.3, 0.15, 0.05].map(Math.log));
  // 0.7: 0.5 < 0.7 <= 0.8, so the nucleus is {0, 1}: 0.5/0.8 and 0.3/0.8.
  const two = frequencies(logits, { temperature: 1, topK: 0, topP: 0.7 }, 20_000);
  assertClose(two, [0.625, 0.375, 0, 0], 0.015);
  // 0.85: the nucleus is {0, 1, 2}: divided by 0.95.
  const three = frequencies(logits, { temperature: 1, topK: 0, topP: 0.85 }, 20_000);
  assertClose(three, [0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0], 0.015);
  assert.equal(three[3], 0);
});

Deno.test("sampleToken() applies top-p to the renormalised top-k distribution", () => {
  // [0.4, 0.3, 0.2, 0.1] with top-k 3 renormalises to [4/9, 3/9, 2/9]; top-p 0.75 then stops at
  // 7/9 ≈ 0.78, keeping {0, 1} → [4/7, 3/7]. Top-p alone would keep {0, 1, 2} (0.7 < 0.75).
  const logits = f32([0.4, 0.3, 0.2, 0.1].map(Math.log));
  const got = frequencies(logits, { temperature: 1, topK: 3, topP: 0.75 }, 20_000);
  assertClose(got, [4 / 7, 3 / 7, 0, 0], 0.015);
  const alone = frequencies(logits, { temperature: 1, topK: 0, topP: 0.75 }, 20_000);
  assertClose(alone, [0.4 / 0.9, 0.3 / 0.9, 0.2 / 0.9, 0], 0.015);
});

Deno.test("sampleToken() with top-p finds the nucleus in a large vocabulary", () => {
  // 1000 tokens, 100 of them share 0.99 of the mass: the nucleus for 0.95 lies among them, and
  // with top-p 0.999 it reaches the tail (past the first guess of 64 candidates).
  const logits = new Float32Array(1000).fill(Math.log(0.01 / 900));
  for (let i = 0; i < 1000; i += 10) logits[i] = Math.log(0.99 / 100);
  const rng = new Rng(4);
  for (let i = 0; i < 500; i++) {
    const { token } = sampleToken(logits, { temperature: 1, topK: 0, topP: 0.95 }, rng);
    assert.equal(token % 10, 0);
  }
  const counts = frequencies(logits, { temperature: 1, topK: 0, topP: 0.999 }, 5000);
  const tail = counts.reduce((s, c, i) => (i % 10 === 0 ? s : s + c), 0);
  assert.ok(tail > 0.003 && tail < 0.02, `tail mass ${tail}`); // 0.009/0.999 expected
});

Deno.test("sampleToken() uses one uniform by inverse CDF over ascending token ids", () => {
  const logits = f32([Math.log(0.25), Math.log(0.75)]);
  for (const [u, token] of [[0, 0], [0.2, 0], [0.26, 1], [0.999, 1]] as const) {
    const rng = fixed(u);
    assert.equal(sampleToken(logits, plain, rng).token, token);
    assert.equal(rng.used, 1);
  }
  // The filtered set is also walked in id order: top-k 2 of [1, 3, 2] keeps {1, 2} → p(1) = e/(e+1).
  const kept = f32([1, 3, 2]);
  const p1 = Math.E / (Math.E + 1);
  assert.equal(sampleToken(kept, { temperature: 1, topK: 2, topP: 1 }, fixed(p1 - 0.01)).token, 1);
  assert.equal(sampleToken(kept, { temperature: 1, topK: 2, topP: 1 }, fixed(p1 + 0.01)).token, 2);
  // Masked tokens (-Infinity) are never drawn, even at u = 0 or just below 1.
  const masked = f32([-Infinity, 0, -Infinity, 0, -Infinity]);
  assert.equal(sampleToken(masked, plain, fixed(0)).token, 1);
  assert.equal(sampleToken(masked, plain, fixed(1 - 2 ** -32)).token, 3);
  assert.equal(sampleToken(masked, { temperature: 1, topK: 4, topP: 1 }, fixed(0)).token, 1);
});

Deno.test("sampleToken() returns the tempered, unfiltered log-prob of its token", () => {
  // T 0.5 turns [2, 1, 0.5] into [4, 2, 1]: logp(t) = z_t - ln(e⁴ + e² + e).
  const logits = f32([2, 1, 0.5]);
  const lse = Math.log(Math.exp(4) + Math.exp(2) + Math.exp(1));
  const z = [4, 2, 1];
  const rng = new Rng(6);
  const seen = new Set<number>();
  for (let i = 0; i < 200; i++) {
    for (
      const options of [
        { temperature: 0.5, topK: 0, topP: 1 },
        { temperature: 0.5, topK: 2, topP: 1 }, // filtering changes which tokens, not their logp
        { temperature: 0.5, topK: 0, topP: 0.5 },
      ]
    ) {
      const { token, logp } = sampleToken(logits, options, rng);
      seen.add(token);
      assert.ok(Math.abs(logp - (z[token]! - lse)) < 1e-9, `token ${token}: ${logp}`);
    }
  }
  assert.deepEqual([...seen].sort(), [0, 1, 2]);
});

Deno.test("sampleToken() with a fixed seed gives a fixed token sequence", () => {
  // Recorded once from this implementation as a regression pin.
  const logits = f32([0.1, 1.2, -0.3, 0.8, 0.0, 0.5]);
  const options: TokenSampling = { temperature: 0.9, topK: 5, topP: 0.95 };
  const run = () => {
    const rng = new Rng(1).fork("sample");
    return Array.from({ length: 12 }, () => sampleToken(logits, options, rng).token);
  };
  assert.deepEqual(run(), run());
  // Token 2 has the smallest logit and is cut by top-k 5.
  assert.deepEqual(run(), [3, 1, 4, 1, 3, 5, 0, 1, 1, 1, 1, 4]);
});

Deno.test("sampleRow() samples one row of a [B, V] buffer like sampleToken() on a copy", () => {
  const buffer = f32([0, 1, 2, /**/ 5, -1, 0.5, /**/ 1, 1, 1]); // [B 3, V 3]
  const options: TokenSampling = { temperature: 0.8, topK: 2, topP: 0.9 };
  for (let row = 0; row < 3; row++) {
    const a = new Rng(2);
    const b = new Rng(2);
    for (let i = 0; i < 20; i++) {
      assert.deepEqual(
        sampleRow(buffer, row, 3, options, a),
        sampleToken(buffer.slice(row * 3, row * 3 + 3), options, b),
      );
    }
  }
  assert.equal(sampleRow(buffer, 1, 3, greedy, fixed()).token, 0);
  assert.throws(
    () => sampleRow(buffer, 3, 3, options, new Rng(1)),
    /'row' must be an integer in \[0, 3\)/,
  );
  assert.throws(
    () => sampleRow(buffer, 0, 0, options, new Rng(1)),
    /'vocab' must be an integer >= 1/,
  );
});

Deno.test("sampleToken() rejects bad options and unusable logits", () => {
  const logits = f32([0, 1]);
  const rng = new Rng(1);
  const bad: [Partial<TokenSampling>, RegExp][] = [
    [{ temperature: -1 }, /'temperature' must be a finite number >= 0: current value is -1/],
    [{ temperature: NaN }, /'temperature'/],
    [{ topK: 1.5 }, /'topK' must be an integer >= 0/],
    [{ topK: -1 }, /'topK'/],
    [{ topP: 0 }, /'topP' must be in \(0, 1\]: current value is 0/],
    [{ topP: 1.5 }, /'topP'/],
  ];
  for (const [change, message] of bad) {
    assert.throws(() => sampleToken(logits, { ...plain, ...change }, rng), message);
  }
  assert.throws(
    () => sampleToken(f32([-Infinity, -Infinity]), plain, rng),
    /largest logit must be finite/,
  );
  assert.throws(() => sampleToken(f32([0, Infinity]), plain, rng), /largest logit must be finite/);
  assert.throws(() => sampleToken(f32([0, NaN]), plain, rng), /logit 1 is NaN/);
  assert.throws(() => sampleToken(f32([]), plain, rng), /row must be non-empty/);
});
