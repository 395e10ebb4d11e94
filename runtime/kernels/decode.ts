/**
 * KV-cache sampling of the transformer (`model/transformer.ts`) straight on `Float32Array`s, its
 * matrix products through OpenBLAS (`blas.ts`). The same math as `forward()`, without tfjs.
 *
 * Why: a sampling step of a small model is ~120 tiny tfjs kernels (norms, RoPE's split and concat,
 * per-head attention products, the embedding gather, the KV cache's concat), and on wasm their
 * dispatch costs several times the arithmetic. Here a step is a handful of `sgemm` calls and plain
 * loops, and the cache is written in place. Used by `sample.ts` only when OpenBLAS runs the
 * current backend's products (wasm or cpu with `--allow-ffi`); anywhere else sampling stays on tfjs.
 *
 * Numerics: the products are the same OpenBLAS calls tfjs's `BatchMatMul` makes there; the rest
 * accumulates in float64 and rounds to float32, so logits agree with `forward()` to float32
 * rounding (tests/runtime/kernels/decode_test.ts), not bit for bit.
 *
 * Memory: large fresh typed arrays are slow to allocate (~0.1 ms for 180 KB on the bench machine,
 * more than the loops over them), so a sampling call allocates almost none: the weights are read
 * once per tfjs data (`weightCopies`), the work arrays are the module's (`scratch`), and a KV cache
 * comes from the last disposed decoder (`dispose`). None of this changes a value: the loops keep
 * their order of operations, and logits are bit-identical to the allocating version's.
 *
 * @module
 */

import { type Blas, blasRunsMatMul, loadBlas } from "../blas.ts";
import { tf } from "../backend.ts";
import type { ModelConfig, Params } from "../model/transformer.ts";

const ROW_MAJOR = 101;
const NO_TRANS = 111;
const TRANS = 112;

/** One layer's weights, linear ones [in, out] as `forward()` keeps them. */
interface Layer {
  inputNorm: Float32Array;
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
  o: Float32Array;
  postNorm: Float32Array;
  gate: Float32Array;
  up: Float32Array;
  down: Float32Array;
  /** [B, kvHeads, capacity, headDim]: keys (after RoPE) and values of every position so far. */
  keys: Float32Array;
  values: Float32Array;
}

/** A model ready to sample B rows: weights read once, and a KV cache of `capacity` positions. */
export interface Decoder {
  /**
   * Runs `time` new tokens per row (`ids`: [B, time], row-major) after the earlier ones and
   * returns the logits of each row's last new token: [B, vocab]. With `active`, only those rows
   * run (the others' logits are 0 and their cache is left behind: they must not run again).
   */
  next(ids: Int32Array, time: number, active?: readonly number[]): Float32Array;
  /** Hands the KV cache's arrays to the next decoder; this one must not run again. */
  dispose(): void;
}

/** C[M, N] = A[M, K] · B (B is [K, N], or [N, K] with `transB`). */
function matmul(
  blas: Blas,
  a: Float32Array,
  b: Float32Array,
  c: Float32Array,
  m: number,
  n: number,
  k: number,
  transB = false,
): void {
  blas.sgemm(
    ROW_MAJOR,
    NO_TRANS,
    transB ? TRANS : NO_TRANS,
    m,
    n,
    k,
    1,
    Deno.UnsafePointer.of(a),
    k,
    Deno.UnsafePointer.of(b),
    transB ? k : n,
    0,
    Deno.UnsafePointer.of(c),
    n,
  );
}

/** Copies `count` floats from `source[from…]` to `target[to…]` (no `subarray`: each allocates). */
function copy(source: Float32Array, from: number, target: Float32Array, to: number, count: number) {
  for (let i = 0; i < count; i++) target[to + i] = source[from + i]!;
}

/**
 * gate[i] ← silu(gate[i]) · up[i] = gate[i] · sigmoid(gate[i]) · up[i] over the first `size`
 * elements, each product rounded to float32 as `forward()`'s kernels round it. On wasm the sigmoid
 * is the backend's own (vectorised) kernel, read where it leaves its output in the module's memory:
 * a copy in costs far less than `Math.exp` per element in JavaScript, and gives the very values
 * `forward()` multiplies by there (reading them back with `dataSync` would allocate a fresh array
 * per call, which cost more than the kernel).
 */
function siluTimes(gate: Float32Array, up: Float32Array, size: number): void {
  const f = Math.fround;
  if (tf.getBackend() === "wasm") {
    const t = tf.tensor1d(gate.subarray(0, size));
    const s = tf.sigmoid(t);
    try {
      const backend = tf.backend() as unknown as {
        wasm: { HEAPF32: Float32Array };
        dataIdMap: { get(id: object): { memoryOffset: number } };
      };
      // The heap's view changes when the memory grows: take it after the kernel ran.
      const at = backend.dataIdMap.get(s.dataId).memoryOffset / 4;
      gatedBy(gate, backend.wasm.HEAPF32, at, up, size);
    } finally {
      tf.dispose([t, s]);
    }
    return;
  }
  for (let i = 0; i < size; i++) {
    const g = gate[i]!;
    gate[i] = f(g * f(1 / (1 + Math.exp(-g)))) * up[i]!;
  }
}

/**
 * gate[i] ← gate[i] · sig[at + i] · up[i], in float32 steps. Apart from `siluTimes`, whose tfjs
 * calls V8 kept re-optimising (20 deoptimisations in 30 sampling calls): this loop stays optimised.
 */
function gatedBy(
  gate: Float32Array,
  sig: Float32Array,
  at: number,
  up: Float32Array,
  size: number,
) {
  const f = Math.fround;
  for (let i = 0; i < size; i++) gate[i] = f(gate[i]! * sig[at + i]!) * up[i]!;
}

/** out[r] = x[r] / rms(x[r]) · w for each of the `rows` rows of width `d`. */
function rmsNorm(x: Float32Array, w: Float32Array, out: Float32Array, rows: number, eps: number) {
  const d = w.length;
  for (let r = 0; r < rows; r++) {
    const at = r * d;
    let sum = 0;
    for (let i = 0; i < d; i++) sum += x[at + i]! * x[at + i]!;
    const inv = 1 / Math.sqrt(sum / d + eps);
    for (let i = 0; i < d; i++) out[at + i] = x[at + i]! * inv * w[i]!;
  }
}

/**
 * The weights read so far, by the backend data they were read from. tfjs never changes the data
 * under a `dataId` (an optimiser's `assign` gives the variable a new one), so a copy stays valid
 * while its key lives: sampling again with the same weights skips reading them (~1 ms a call for
 * the front door's model), and an update's new data is read afresh.
 */
const weightCopies = new WeakMap<object, Float32Array>();

/**
 * KV cache arrays that disposed decoders handed back, by length, up to {@linkcode POOLED_BYTES}
 * in all: a new array of the front door's cache (~0.6 MB) cost ~0.1 ms to allocate here, four per
 * sampling call. Their old contents need no clearing: a decoder reads only positions it wrote.
 */
const freeCaches = new Map<number, Float32Array[]>();
let pooledBytes = 0;
const POOLED_BYTES = 16 << 20;

function takeCache(length: number): Float32Array {
  const free = freeCaches.get(length)?.pop();
  if (free) {
    pooledBytes -= free.byteLength;
    return free;
  }
  return new Float32Array(length);
}

function giveCache(array: Float32Array): void {
  if (pooledBytes + array.byteLength > POOLED_BYTES) return;
  const free = freeCaches.get(array.length) ?? [];
  freeCaches.set(array.length, free);
  free.push(array);
  pooledBytes += array.byteLength;
}

/**
 * A decoder for `rows` rows with left padding `padding` and room for `capacity` positions, or null
 * where OpenBLAS does not run the current backend's products (then tfjs is as fast as it gets).
 */
export async function blasDecoder(
  params: Params,
  config: ModelConfig,
  rows: number,
  padding: readonly number[],
  capacity: number,
): Promise<Decoder | null> {
  if (!blasRunsMatMul(tf.getBackend())) return null;
  const probe = loadBlas();
  if (!probe.ok) return null;
  const { kvHeads, headDim: hd } = config;
  capacity = Math.min(capacity, config.contextLength);
  const read = async (name: string) => {
    const t = params[name];
    if (!t) throw new Error(`The model has no parameter '${name}'`);
    const known = weightCopies.get(t.dataId);
    if (known) return known;
    const values = new Float32Array(await t.data());
    weightCopies.set(t.dataId, values);
    return values;
  };
  const layers: Layer[] = [];
  for (let l = 0; l < config.layers; l++) {
    const w = (name: string) => read(`model.layers.${l}.${name}.weight`);
    layers.push({
      inputNorm: await w("input_layernorm"),
      q: await w("self_attn.q_proj"),
      k: await w("self_attn.k_proj"),
      v: await w("self_attn.v_proj"),
      o: await w("self_attn.o_proj"),
      postNorm: await w("post_attention_layernorm"),
      gate: await w("mlp.gate_proj"),
      up: await w("mlp.up_proj"),
      down: await w("mlp.down_proj"),
      keys: takeCache(rows * kvHeads * capacity * hd),
      values: takeCache(rows * kvHeads * capacity * hd),
    });
  }
  const weights = {
    embedding: await read("model.embed_tokens.weight"), // [V, d]
    finalNorm: await read("model.norm.weight"),
    head: config.tiedEmbeddings ? null : await read("lm_head.weight"), // [d, V]
    layers,
  };
  return new BlasDecoder(probe.blas, config, weights, rows, padding, capacity);
}

/**
 * The decoder's state and step. A class, not closures made per call: V8 keeps what it learns
 * about a function (and its optimised code) per closure, so fresh closures on every sampling call
 * would run their loops cold.
 */
class BlasDecoder implements Decoder {
  /** Positions already in the cache. */
  past = 0;
  /** Whether `dispose` handed the cache back. */
  disposed = false;
  /** One query's attention weights, by position. */
  readonly scores: Float64Array;
  /** RoPE's cos and sin, [capacity, headDim / 2], as `ropeTables` computes them. */
  readonly cosines: Float32Array;
  readonly sines: Float32Array;

  constructor(
    readonly blas: Blas,
    readonly config: ModelConfig,
    readonly weights: {
      embedding: Float32Array;
      finalNorm: Float32Array;
      head: Float32Array | null;
      layers: Layer[];
    },
    readonly rows: number,
    readonly padding: readonly number[],
    readonly capacity: number,
  ) {
    const { headDim: hd, ropeTheta } = config;
    const half = hd / 2;
    this.scores = new Float64Array(capacity);
    this.cosines = new Float32Array(capacity * half);
    this.sines = new Float32Array(capacity * half);
    for (let position = 0; position < capacity; position++) {
      for (let i = 0; i < half; i++) {
        const angle = position * ropeTheta ** (-(2 * i) / hd);
        this.cosines[position * half + i] = Math.cos(angle);
        this.sines[position * half + i] = Math.sin(angle);
      }
    }
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const { keys, values } of this.weights.layers) {
      giveCache(keys);
      giveCache(values);
    }
  }

  next(ids: Int32Array, time: number, active?: readonly number[]): Float32Array {
    if (this.disposed) throw new Error("Cannot decode: the decoder was disposed");
    const { config, rows, padding, capacity, past } = this;
    if (ids.length !== rows * time) {
      throw new Error(`Cannot decode ${ids.length} ids as [${rows}, ${time}]`);
    }
    if (past + time > capacity) {
      throw new Error(
        `Cannot run the model on ${past + time} positions: ` +
          (capacity < config.contextLength
            ? `the decoder was made for ${capacity}`
            : `its context length is ${config.contextLength}`),
      );
    }
    let chosen = active ?? Array.from({ length: rows }, (_, b) => b);
    // Rows with the same prompt (a group's) share its prefill: run the first, copy to the others.
    const copies: [number, number][] = [];
    if (past === 0) {
      const firstWith = new Map<string, number>();
      chosen = chosen.filter((b) => {
        const key = `${padding[b]}:${ids.subarray(b * time, (b + 1) * time).join(",")}`;
        const first = firstWith.get(key);
        if (first === undefined) firstWith.set(key, b);
        else copies.push([first, b]);
        return first === undefined;
      });
    }
    const logits = this.run(ids, time, chosen);
    const { vocab, kvHeads, headDim: hd } = config;
    const block = kvHeads * capacity * hd; // one row's cache
    for (const [from, to] of copies) {
      logits.copyWithin(to * vocab, from * vocab, (from + 1) * vocab);
      for (const { keys, values } of this.weights.layers) {
        keys.copyWithin(to * block, from * block, (from + 1) * block);
        values.copyWithin(to * block, from * block, (from + 1) * block);
      }
    }
    this.past += time;
    return logits;
  }

  /**
   * The model on `time` new tokens of the rows `chosen` (of `ids`, [B, time]): writes their
   * keys and values into the cache and returns [B, vocab] logits of their last token (other rows 0).
   * Its work arrays are the module's `scratch` ones (this runs synchronously, so no two runs share
   * them at once); only the logits are a fresh array.
   */
  run(ids: Int32Array, time: number, chosen: readonly number[]): Float32Array {
    const { blas, config, weights, rows, padding, capacity, past, cosines, sines } = this;
    const { dModel: d, heads, kvHeads, headDim: hd, ffnDim: ff, vocab, normEps: eps } = config;
    const count = chosen.length;
    const n = count * time; // rows of the residual stream: i·time + t for the i-th chosen row
    const x = scratch(0, n * d);
    const h = scratch(1, n * d);
    const q = scratch(2, n * heads * hd);
    const k = scratch(3, n * kvHeads * hd);
    const v = scratch(4, n * kvHeads * hd);
    const attended = scratch(5, n * heads * hd);
    const projected = scratch(6, n * d);
    const gate = scratch(7, n * ff);
    const up = scratch(8, n * ff);
    const embedding = weights.embedding;
    for (let i = 0; i < count; i++) {
      const b = chosen[i]!;
      for (let t = 0; t < time; t++) {
        copy(embedding, ids[b * time + t]! * d, x, (i * time + t) * d, d);
      }
    }
    // Queries run for positions [from, time): all of them, but in the last layer only the last
    // one, whose logits are asked for (the others' keys and values are all later positions need).
    let from = 0;
    let m = n; // rows of x: count·(time − from)
    const layers = weights.layers;
    for (let l = 0; l < layers.length; l++) {
      const layer = layers[l]!;
      // 1) attention
      rmsNorm(x, layer.inputNorm, h, m, eps);
      matmul(blas, h, layer.k, k, m, kvHeads * hd, d);
      matmul(blas, h, layer.v, v, m, kvHeads * hd, d);
      const { keys, values } = layer;
      for (let i = 0; i < count; i++) {
        const b = chosen[i]!;
        for (let t = 0; t < time; t++) {
          const r = i * time + t;
          const position = Math.max(0, past + t - padding[b]!);
          for (let j = 0; j < kvHeads; j++) {
            const at = ((b * kvHeads + j) * capacity + past + t) * hd;
            ropeInto(k, (r * kvHeads + j) * hd, keys, at, hd, cosines, sines, position);
            copy(v, (r * kvHeads + j) * hd, values, at, hd);
          }
        }
      }
      if (l === layers.length - 1 && time > 1) {
        // in place: row i moves to i·time + time − 1 ≥ i, in ascending order
        for (let i = 0; i < count; i++) {
          copy(x, (i * time + time - 1) * d, x, i * d, d);
          copy(h, (i * time + time - 1) * d, h, i * d, d);
        }
        from = time - 1;
        m = count;
      }
      const span = time - from;
      matmul(blas, h, layer.q, q, m, heads * hd, d);
      for (let i = 0; i < count; i++) {
        const b = chosen[i]!;
        for (let t = 0; t < span; t++) {
          const position = Math.max(0, past + from + t - padding[b]!);
          rope(q, i * span + t, heads, hd, cosines, sines, position);
        }
      }
      this.attend(layer, q, attended, chosen, from, time);
      matmul(blas, attended, layer.o, projected, m, d, heads * hd);
      for (let i = 0; i < m * d; i++) x[i] = x[i]! + projected[i]!;
      // 2) SwiGLU feed-forward
      rmsNorm(x, layer.postNorm, h, m, eps);
      matmul(blas, h, layer.gate, gate, m, ff, d);
      matmul(blas, h, layer.up, up, m, ff, d);
      siluTimes(gate, up, m * ff);
      matmul(blas, gate, layer.down, projected, m, d, ff);
      for (let i = 0; i < m * d; i++) x[i] = x[i]! + projected[i]!;
    }
    // 3) output: x now holds each chosen row's last position only
    rmsNorm(x, weights.finalNorm, h, count, eps);
    const out = scratch(9, count * vocab);
    if (weights.head) matmul(blas, h, weights.head, out, count, vocab, d);
    else matmul(blas, h, embedding, out, count, vocab, d, true);
    const logits = new Float32Array(rows * vocab);
    for (let i = 0; i < count; i++) copy(out, i * vocab, logits, chosen[i]! * vocab, vocab);
    return logits;
  }

  /**
   * Causal attention of the queries of new positions [from, time) of the rows `chosen` (`q`:
   * [count·(time − from), heads·hd]) over their cached positions, skipping each row's padding
   * (`forward()`'s additive −1e9 mask gives those keys weight exactly 0). A padding position's
   * query sees no key; its output (never read by a real token) is 0.
   */
  attend(
    layer: Layer,
    q: Float32Array,
    out: Float32Array,
    chosen: readonly number[],
    from: number,
    time: number,
  ): void {
    const { padding, capacity, past, scores } = this;
    const { heads, kvHeads, headDim: hd } = this.config;
    const scale = 1 / Math.sqrt(hd);
    const repeats = heads / kvHeads;
    const span = time - from;
    for (let c = 0; c < chosen.length; c++) {
      const b = chosen[c]!;
      for (let t = from; t < time; t++) {
        for (let j = 0; j < heads; j++) {
          const qAt = ((c * span + t - from) * heads + j) * hd;
          const base = (b * kvHeads + Math.floor(j / repeats)) * capacity * hd;
          // causal: up to and including this position
          attendQuery(q, qAt, layer, base, padding[b]!, past + t + 1, hd, scale, scores, out);
        }
      }
    }
  }
}

/**
 * One query's attention (`q[qAt…qAt + hd)`) over the cached positions [first, last) of the head
 * whose keys and values start at `base` in `layer`'s cache; writes `out[qAt…qAt + hd)`. A function
 * of its own, called once per row and head, rather than loops inside `attend`: V8 optimises a
 * small function called thousands of times as a whole, while it compiled the same loops nested in
 * `attend` on entering one and threw the code away on leaving it (52 deoptimisations in 30
 * front-door sampling calls under `--trace-deopt`; none now). Sums run in float64, in order of
 * position, and round to float32 once: the logits are bit-identical to the loops' before.
 */
function attendQuery(
  q: Float32Array,
  qAt: number,
  layer: Layer,
  base: number,
  first: number,
  last: number,
  hd: number,
  scale: number,
  scores: Float64Array,
  out: Float32Array,
): void {
  const { keys, values } = layer;
  const quads = hd & ~3; // 4 terms per iteration, still in order
  let max = -Infinity;
  for (let s = first; s < last; s++) {
    const at = base + s * hd;
    let dot = 0;
    let i = 0;
    for (; i < quads; i += 4) {
      dot += q[qAt + i]! * keys[at + i]!;
      dot += q[qAt + i + 1]! * keys[at + i + 1]!;
      dot += q[qAt + i + 2]! * keys[at + i + 2]!;
      dot += q[qAt + i + 3]! * keys[at + i + 3]!;
    }
    for (; i < hd; i++) dot += q[qAt + i]! * keys[at + i]!;
    const score = Math.fround(Math.fround(dot) * scale);
    scores[s] = score;
    if (score > max) max = score;
  }
  let sum = 0;
  for (let s = first; s < last; s++) {
    const e = Math.exp(scores[s]! - max);
    scores[s] = e;
    sum += e;
  }
  for (let s = first; s < last; s++) scores[s] = scores[s]! / sum;
  // out[i] = Σ_s p[s]·v[s][i], four outputs at a time, each summed over s in order
  let i = 0;
  for (; i < quads; i += 4) {
    let a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    for (let s = first; s < last; s++) {
      const p = scores[s]!;
      const at = base + s * hd + i;
      a0 += p * values[at]!;
      a1 += p * values[at + 1]!;
      a2 += p * values[at + 2]!;
      a3 += p * values[at + 3]!;
    }
    out[qAt + i] = a0;
    out[qAt + i + 1] = a1;
    out[qAt + i + 2] = a2;
    out[qAt + i + 3] = a3;
  }
  for (; i < hd; i++) {
    let a = 0;
    for (let s = first; s < last; s++) a += scores[s]! * values[base + s * hd + i]!;
    out[qAt + i] = a;
  }
}

/**
 * Work arrays of `run`, by slot, grown to the largest size asked for and kept across decoders: a
 * sampling call would otherwise allocate (and zero) ~10 arrays per model call.
 */
const scratchArrays: Float32Array[] = [];

/** Slot `slot`'s work array, with room for at least `size` floats (its contents are left over). */
function scratch(slot: number, size: number): Float32Array {
  const have = scratchArrays[slot];
  if (have && have.length >= size) return have;
  const made = new Float32Array(size);
  scratchArrays[slot] = made;
  return made;
}

/**
 * Writes one head of `hd` values from `source[from…]`, rotated to `position` as {@linkcode rope}
 * rotates it, to `target[to…]` (the KV cache): the rotation and the copy in one pass.
 */
function ropeInto(
  source: Float32Array,
  from: number,
  target: Float32Array,
  to: number,
  hd: number,
  cosines: Float32Array,
  sines: Float32Array,
  position: number,
): void {
  const f = Math.fround;
  const half = hd / 2;
  const table = position * half;
  for (let i = 0; i < half; i++) {
    const cos = cosines[table + i]!;
    const sin = sines[table + i]!;
    const x1 = source[from + i]!;
    const x2 = source[from + i + half]!;
    target[to + i] = f(x1 * cos) + f(-x2 * sin);
    target[to + i + half] = f(x2 * cos) + f(x1 * sin);
  }
}

/**
 * Rotates each of the `h` heads of row n of x ([N, h·hd]) to `position`, in HF's rotate-half
 * layout and in `forward()`'s float32 steps: x·cos + rotate_half(x)·sin.
 */
function rope(
  x: Float32Array,
  n: number,
  h: number,
  hd: number,
  cosines: Float32Array,
  sines: Float32Array,
  position: number,
): void {
  for (let j = 0; j < h; j++) {
    const at = (n * h + j) * hd;
    ropeInto(x, at, x, at, hd, cosines, sines, position); // in place: it reads a pair, then writes it
  }
}
