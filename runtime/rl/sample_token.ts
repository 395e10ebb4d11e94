/**
 * Choosing the next token from one row of logits: greedy, temperature, top-k and top-p (nucleus),
 * as pure functions on `Float32Array`s (no tensors), so the choice is exact, cheap and identical on
 * every backend.
 *
 * The order of operations follows Hugging Face `generate()` and vLLM: divide the logits by the
 * temperature, keep the top k, then keep the nucleus of the renormalised top-k distribution, then
 * draw once by inverse CDF over token ids in ascending order. All sums use float64.
 *
 * The returned `logp` is the log-probability of the chosen token under the tempered but
 * *unfiltered* distribution, `log_softmax(logits / temperature)`, which is what TRL and verl
 * record as the sampling log-prob (the filtered distribution would give some tokens probability 0
 * and make importance ratios against it undefined).
 *
 * @module
 */

import type { Rng } from "../engine/random.ts";

/** How to choose a token from a row of logits. */
export interface TokenSampling {
  /** Divides the logits; 0 means greedy (argmax). @default 1 */
  temperature: number;
  /** Keeps only the k most likely tokens; 0 turns it off. @default 0 */
  topK: number;
  /** Keeps the smallest set of most likely tokens with probability >= topP; 1 turns it off. @default 1 */
  topP: number;
}

/** The chosen token and its log-probability (see the module doc for which distribution). */
export interface SampledToken {
  /** The token id, in [0, vocab). */
  token: number;
  /** `log_softmax(logits / temperature)[token]`; for greedy, `log_softmax(logits)[token]`. */
  logp: number;
}

/** What the sampler needs from a random generator: one uniform in [0, 1) per draw. */
export type UniformSource = Pick<Rng, "uniform">;

/** Log-weight buckets per nat used to find top-p candidates; the last bucket holds the tail. */
const BUCKETS_PER_NAT = 4;
const BUCKETS = 256;

/**
 * Numerically stable log-softmax: `logits[i] - log(sum(exp(logits)))`, with the max subtracted and
 * the sum accumulated in float64.
 *
 * @example
 * ```ts
 * logSoftmax(new Float32Array([0, Math.log(3)])); // ≈ [log(1/4), log(3/4)]
 * ```
 */
export function logSoftmax(logits: Float32Array): Float32Array {
  const n = logits.length;
  const max = n === 0 ? 0 : logits[maxAt(logits, 0, n)]!;
  const lse = max + Math.log(sumWeights(logits, 0, n, 1, max));
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = logits[i]! - lse;
  return out;
}

/**
 * The position of the largest value in `logits[offset, offset + length)`, relative to `offset`;
 * the lowest position wins a tie. Throws on NaN (a broken model, not a token).
 *
 * @example
 * ```ts
 * argmax(new Float32Array([1, 3, 3, 2])); // 1
 * const rows = new Float32Array([0, 9, 1, 5, 0, 7]); // [B 2, V 3]
 * argmax(rows, 3, 3); // 2: the argmax of row 1
 * ```
 */
export function argmax(
  logits: Float32Array,
  offset = 0,
  length: number = logits.length - offset,
): number {
  checkRange(logits, offset, length);
  return maxAt(logits, offset, length);
}

/**
 * Samples the next token from one row of logits. Temperature 0 is greedy (argmax, lowest index on
 * ties; no random draw). Otherwise it divides by the temperature, applies top-k then top-p,
 * renormalises and draws with exactly one `rng.uniform()` by inverse CDF over ascending token ids.
 *
 * `logp` is the chosen token's log-probability under `log_softmax(logits / temperature)`, the
 * tempered distribution *before* top-k/top-p filtering (what TRL and verl record as the sampling
 * log-prob); for greedy it is `log_softmax(logits)` at the argmax.
 *
 * Cost per call: O(V) without filtering, O(V log k) with top-k, and with top-p alone O(V) plus a
 * sort of the tokens that can be in the nucleus (all of a very flat distribution).
 *
 * @example
 * ```ts
 * import { Rng } from "../engine/random.ts";
 *
 * const rng = new Rng(1).fork("sample");
 * const { token, logp } = sampleToken(
 *   new Float32Array([2, 1, 0.5]),
 *   { temperature: 0.7, topK: 0, topP: 0.9 },
 *   rng,
 * );
 * ```
 */
export function sampleToken(
  logits: Float32Array,
  options: TokenSampling,
  rng: UniformSource,
): SampledToken {
  checkRange(logits, 0, logits.length);
  return sampleAt(logits, 0, logits.length, options, rng);
}

/**
 * {@linkcode sampleToken} on row `row` of a flat [B, vocab] buffer, without copying the row.
 *
 * @example
 * ```ts
 * import { Rng } from "../engine/random.ts";
 *
 * const logits = new Float32Array(2 * 3); // [B 2, V 3], e.g. from `await tensor.data()`
 * const rng = new Rng(1).fork("sample");
 * const options = { temperature: 1, topK: 0, topP: 1 };
 * const tokens = [0, 1].map((b) => sampleRow(logits, b, 3, options, rng).token);
 * ```
 */
export function sampleRow(
  buffer: Float32Array,
  row: number,
  vocab: number,
  options: TokenSampling,
  rng: UniformSource,
): SampledToken {
  if (!Number.isInteger(vocab) || vocab < 1) {
    throw new RangeError(
      `Cannot sample a row as 'vocab' must be an integer >= 1: current value is ${vocab}`,
    );
  }
  if (!Number.isInteger(row) || row < 0 || (row + 1) * vocab > buffer.length) {
    throw new RangeError(
      `Cannot sample a row as 'row' must be an integer in [0, ${
        Math.floor(buffer.length / vocab)
      }) for a buffer of ${buffer.length} logits with vocab ${vocab}: current value is ${row}`,
    );
  }
  return sampleAt(buffer, row * vocab, vocab, options, rng);
}

/** The sampler on `x[offset, offset + n)`; token ids are relative to `offset`. */
function sampleAt(
  x: Float32Array,
  offset: number,
  n: number,
  options: TokenSampling,
  rng: UniformSource,
): SampledToken {
  const { temperature, topK, topP } = options;
  checkOptions(options);
  const best = maxAt(x, offset, n);
  const max = x[offset + best]!;
  if (max === -Infinity || max === Infinity) {
    throw new RangeError(
      `Cannot sample a token as the largest logit must be finite: current value is ${max}`,
    );
  }

  // 1) greedy: the argmax, scored under the raw distribution (x_best - max = 0). No random draw.
  if (temperature === 0) {
    return { token: best, logp: -Math.log(sumWeights(x, offset, n, 1, max)) };
  }

  // 2) the tempered distribution: p_i = w_i / Σw with w_i = exp((x_i - max) / T), in float64.
  const inv = 1 / temperature;
  const weight = (i: number) => Math.exp((x[offset + i]! - max) * inv);
  const all = sumWeights(x, offset, n, inv, max);
  const logAll = Math.log(all);
  const logpOf = (i: number) => (x[offset + i]! - max) * inv - logAll;
  const u = rng.uniform();

  // 3) no filtering: inverse CDF over every id.
  const useTopK = topK > 0 && topK < n;
  const useTopP = topP < 1;
  if (!useTopK && !useTopP) {
    const target = u * all;
    let cum = 0;
    let last = 0;
    for (let i = 0; i < n; i++) {
      const w = weight(i);
      if (w === 0) continue;
      cum += w;
      last = i;
      if (cum > target) return { token: i, logp: logpOf(i) };
    }
    return { token: last, logp: logpOf(last) }; // only when u·Σw rounds up to Σw
  }

  // 4) the ranking top-p walks: the top k (by value, then lower id), or, without top-k, every
  //    token that can be in the nucleus (found by log-weight buckets, so only those are sorted).
  let ranked: number[];
  let mass: number; // total weight of the distribution top-p works on: top-k's, or everything
  if (useTopK) {
    ranked = topIndices(x, offset, n, topK);
    mass = ranked.reduce((s, i) => s + weight(i), 0);
  } else {
    mass = all;
    ranked = nucleusCandidates(x, offset, n, inv, max, topP * mass);
  }

  // 5) top-p: the shortest prefix of the ranking whose renormalised mass reaches topP (>= 1 token).
  let kept = ranked;
  if (useTopP) {
    let cum = 0;
    let end = 0;
    while (end < ranked.length) {
      cum += weight(ranked[end]!);
      end++;
      if (cum >= topP * mass) break;
    }
    kept = ranked.slice(0, end);
  }

  // 6) one draw by inverse CDF over the kept ids in ascending order.
  const ascending = Int32Array.from(kept).sort(); // a typed sort is numeric and fast
  const total = ascending.reduce((s, i) => s + weight(i), 0);
  const target = u * total;
  let cum = 0;
  let last = ascending[0]!;
  for (const i of ascending) {
    const w = weight(i);
    if (w === 0) continue;
    cum += w;
    last = i;
    if (cum > target) return { token: i, logp: logpOf(i) };
  }
  return { token: last, logp: logpOf(last) };
}

/** Σ exp((x_i - max) · scale) over the range, in float64: the shifted softmax normaliser. */
function sumWeights(
  x: Float32Array,
  offset: number,
  n: number,
  scale: number,
  max: number,
): number {
  let sum = 0;
  for (let i = offset; i < offset + n; i++) sum += Math.exp((x[i]! - max) * scale);
  return sum;
}

/** The argmax over a checked range, relative to offset; throws on NaN. */
function maxAt(x: Float32Array, offset: number, n: number): number {
  let best = 0;
  let bestValue = -Infinity;
  for (let i = 0; i < n; i++) {
    const v = x[offset + i]!;
    if (v > bestValue) {
      best = i;
      bestValue = v;
    } else if (v !== v) {
      throw new RangeError(`Cannot choose a token as logit ${i} is NaN`);
    }
  }
  return best;
}

/**
 * The ids that can be in the nucleus, ranked by value descending then id ascending: every token in
 * the log-weight buckets (quarter nats below the max) that reach `target` weight, plus one more
 * bucket as a margin against rounding. The nucleus is a prefix of the full ranking that stops
 * inside this set, so sorting only the set gives the same nucleus as sorting everything: O(n)
 * plus a sort of the candidates.
 */
function nucleusCandidates(
  x: Float32Array,
  offset: number,
  n: number,
  inv: number,
  max: number,
  target: number,
): number[] {
  const bucketOf = (i: number) =>
    Math.min(BUCKETS - 1, Math.floor((max - x[offset + i]!) * inv * BUCKETS_PER_NAT));
  const bucketMass = new Float64Array(BUCKETS);
  for (let i = 0; i < n; i++) bucketMass[bucketOf(i)]! += Math.exp((x[offset + i]! - max) * inv);
  let last = BUCKETS - 1;
  let cum = 0;
  for (let b = 0; b < BUCKETS; b++) {
    cum += bucketMass[b]!;
    if (cum >= target) {
      last = Math.min(b + 1, BUCKETS - 1);
      break;
    }
  }
  const candidates: number[] = [];
  for (let i = 0; i < n; i++) if (bucketOf(i) <= last) candidates.push(i);
  return candidates.sort((a, b) => x[offset + b]! - x[offset + a]! || a - b);
}

/**
 * The ids of the k largest values (k >= 1), ranked by value descending then id ascending, via a
 * size-k heap: O(n log k).
 */
function topIndices(x: Float32Array, offset: number, n: number, k: number): number[] {
  // `worse(a, b)`: a ranks below b. The heap keeps its worst element at the root.
  const worse = (a: number, b: number) => {
    const va = x[offset + a]!;
    const vb = x[offset + b]!;
    return va < vb || (va === vb && a > b);
  };
  const heap: number[] = [];
  for (let i = 0; i < n; i++) {
    if (heap.length < k) {
      heap.push(i);
      let c = heap.length - 1;
      while (c > 0) {
        const p = (c - 1) >> 1;
        if (!worse(heap[c]!, heap[p]!)) break;
        [heap[c], heap[p]] = [heap[p]!, heap[c]!];
        c = p;
      }
    } else if (worse(heap[0]!, i)) {
      heap[0] = i;
      let p = 0;
      for (;;) {
        const l = 2 * p + 1;
        const r = l + 1;
        let m = p;
        if (l < k && worse(heap[l]!, heap[m]!)) m = l;
        if (r < k && worse(heap[r]!, heap[m]!)) m = r;
        if (m === p) break;
        [heap[m], heap[p]] = [heap[p]!, heap[m]!];
        p = m;
      }
    }
  }
  return heap.sort((a, b) => (worse(a, b) ? 1 : worse(b, a) ? -1 : 0));
}

function checkRange(x: Float32Array, offset: number, length: number): void {
  if (!Number.isInteger(offset) || !Number.isInteger(length) || offset < 0 || length < 1) {
    throw new RangeError(
      `Cannot choose a token as the row must be non-empty: current offset is ${offset}, length ${length}`,
    );
  }
  if (offset + length > x.length) {
    throw new RangeError(
      `Cannot choose a token as the row [${offset}, ${
        offset + length
      }) is beyond the ${x.length} logits`,
    );
  }
}

function checkOptions({ temperature, topK, topP }: TokenSampling): void {
  if (!(Number.isFinite(temperature) && temperature >= 0)) {
    throw new RangeError(
      `Cannot sample a token as 'temperature' must be a finite number >= 0: current value is ${temperature}`,
    );
  }
  if (!(Number.isInteger(topK) && topK >= 0)) {
    throw new RangeError(
      `Cannot sample a token as 'topK' must be an integer >= 0: current value is ${topK}`,
    );
  }
  if (!(topP > 0 && topP <= 1)) {
    throw new RangeError(
      `Cannot sample a token as 'topP' must be in (0, 1]: current value is ${topP}`,
    );
  }
}
