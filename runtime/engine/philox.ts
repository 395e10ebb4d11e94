/**
 * Philox4x32-10 (Salmon, Moraes, Dror & Shaw, "Parallel random numbers: as easy as 1, 2, 3",
 * SC 2011; Random123's `philox4x32`): a counter-based generator, the one cuRAND, JAX and
 * TensorFlow use on GPUs. Its output is a pure function of a 128-bit counter and a 64-bit key, so
 * each (row, token) of a sampling call gets its own uniform, computed wherever it is needed, in any
 * order, with no state carried between draws: the device sampler (`rl/sample_device.ts`) draws
 * row b's token t from counter (t, b, 0, 0) under a key taken from the caller's `Rng`, so the
 * stream still flows from the recipe's seed, and a row's draws do not depend on the other rows or
 * on when the host reads them.
 *
 * Two implementations of the same bits: {@linkcode philox4x32} in TypeScript (the reference) and
 * {@linkcode PHILOX_WGSL} in WGSL. WGSL has no 64-bit integers, so both form the 32×32→64-bit
 * product from 16-bit halves; every step is exact unsigned 32-bit arithmetic, so the two agree bit
 * for bit (tests/runtime/engine/philox_test.ts checks them against each other and against
 * Random123's published known-answer vectors).
 *
 * A uniform is the first output word's top 24 bits times 2⁻²⁴ ({@linkcode philoxUniform}): exact
 * in float32, in [0, 1 − 2⁻²⁴], the same number in JavaScript and in a shader.
 *
 * @module
 */

import { tf } from "./tf.ts";
import { runFused, workgroupsFor } from "./kernels/webgpu_program.ts";

/** Philox4x32's round multipliers. */
const M0 = 0xd2511f53;
const M1 = 0xcd9e8d57;
/** Its key schedule's increments (the golden ratio and √3 − 1, as 32-bit fractions). */
const W0 = 0x9e3779b9;
const W1 = 0xbb67ae85;
/** The rounds of Philox4x32-10. */
const ROUNDS = 10;

/** The high and low 32 bits of a·b for unsigned 32-bit a and b, from 16-bit halves. */
function mulHiLo(a: number, b: number): [number, number] {
  const aLo = a & 0xffff;
  const aHi = a >>> 16;
  const bLo = b & 0xffff;
  const bHi = b >>> 16;
  const low = aLo * bLo;
  const cross1 = aHi * bLo;
  const cross2 = aLo * bHi;
  const middle = (low >>> 16) + (cross1 & 0xffff) + (cross2 & 0xffff);
  const hi = aHi * bHi + Math.floor(cross1 / 65536) + Math.floor(cross2 / 65536) +
    Math.floor(middle / 65536);
  return [hi >>> 0, Math.imul(a, b) >>> 0];
}

/**
 * Philox4x32-10 of `counter` (4 unsigned 32-bit words) under `key` (2 words): 4 unsigned 32-bit
 * words, Random123's `philox4x32(ctr, key)`.
 *
 * @example
 * ```ts
 * philox4x32([0, 0, 0, 0], [0, 0]); // [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]
 * ```
 */
export function philox4x32(
  counter: readonly [number, number, number, number],
  key: readonly [number, number],
): [number, number, number, number] {
  let [c0, c1, c2, c3] = counter.map((w) => w >>> 0) as [number, number, number, number];
  let [k0, k1] = key.map((w) => w >>> 0) as [number, number];
  for (let round = 0; round < ROUNDS; round++) {
    if (round > 0) {
      k0 = (k0 + W0) >>> 0;
      k1 = (k1 + W1) >>> 0;
    }
    const [hi0, lo0] = mulHiLo(M0, c0);
    const [hi1, lo1] = mulHiLo(M1, c2);
    [c0, c1, c2, c3] = [(hi1 ^ c1 ^ k0) >>> 0, lo1, (hi0 ^ c3 ^ k1) >>> 0, lo0];
  }
  return [c0, c1, c2, c3];
}

/**
 * A uniform in [0, 1) from one output word: its top 24 bits × 2⁻²⁴, exact in float32 (the
 * shader's `philoxUniform` gives the same number).
 *
 * @example
 * ```ts
 * philoxUniform(0x80000000); // 0.5
 * ```
 */
export function philoxUniform(word: number): number {
  return (word >>> 8) / 16777216;
}

/**
 * The uniform of row `row`'s draw number `index` under `key`: {@linkcode philoxUniform} of the
 * first word of Philox4x32-10 at counter (index, row, 0, 0). What the device sampler draws with.
 *
 * @example
 * ```ts
 * const u = uniformAt([1, 2], 3, 0); // row 0's fourth token
 * ```
 */
export function uniformAt(key: readonly [number, number], index: number, row: number): number {
  return philoxUniform(philox4x32([index, row, 0, 0], key)[0]);
}

/**
 * WGSL of the generator: `philox4x32(counter : vec4<u32>, key : vec2<u32>) -> vec4<u32>` and
 * `philoxUniform(word : u32) -> f32`, the same bits as {@linkcode philox4x32} and
 * {@linkcode philoxUniform}. Paste it into a program's user code.
 */
export const PHILOX_WGSL = `
fn philoxMulHiLo(a : u32, b : u32) -> vec2<u32> {
  let aLo = a & 0xffffu;
  let aHi = a >> 16u;
  let bLo = b & 0xffffu;
  let bHi = b >> 16u;
  let low = aLo * bLo;
  let cross1 = aHi * bLo;
  let cross2 = aLo * bHi;
  let middle = (low >> 16u) + (cross1 & 0xffffu) + (cross2 & 0xffffu);
  let hi = aHi * bHi + (cross1 >> 16u) + (cross2 >> 16u) + (middle >> 16u);
  return vec2<u32>(hi, a * b);
}

fn philox4x32(counter : vec4<u32>, key : vec2<u32>) -> vec4<u32> {
  var c = counter;
  var k = key;
  for (var r = 0; r < ${ROUNDS}; r++) {
    if (r > 0) {
      k = k + vec2<u32>(${W0}u, ${W1}u);
    }
    let p0 = philoxMulHiLo(${M0}u, c.x);
    let p1 = philoxMulHiLo(${M1}u, c.z);
    c = vec4<u32>(p1.x ^ c.y ^ k.x, p1.y, p0.x ^ c.w ^ k.y, p0.y);
  }
  return c;
}

fn philoxUniform(word : u32) -> f32 {
  return f32(word >> 8u) * (1.0 / 16777216.0);
}
`;

/**
 * Philox4x32-10 on the device: `counters` int32 [N, 4] (each word's bits as an unsigned word) under
 * `key` → int32 [N, 4] of output words (as `| 0` of {@linkcode philox4x32}'s). Webgpu only; for
 * checking the shader against the reference and for any other program that wants the stream.
 *
 * @example
 * ```ts
 * const out = philoxOnDevice(tf.tensor2d([[0, 0, 0, 0]], [1, 4], "int32"), [0, 0]);
 * (await out.data())[0] >>> 0; // 0x6627e8d5
 * ```
 */
export function philoxOnDevice(counters: tf.Tensor, key: readonly [number, number]): tf.Tensor {
  const n = counters.shape[0]!;
  if (counters.rank !== 2 || counters.shape[1] !== 4 || counters.dtype !== "int32") {
    throw new RangeError(
      `Cannot run Philox as 'counters' must be int32 [N, 4]: current shape is [${counters.shape}], dtype ${counters.dtype}`,
    );
  }
  return runFused(
    {
      name: "philox4x32",
      inputs: ["counters"],
      outputShape: [n, 4],
      dtype: "int32",
      workgroupSize: 64,
      workgroups: workgroupsFor(n, 64),
      uniforms: { key0: ["u32", key[0] >>> 0], key1: ["u32", key[1] >>> 0], count: ["i32", n] },
      code: `
        ${PHILOX_WGSL}
        fn main(index : i32) {
          if (index >= uniforms.count) {
            return;
          }
          let at = index * 4;
          let c = vec4<u32>(bitcast<u32>(counters[at]), bitcast<u32>(counters[at + 1]),
                            bitcast<u32>(counters[at + 2]), bitcast<u32>(counters[at + 3]));
          let out = philox4x32(c, vec2<u32>(uniforms.key0, uniforms.key1));
          result[at] = bitcast<i32>(out.x);
          result[at + 1] = bitcast<i32>(out.y);
          result[at + 2] = bitcast<i32>(out.z);
          result[at + 3] = bitcast<i32>(out.w);
        }
      `,
    },
    [counters],
  );
}
