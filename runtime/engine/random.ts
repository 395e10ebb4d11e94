/**
 * The one source of randomness in the runtime. Every random choice (weight init, data order,
 * token sampling) flows from a recipe's integer seed through an {@linkcode Rng}, so a run is a
 * function of its recipe and a resumed run continues the same streams.
 *
 * The generator is sfc32 (Chris Doty-Humphrey's Small Fast Chaotic generator, 128-bit state with a
 * 32-bit counter, so no bad all-zero state; it passes PractRand and BigCrush), seeded through
 * splitmix32. Streams for separate purposes come from {@linkcode Rng.fork} with a label, which
 * leaves the parent untouched: adding a new consumer never shifts the numbers an old one sees.
 *
 * Not cryptographic. Plain 32-bit integer arithmetic (`Math.imul`, `>>> 0`), so the numbers are the
 * same on every JavaScript engine and backend.
 *
 * @module
 */

/** 2^-32: turns a uint32 into a double in [0, 1). */
const TWO_POW_MINUS_32 = 1 / 4294967296;

/** The golden-ratio increment of splitmix32. */
const GOLDEN = 0x9e3779b9;

/**
 * A seeded pseudo-random generator (sfc32) with labelled, independent sub-streams.
 *
 * @example
 * ```ts
 * const rng = new Rng(1);
 * const init = rng.fork("init"); // its own stream; `rng` is not advanced
 * const x = init.uniform(); // in [0, 1)
 * const die = rng.int(6); // in {0, …, 5}
 * const saved = rng.state(); // for a checkpoint
 * Rng.fromState(saved).uniform() === rng.uniform(); // true
 * ```
 */
export class Rng {
  #a: number;
  #b: number;
  #c: number;
  #d: number;

  /**
   * Seeds a generator from an integer. Any safe integer works (negative too); equal seeds give
   * equal streams.
   */
  constructor(seed: number) {
    if (!Number.isSafeInteger(seed)) {
      throw new RangeError(
        `Cannot create Rng as 'seed' must be a safe integer: current value is ${seed}`,
      );
    }
    // Low and high 32-bit words of the seed; the high word is 0 for every seed below 2^32.
    const low = seed >>> 0;
    const high = Math.floor(seed / 4294967296) >>> 0;
    const words = splitmixWords(low);
    if (high !== 0) {
      const extra = splitmixWords(high ^ GOLDEN);
      for (let i = 0; i < 4; i++) words[i] = (words[i]! ^ extra[i]!) >>> 0;
    }
    [this.#a, this.#b, this.#c, this.#d] = words as [number, number, number, number];
    // The reference sfc32 seeding discards 12 outputs to mix the state.
    for (let i = 0; i < 12; i++) this.nextUint32();
  }

  /**
   * Restores a generator saved with {@linkcode Rng.state}; it continues exactly where the saved
   * one was.
   *
   * @example
   * ```ts
   * const rng = new Rng(7);
   * const copy = Rng.fromState(rng.state());
   * copy.uniform() === rng.uniform(); // true
   * ```
   */
  static fromState(state: readonly number[]): Rng {
    if (
      state.length !== 4 || !state.every((w) => Number.isInteger(w) && w >= 0 && w <= 0xffffffff)
    ) {
      throw new RangeError(
        `Cannot restore Rng as 'state' must be 4 unsigned 32-bit integers: current value is ${
          JSON.stringify(state)
        }`,
      );
    }
    const rng = new Rng(0);
    [rng.#a, rng.#b, rng.#c, rng.#d] = state as [number, number, number, number];
    return rng;
  }

  /**
   * The full generator state as 4 unsigned 32-bit integers (JSON-safe), for checkpoints.
   *
   * @example
   * ```ts
   * JSON.stringify(new Rng(1).state()); // "[…four integers…]"
   * ```
   */
  state(): number[] {
    return [this.#a, this.#b, this.#c, this.#d];
  }

  /**
   * The next raw output: a uniform unsigned 32-bit integer. Every other method is built on this.
   *
   * @example
   * ```ts
   * new Rng(1).nextUint32(); // an integer in [0, 2^32)
   * ```
   */
  nextUint32(): number {
    // sfc32: t = a + b + counter; a = b ^ (b >>> 9); b = c + (c << 3); c = rotl(c, 21) + t.
    const t = (((this.#a + this.#b) | 0) + this.#d) | 0;
    this.#d = (this.#d + 1) | 0;
    this.#a = this.#b ^ (this.#b >>> 9);
    this.#b = (this.#c + (this.#c << 3)) | 0;
    this.#c = (this.#c << 21) | (this.#c >>> 11);
    this.#c = (this.#c + t) | 0;
    // Keep the stored words unsigned so that state() is canonical.
    this.#a >>>= 0;
    this.#b >>>= 0;
    this.#c >>>= 0;
    this.#d >>>= 0;
    return t >>> 0;
  }

  /**
   * A uniform double in [0, 1): one 32-bit output scaled by 2^-32 (so 32 random bits, never 1).
   *
   * @example
   * ```ts
   * const u = new Rng(1).uniform(); // 0 <= u < 1
   * ```
   */
  uniform(): number {
    return this.nextUint32() * TWO_POW_MINUS_32;
  }

  /**
   * A uniform integer in [0, n), without modulo bias: outputs in the incomplete last block of
   * 2^32 mod n values are rejected and redrawn (at most half the draws, for n just above 2^31).
   *
   * @param n The number of outcomes, an integer in [1, 2^32].
   *
   * @example
   * ```ts
   * const face = new Rng(1).int(6); // 0, 1, 2, 3, 4 or 5
   * ```
   */
  int(n: number): number {
    if (!Number.isInteger(n) || n < 1 || n > 4294967296) {
      throw new RangeError(
        `Cannot draw an integer as 'n' must be an integer in [1, 2^32]: current value is ${n}`,
      );
    }
    // The largest multiple of n that fits in 2^32; outputs at or above it would be biased.
    const limit = 4294967296 - (4294967296 % n);
    for (;;) {
      const x = this.nextUint32();
      if (x < limit) return x % n;
    }
  }

  /**
   * A standard normal draw (mean 0, std 1) by the Box–Muller transform. It uses exactly two
   * uniforms and discards the paired sine value, so the stream position stays simple to reason
   * about (nothing is cached outside {@linkcode Rng.state}).
   *
   * @example
   * ```ts
   * const z = new Rng(1).normal();
   * ```
   */
  normal(): number {
    const u1 = 1 - this.uniform(); // in (0, 1], so the log is finite
    const u2 = this.uniform();
    return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
  }

  /**
   * Shuffles `array` in place (Fisher–Yates, one {@linkcode Rng.int} per position) and returns it.
   *
   * @example
   * ```ts
   * const order = new Rng(1).shuffle([0, 1, 2, 3, 4]); // a permutation of 0..4
   * ```
   */
  shuffle<T>(array: T[]): T[] {
    for (let i = array.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const tmp = array[i]!;
      array[i] = array[j]!;
      array[j] = tmp;
    }
    return array;
  }

  /**
   * A new generator for one purpose, derived from this generator's current state and `label`
   * (hashed with FNV-1a), WITHOUT advancing this generator. Different labels give independent
   * streams; the same label from the same state gives the same stream.
   *
   * @example
   * ```ts
   * const rng = new Rng(1);
   * const init = rng.fork("init");
   * const data = rng.fork("data"); // independent of `init`; `rng` itself is unchanged
   * ```
   */
  fork(label: string): Rng {
    // Chain the label's hash through the four state words, then a second pass so that every new
    // word depends on every old word and on the label.
    const state = this.state();
    let h = fnv1a(label);
    const words: number[] = [];
    for (let i = 0; i < 4; i++) {
      h = mix32((h ^ state[i]!) + Math.imul(GOLDEN, i + 1));
      words.push(h);
    }
    for (let i = 0; i < 4; i++) {
      h = mix32(h ^ words[i]!);
      words[i] = h;
    }
    const child = Rng.fromState(words);
    for (let i = 0; i < 12; i++) child.nextUint32();
    return child;
  }
}

/**
 * `n` independent standard normal draws times `std`, as float32: the usual weight init.
 *
 * @example
 * ```ts
 * const w = normalArray(new Rng(1).fork("init"), 64 * 64, 0.02); // Float32Array of 4096
 * ```
 */
export function normalArray(rng: Rng, n: number, std: number): Float32Array {
  if (!Number.isInteger(n) || n < 0) {
    throw new RangeError(
      `Cannot make a normal array as 'n' must be an integer >= 0: current value is ${n}`,
    );
  }
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = rng.normal() * std;
  return out;
}

/** 32-bit FNV-1a over the UTF-16 code units of `text` (each unit fed as two bytes). */
function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    h = Math.imul(h ^ (unit & 0xff), 0x01000193);
    h = Math.imul(h ^ (unit >>> 8), 0x01000193);
  }
  return h >>> 0;
}

/** splitmix32's output function: a bijective avalanche mix of a 32-bit word. */
function mix32(x: number): number {
  let z = x | 0;
  z = Math.imul(z ^ (z >>> 16), 0x21f0aaad);
  z = Math.imul(z ^ (z >>> 15), 0x735a2d97);
  return (z ^ (z >>> 15)) >>> 0;
}

/** The first four outputs of splitmix32 started at `seed`. */
function splitmixWords(seed: number): number[] {
  const words: number[] = [];
  let x = seed | 0;
  for (let i = 0; i < 4; i++) {
    x = (x + GOLDEN) | 0;
    words.push(mix32(x));
  }
  return words;
}
