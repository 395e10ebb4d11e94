/**
 * Drawing tokens on the device (webgpu): the sampler's per-token step without a read back to
 * JavaScript. On webgpu every read waits on the GPU (≥ 10 ms under Deno, a fixed poll), so reading
 * the [B, V] logits each token bounds sampling at one read per token; drawn here, the tokens stay on
 * the device, feed the next decoder step there, and the host reads a stack of them every K tokens
 * (`sample.ts`).
 *
 * {@linkcode drawOnDevice} is one WGSL program (`kernels/webgpu_program.ts`), one workgroup per row:
 * the row's max (and argmax), then Σexp(z) and Σexp(z)·z over z = (x − max)/T, each invocation
 * over a contiguous chunk of the ids, then an inverse-CDF draw over the ids in ascending order
 * with the uniform of Philox4x32-10 at counter (token index, row, 0, 0) (`engine/philox.ts`), the
 * same semantics as the host's `sampleRow` without filtering. It returns the token, its
 * log-probability under the tempered unfiltered distribution, log_softmax(x/T) at the token, and
 * the distribution's entropy, as `sample_token.ts` and `sample.ts` compute them on the host.
 * Temperature 0 is greedy: the argmax (the lowest id on ties), logp and entropy of the untempered
 * distribution, as on the host.
 *
 * Float32: the sums are float32 on the device (the host's are float64) and accumulate in a fixed
 * order (per chunk, then chunk by chunk), so a draw is a pure function of the logits and the
 * uniform on a given device: seeded runs repeat there. A draw can differ from the host's only
 * where the uniform falls within float32 rounding (~1e-6 of the row's mass) of a boundary of the
 * cumulative sum; logp and entropy agree with the host's to float32 rounding.
 *
 * Top-k and top-p keep a prefix of the ranking (value descending, then id ascending, as on the
 * host): its end is found by bisection on the logits' order-preserving 32-bit keys (32 rounds of
 * a workgroup reduction: a count for top-k, a mass for top-p), then among the ties at that key by
 * id; the draw then runs over the kept ids only. `GIFTWRAP_DEVICE_DRAWS=0` keeps the host path
 * ({@linkcode drawsOnDevice}).
 *
 * @module
 */

import { tf } from "../engine/tf.ts";
import { PHILOX_WGSL } from "../engine/philox.ts";
import { runFused, wgslAvailable } from "../engine/kernels/webgpu_program.ts";
import type { Decoder } from "../engine/kernels/types.ts";

/** Invocations per row: each takes a contiguous chunk of ⌈V / 256⌉ ids. */
const WORKGROUP = 256;

/**
 * Whether `sampleCompletions` draws on the device with `decoder`: the backend runs WGSL (webgpu),
 * the decoder can run on device tensors (`nextOnDevice`), every id is below 2²⁴ (exact in
 * float32), and the environment variable `GIFTWRAP_DEVICE_DRAWS` is not `0` (which keeps the host
 * path, a read per token: cpu's stream, so webgpu's completions are cpu's where the logits agree).
 *
 * @example
 * ```ts
 * drawsOnDevice(decoder, 64); // true on webgpu
 * ```
 */
export function drawsOnDevice(decoder: Decoder, usable: number): boolean {
  // the drawn ids feed the next step through tfjs-webgpu's slice, which computes in float32
  const exact = usable <= 2 ** 24;
  return wgslAvailable() && decoder.nextOnDevice !== undefined && exact && !deviceDrawsTurnedOff();
}

/** Whether GIFTWRAP_DEVICE_DRAWS=0 asks for host draws (read without prompting for the permission). */
function deviceDrawsTurnedOff(): boolean {
  const name = "GIFTWRAP_DEVICE_DRAWS";
  const env = Deno.permissions.querySync({ name: "env", variable: name });
  return env.state === "granted" && Deno.env.get(name) === "0";
}

/** What one device draw needs besides the logits. */
export interface DeviceDraw {
  /** Philox4x32-10's key for this sampling call: 2 unsigned 32-bit words. */
  key: readonly [number, number];
  /** The token's index in the completion: the counter's first word. */
  step: number;
  /** Only ids below this are drawn (the tokenizer's ids, when the model has more rows). */
  usable: number;
  /** Divides the logits; 0 is greedy. */
  temperature: number;
  /** Keeps only the k most likely ids; 0 turns it off. @default 0 */
  topK?: number;
  /** Keeps the smallest set of most likely ids with probability ≥ topP; 1 turns it off. @default 1 */
  topP?: number;
}

/**
 * Draws one token per row of `logits` (float32 [B, V], on the webgpu backend) on the device and
 * returns int32 [3, B]: row 0 the tokens, row 1 the bits of each token's float32 log-probability
 * (log_softmax(x/T) at it), row 2 the bits of the entropy in nats, both readable through a
 * `Float32Array` over the same memory ({@linkcode readDraws}). A row whose largest logit is NaN
 * or infinite gets token −1. The tensor belongs to the caller's scope.
 *
 * With `into`, the draws go to slot `slot` of `draws`, an int32 [steps, 3, B] tensor of
 * `emptyTensor`'s (kernels/webgpu_program.ts) not read yet, which is returned: the sampler fills one
 * such block per K tokens and reads it once. (Stacking [3, B] draws with `tf.concat` would not do:
 * tfjs-webgpu's concat passes int32 values through f32, rounding the bits of logp and entropy.)
 *
 * @example
 * ```ts
 * const drawn = drawOnDevice(logits, { key: [1, 2], step: 0, usable: 64, temperature: 1 });
 * const { tokens, logp, entropy } = readDraws(await drawn.data() as Int32Array, 1, rows);
 *
 * const block = emptyTensor([16, 3, rows], "int32");
 * drawOnDevice(logits, { key: [1, 2], step: 0, usable: 64, temperature: 1 }, { draws: block, slot: 0 });
 * ```
 */
export function drawOnDevice(
  logits: tf.Tensor,
  draw: DeviceDraw,
  into?: { draws: tf.Tensor; slot: number },
): tf.Tensor {
  if (logits.rank !== 2 || logits.dtype !== "float32") {
    throw new RangeError(
      `Cannot draw tokens as 'logits' must be float32 [B, V]: current shape is [${logits.shape}], dtype ${logits.dtype}`,
    );
  }
  const [rows, vocab] = logits.shape as [number, number];
  const { key, step, usable, temperature, topK = 0, topP = 1 } = draw;
  if (!Number.isInteger(usable) || usable < 1 || usable > vocab) {
    throw new RangeError(
      `Cannot draw tokens as 'usable' must be an integer in [1, ${vocab}]: current value is ${usable}`,
    );
  }
  if (!(Number.isFinite(temperature) && temperature >= 0)) {
    throw new RangeError(
      `Cannot draw tokens as 'temperature' must be a finite number >= 0: current value is ${temperature}`,
    );
  }
  if (!(Number.isInteger(topK) && topK >= 0 && topK < 2 ** 31)) {
    throw new RangeError(
      `Cannot draw tokens as 'topK' must be an integer >= 0: current value is ${topK}`,
    );
  }
  if (!(topP > 0 && topP <= 1)) {
    throw new RangeError(
      `Cannot draw tokens as 'topP' must be in (0, 1]: current value is ${topP}`,
    );
  }
  const slot = into?.slot ?? 0;
  if (into) {
    const [steps, three, width] = into.draws.shape;
    if (
      into.draws.rank !== 3 || into.draws.dtype !== "int32" || three !== 3 || width !== rows ||
      !(Number.isInteger(slot) && slot >= 0 && slot < steps!)
    ) {
      throw new RangeError(
        `Cannot draw tokens into slot ${slot} of a [${into.draws.shape}] tensor: it must be int32 [steps, 3, ${rows}] with slot an integer in [0, steps)`,
      );
    }
  }
  const outputShape = into ? into.draws.shape : [3, rows];
  return runFused(
    {
      name: "draw_token",
      inputs: ["logits"],
      outputShape,
      dtype: "int32",
      workgroupSize: WORKGROUP,
      workgroups: rows,
      uniforms: {
        key0: ["u32", key[0] >>> 0],
        key1: ["u32", key[1] >>> 0],
        step: ["u32", step >>> 0],
        rows: ["i32", rows],
        vocab: ["i32", vocab],
        usable: ["i32", usable],
        greedy: ["i32", temperature > 0 ? 0 : 1],
        inv: ["f32", temperature > 0 ? 1 / temperature : 1],
        slot: ["i32", slot],
        topK: ["i32", topK],
        topP: ["f32", topP],
      },
      code: DRAW_WGSL,
    },
    [logits],
    into?.draws,
  );
}

/** Draws of `steps` tokens for `rows` rows, read from the device. */
export interface Draws {
  /** [steps, B] */
  tokens: Int32Array;
  /** [steps, B] */
  logp: Float32Array;
  /** [steps, B] */
  entropy: Float32Array;
}

/**
 * Splits what {@linkcode drawOnDevice} returned for `steps` tokens, stacked along the first axis
 * ([3·steps, B], int32) and read in one download, into tokens, log-probabilities and entropies.
 *
 * @example
 * ```ts
 * const stacked = tf.concat(perStep); // each [3, B]
 * const { tokens } = readDraws(await stacked.data() as Int32Array, perStep.length, rows);
 * ```
 */
export function readDraws(values: Int32Array, steps: number, rows: number): Draws {
  if (values.length !== 3 * steps * rows) {
    throw new RangeError(
      `Cannot read draws as ${steps} steps of ${rows} rows need ${
        3 * steps * rows
      } values: current length is ${values.length}`,
    );
  }
  const bits = new Float32Array(values.buffer, values.byteOffset, values.length);
  const tokens = new Int32Array(steps * rows);
  const logp = new Float32Array(steps * rows);
  const entropy = new Float32Array(steps * rows);
  for (let s = 0; s < steps; s++) {
    tokens.set(values.subarray(3 * s * rows, (3 * s + 1) * rows), s * rows);
    logp.set(bits.subarray((3 * s + 1) * rows, (3 * s + 2) * rows), s * rows);
    entropy.set(bits.subarray((3 * s + 2) * rows, (3 * s + 3) * rows), s * rows);
  }
  return { tokens, logp, entropy };
}

/**
 * One workgroup per row (workgroupId.x); invocation i takes ids [i·chunk, min((i + 1)·chunk,
 * usable)). Reductions go through workgroup memory in a fixed tree, the prefix of the chunk sums
 * in one invocation, so every sum has one order.
 */
const DRAW_WGSL = `
${PHILOX_WGSL}

var<workgroup> peakValue : array<f32, ${WORKGROUP}>;
var<workgroup> peakIndex : array<i32, ${WORKGROUP}>;
var<workgroup> broken : array<u32, ${WORKGROUP}>;
var<workgroup> chunkSum : array<f32, ${WORKGROUP}>;
var<workgroup> chunkWeighted : array<f32, ${WORKGROUP}>;
var<workgroup> keptSum : array<f32, ${WORKGROUP}>;
var<workgroup> reduceF : array<f32, ${WORKGROUP}>;
var<workgroup> reduceU : array<u32, ${WORKGROUP}>;
var<workgroup> boundary : i32;

// Σ of every invocation's v (a fixed tree); every invocation gets it. Call in uniform control flow.
fn sumF(lane : i32, v : f32) -> f32 {
  reduceF[lane] = v;
  workgroupBarrier();
  for (var stride = ${WORKGROUP / 2}; stride > 0; stride = stride / 2) {
    if (lane < stride) {
      reduceF[lane] = reduceF[lane] + reduceF[lane + stride];
    }
    workgroupBarrier();
  }
  let total = reduceF[0];
  workgroupBarrier();
  return total;
}

fn sumU(lane : i32, v : u32) -> u32 {
  reduceU[lane] = v;
  workgroupBarrier();
  for (var stride = ${WORKGROUP / 2}; stride > 0; stride = stride / 2) {
    if (lane < stride) {
      reduceU[lane] = reduceU[lane] + reduceU[lane + stride];
    }
    workgroupBarrier();
  }
  let total = reduceU[0];
  workgroupBarrier();
  return total;
}

// A logit's rank key: unsigned order of keys is the order of values (−0 as +0).
fn rankKey(x : f32) -> u32 {
  let bits = select(bitcast<u32>(x), 0u, x == 0.0);
  if ((bits & 0x80000000u) != 0u) {
    return ~bits;
  }
  return bits | 0x80000000u;
}

// Whether id i with key k ranks within the prefix that ends at (key, id): by value descending,
// then id ascending, as the host ranks.
fn withinPrefix(k : u32, i : i32, key : u32, id : i32) -> bool {
  return k > key || (k == key && i <= id);
}

// NaN or ±Infinity, by the bits (a shader compiler may assume x == x).
fn notFinite(x : f32) -> bool {
  return (bitcast<u32>(x) & 0x7fffffffu) >= 0x7f800000u;
}

fn isNaN32(x : f32) -> bool {
  return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u;
}

fn main(index : i32) {
  let row = i32(workgroupId.x);
  let lane = i32(localId.x);
  let n = uniforms.usable;
  let chunk = (n + ${WORKGROUP} - 1) / ${WORKGROUP};
  let lo = min(lane * chunk, n);
  let hi = min(lo + chunk, n);
  let base = row * uniforms.vocab;

  // 1) the largest logit and the lowest id holding it (n: none yet); a NaN marks the row broken.
  var peak = 0.0;
  var peakAt = n;
  var bad = 0u;
  for (var i = lo; i < hi; i++) {
    let x = logits[base + i];
    if (isNaN32(x)) {
      bad = 1u;
    } else if (peakAt == n || x > peak) {
      peak = x;
      peakAt = i;
    }
  }
  peakValue[lane] = peak;
  peakIndex[lane] = peakAt;
  broken[lane] = bad;
  workgroupBarrier();
  for (var stride = ${WORKGROUP / 2}; stride > 0; stride = stride / 2) {
    if (lane < stride) {
      let other = peakIndex[lane + stride];
      let otherValue = peakValue[lane + stride];
      let mine = peakIndex[lane];
      let mineValue = peakValue[lane];
      if (other < n &&
          (mine == n || otherValue > mineValue || (otherValue == mineValue && other < mine))) {
        peakValue[lane] = otherValue;
        peakIndex[lane] = other;
      }
      broken[lane] = broken[lane] | broken[lane + stride];
    }
    workgroupBarrier();
  }
  let top = peakValue[0];
  let argmax = peakIndex[0];
  let invalid = broken[0] != 0u || argmax >= n || notFinite(top);

  // 2) Σw and Σw·z over each chunk, w = exp(z), z = (x − top)·inv.
  let inv = uniforms.inv;
  var sum = 0.0;
  var weighted = 0.0;
  if (!invalid) {
    for (var i = lo; i < hi; i++) {
      let z = (logits[base + i] - top) * inv;
      let w = exp(z);
      if (w > 0.0) {
        sum = sum + w;
        weighted = weighted + w * z;
      }
    }
  }
  chunkSum[lane] = sum;
  chunkWeighted[lane] = weighted;
  workgroupBarrier();

  // 2b) top-k then top-p keep a prefix of the ranking (value descending, id ascending), ending
  //     at (key, id): found by bisection on the rank key, then among ties at it by id.
  var kKey = 0u; // (0, n): every id (every finite logit's key is above 0)
  var kId = n;
  let topK = uniforms.topK;
  if (topK > 0 && topK < n) {
    // the k-th largest key: the largest K with #{key ≥ K} ≥ k
    for (var bit = 31; bit >= 0; bit--) {
      let candidate = kKey | (1u << u32(bit));
      var count = 0u;
      for (var i = lo; i < hi; i++) {
        count += select(0u, 1u, rankKey(logits[base + i]) >= candidate);
      }
      if (sumU(lane, count) >= u32(topK)) {
        kKey = candidate;
      }
    }
    var above = 0u;
    var ties = 0u;
    for (var i = lo; i < hi; i++) {
      let k = rankKey(logits[base + i]);
      above += select(0u, 1u, k > kKey);
      ties += select(0u, 1u, k == kKey);
    }
    let need = u32(topK) - sumU(lane, above); // ties kept, lowest ids first (≥ 1)
    reduceU[lane] = ties;
    workgroupBarrier();
    if (lane == 0) {
      var seen = 0u;
      var c = 0;
      while (c < ${WORKGROUP} - 1 && seen + reduceU[c] < need) {
        seen += reduceU[c];
        c++;
      }
      var id = min(c * chunk, n);
      let end = min(id + chunk, n);
      for (var i = id; i < end; i++) {
        if (rankKey(logits[base + i]) == kKey) {
          seen++;
          id = i;
          if (seen >= need) {
            break;
          }
        }
      }
      boundary = id;
    }
    workgroupBarrier();
    kId = boundary;
    workgroupBarrier();
  }
  var pKey = 0u;
  var pId = n;
  let topP = uniforms.topP;
  if (topP < 1.0) {
    var mine = 0.0;
    for (var i = lo; i < hi; i++) {
      let x = logits[base + i];
      if (withinPrefix(rankKey(x), i, kKey, kId)) {
        mine += exp((x - top) * inv);
      }
    }
    let goal = topP * sumF(lane, mine);
    // the largest K with mass{key ≥ K, within top-k} ≥ goal
    for (var bit = 31; bit >= 0; bit--) {
      let candidate = pKey | (1u << u32(bit));
      var mass = 0.0;
      for (var i = lo; i < hi; i++) {
        let x = logits[base + i];
        let k = rankKey(x);
        if (k >= candidate && withinPrefix(k, i, kKey, kId)) {
          mass += exp((x - top) * inv);
        }
      }
      if (sumF(lane, mass) >= goal) {
        pKey = candidate;
      }
    }
    var above = 0.0;
    var ties = 0.0;
    for (var i = lo; i < hi; i++) {
      let x = logits[base + i];
      let k = rankKey(x);
      if (withinPrefix(k, i, kKey, kId)) {
        if (k > pKey) {
          above += exp((x - top) * inv);
        } else if (k == pKey) {
          ties += exp((x - top) * inv);
        }
      }
    }
    let before = sumF(lane, above);
    reduceF[lane] = ties;
    workgroupBarrier();
    if (lane == 0) {
      // ties at pKey in id order until the mass reaches the goal (the last tie if rounding
      // keeps it short)
      var cum = before;
      var c = 0;
      while (c < ${WORKGROUP} - 1 && !(cum + reduceF[c] >= goal)) {
        cum += reduceF[c];
        c++;
      }
      var id = n;
      let start = min(c * chunk, n);
      let end = min(start + chunk, n);
      for (var i = start; i < end; i++) {
        let x = logits[base + i];
        let k = rankKey(x);
        if (k == pKey && withinPrefix(k, i, kKey, kId)) {
          cum += exp((x - top) * inv);
          id = i;
          if (cum >= goal) {
            break;
          }
        }
      }
      boundary = id;
    }
    workgroupBarrier();
    pId = boundary;
    workgroupBarrier();
  }
  // the kept ids' weight per chunk (all of it without filtering)
  var kept = 0.0;
  let filtered = (topK > 0 && topK < n) || topP < 1.0;
  if (filtered) {
    for (var i = lo; i < hi; i++) {
      let x = logits[base + i];
      let k = rankKey(x);
      if (withinPrefix(k, i, kKey, kId) && withinPrefix(k, i, pKey, pId)) {
        let w = exp((x - top) * inv);
        if (w > 0.0) {
          kept += w;
        }
      }
    }
  } else {
    kept = sum;
  }
  keptSum[lane] = kept;
  workgroupBarrier();

  // 3) one invocation: the totals, the chunk the draw lands in, then the token within it.
  if (lane != 0) {
    return;
  }
  let rows = uniforms.rows;
  let out = uniforms.slot * 3 * rows + row;
  if (invalid) {
    result[out] = -1;
    result[out + rows] = 0;
    result[out + 2 * rows] = 0;
    return;
  }
  var total = 0.0;
  var totalWeighted = 0.0;
  for (var c = 0; c < ${WORKGROUP}; c++) {
    total = total + chunkSum[c];
    totalWeighted = totalWeighted + chunkWeighted[c];
  }
  var token = argmax;
  if (uniforms.greedy == 0) {
    let u = philoxUniform(philox4x32(vec4<u32>(uniforms.step, u32(row), 0u, 0u),
                                     vec2<u32>(uniforms.key0, uniforms.key1)).x);
    var keptTotal = 0.0;
    for (var c = 0; c < ${WORKGROUP}; c++) {
      keptTotal = keptTotal + keptSum[c];
    }
    let goal = u * keptTotal;
    var cum = 0.0;
    var chosen = -1;
    var lastChunk = 0;
    for (var c = 0; c < ${WORKGROUP}; c++) {
      if (keptSum[c] > 0.0) {
        lastChunk = c;
        if (cum + keptSum[c] > goal) {
          chosen = c;
          break;
        }
        cum = cum + keptSum[c];
      }
    }
    if (chosen < 0) { // u·Σw rounded up to Σw: the last id of positive weight, as on the host
      chosen = lastChunk;
      cum = keptTotal - keptSum[lastChunk];
    }
    let start = min(chosen * chunk, n);
    let end = min(start + chunk, n);
    var last = start;
    for (var i = start; i < end; i++) {
      let x = logits[base + i];
      let k = rankKey(x);
      if (filtered && !(withinPrefix(k, i, kKey, kId) && withinPrefix(k, i, pKey, pId))) {
        continue;
      }
      let w = exp((x - top) * inv);
      if (w > 0.0) {
        cum = cum + w;
        last = i;
        if (cum > goal) {
          break;
        }
      }
    }
    token = last;
  }
  let logTotal = log(total);
  result[out] = token;
  result[out + rows] = bitcast<i32>((logits[base + token] - top) * inv - logTotal);
  result[out + 2 * rows] = bitcast<i32>(logTotal - totalWeighted / total);
}
`;
