/**
 * KV-cache sampling of the transformer (`model/transformer.ts`) without tfjs: its matrix products
 * through OpenBLAS (`blas.ts`), everything else in a small WebAssembly module with SIMD
 * (`simd.wat`), on arrays laid out in that module's memory. The same math as `forward()`.
 *
 * Why: a sampling step of a small model is ~120 tiny tfjs kernels (norms, RoPE's split and concat,
 * per-head attention products, the embedding gather, the KV cache's concat), and on wasm their
 * dispatch costs several times the arithmetic. Here a step is a handful of `sgemm` calls and a few
 * calls into the module per row, and the cache is written in place; the loops are WebAssembly
 * because as plain JavaScript they were most of a sampling call (bench/RESULTS.md, "kernel
 * choices"). The decoder of the `wasm` and
 * `cpu` kernel sets where OpenBLAS runs their products (with `--allow-ffi`); anywhere else
 * sampling stays on tfjs.
 *
 * Numerics: the products are the same OpenBLAS calls tfjs's `BatchMatMul` makes there; the rest
 * runs in float32 with sums over 4 lanes and `simd.wat`'s exponential, so logits agree with
 * `forward()` to float32 rounding (tests/runtime/engine/kernels/decode_test.ts), not bit for bit.
 *
 * Memory: a decoder's arrays live in an `Arena` (one module instance and its memory). A disposed
 * decoder hands its arena to the next one, which lays out its own arrays from the start: sampling
 * again allocates nothing once the memory has grown to the largest call. The weights of the
 * products are read where the backend keeps them when it can say where (`WeightViews`: the wasm
 * backend's heap, which OpenBLAS reads in place, as tfjs's products there do): no copy of the
 * model is made, which at 0.5B parameters was 2 GB more. Elsewhere they are copied into
 * JavaScript arrays once per tfjs data (`weightCopies`).
 *
 * @module
 */

import type { Blas } from "../blas.ts";
import type { tf } from "../tf.ts";
import { attentionProjections, ropeInverseFrequencies } from "../model/architecture.ts";
import type { ModelConfig, Params } from "../model/config.ts";
import { simdKernels } from "./simd.ts";
import type { Decoder } from "./types.ts";

/**
 * A decoder call on fewer rows than this (every sampling step; a prefill of short prompts) runs
 * its products on one OpenBLAS thread. Such a product is a fraction of a millisecond of work, and
 * splitting it cost more than it saved: on 2 busy cores a SmolLM2-135M sampling run took 69 s with
 * 2 threads and 40 s with one (bench/RESULTS.md). The results are the same (OpenBLAS splits rows
 * and columns between threads, never a sum).
 */
export const DECODER_THREADED_ROWS = 64;

const ROW_MAJOR = 101;
const NO_TRANS = 111;
const TRANS = 112;

/**
 * An instance of simd.wat and its memory, where arrays are laid out one after the other
 * (`alloc`) and freed all at once by setting `top` back. Offsets are in floats; the memory grows
 * as needed, after which `heap` and `base` are new.
 */
class Arena {
  readonly memory = new WebAssembly.Memory({ initial: 16 }); // 1 MiB
  readonly kernels = simdKernels(this.memory);
  heap!: Float32Array;
  /** The memory's address, for OpenBLAS. */
  base!: Deno.PointerObject;
  /** Floats in use. */
  top = 0;

  constructor() {
    this.view();
  }

  /** Takes `heap` and `base` from the memory's current buffer. */
  private view(): void {
    this.heap = new Float32Array(this.memory.buffer);
    this.base = Deno.UnsafePointer.of(this.heap)!;
  }

  /** Room for `floats` values, 16-byte aligned; its offset in floats. */
  alloc(floats: number): number {
    const at = this.top;
    this.top += Math.ceil(floats / 4) * 4;
    const bytes = this.top * 4 - this.memory.buffer.byteLength;
    if (bytes > 0) {
      this.memory.grow(Math.ceil(bytes / 65536));
      this.view();
    }
    return at;
  }

  /** Copies `values` in; their offset. */
  copyIn(values: Float32Array): number {
    const at = this.alloc(values.length);
    this.heap.set(values, at);
    return at;
  }

  /** The address of offset `at`, for OpenBLAS. */
  pointer(at: number): Deno.PointerValue {
    return Deno.UnsafePointer.offset(this.base, at * 4);
  }
}

/** Time by part of a decoder's step while `profileDecoders(true)` is on; null when off. */
let laps: Map<string, { ms: number; calls: number }> | null = null;
let lapStart = 0;

/** Adds the time since the last lap to `what` (while profiling). */
function lap(what: string): void {
  if (!laps) return;
  const now = performance.now();
  const entry = laps.get(what) ?? { ms: 0, calls: 0 };
  entry.ms += now - lapStart;
  entry.calls += 1;
  laps.set(what, entry);
  lapStart = now;
}

/**
 * Turns the decoders' timers on (from empty) or off; returns what they measured so far, the
 * longest first: time by part of the step (each product, attention, norms, …). The sampler runs
 * outside tfjs here, so `tf.profile` sees none of it (bench/profile.ts).
 *
 * @example
 * ```ts
 * profileDecoders(true);
 * await sampleCompletions(kernels, params, config, tokenizer, prompts, options, rng);
 * for (const { name, ms } of profileDecoders(false)) console.log(name, ms);
 * ```
 */
export function profileDecoders(on: boolean): { name: string; ms: number; calls: number }[] {
  const measured = [...(laps ?? [])].map(([name, e]) => ({ name, ...e }));
  laps = on ? new Map() : null;
  return measured.sort((a, b) => b.ms - a.ms);
}

/** Arenas of disposed decoders, for the next ones (at most 2 kept). */
const freeArenas: Arena[] = [];

/**
 * The float32 values of a tensor where its backend keeps them, without a copy (the wasm heap): a
 * view that a growing heap detaches (it then reads as empty), so a decoder takes its views again
 * when that happened.
 */
export type WeightViews = (t: tf.Tensor) => Float32Array;

/** One layer: the products' weights ([in, out] as `forward()` keeps them), and arena offsets. */
interface Layer {
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
  o: Float32Array;
  gate: Float32Array;
  up: Float32Array;
  down: Float32Array;
  /** Offsets of the norms' gains. */
  inputNorm: number;
  postNorm: number;
  /** Offsets of the q, k and v projections' biases (Qwen2), or null: none. */
  qBias: number | null;
  kBias: number | null;
  vBias: number | null;
  /** Offsets of the per-head q and k norms' gains (Qwen3), or null: none. */
  qNorm: number | null;
  kNorm: number | null;
  /** Offsets of [B, kvHeads, capacity, headDim]: keys (after RoPE) and values of every position. */
  keys: number;
  values: number;
}

/**
 * The weights read so far, by the backend data they were read from. tfjs never changes the data
 * under a `dataId` (an optimiser's `assign` gives the variable a new one), so a copy stays valid
 * while its key lives: sampling again with the same weights skips reading them, and an update's
 * new data is read afresh.
 */
const weightCopies = new WeakMap<object, Float32Array>();

/**
 * A decoder for `rows` rows with left padding `padding` and room for `capacity` positions, its
 * products through `blas`. Its weights are read from `params` ([in, out], as the `wasm` and `cpu`
 * kernel sets keep them): in place through `views` when given, else copied. The decoder reads
 * `params` until it is disposed: they must live until then.
 */
export async function blasDecoder(
  blas: Blas,
  params: Params,
  config: ModelConfig,
  rows: number,
  padding: readonly number[],
  capacity: number,
  views?: WeightViews,
): Promise<Decoder> {
  capacity = Math.min(capacity, config.contextLength);
  const tensor = (name: string) => {
    const t = params[name];
    if (!t) throw new Error(`The model has no parameter '${name}'`);
    return t;
  };
  const read = async (name: string) => {
    const t = tensor(name);
    if (views && t.dtype === "float32") return views(t);
    const known = weightCopies.get(t.dataId);
    if (known) return known;
    const values = new Float32Array(await t.data());
    weightCopies.set(t.dataId, values);
    return values;
  };
  const optional = (name: string | null) => name === null ? null : read(name);
  const weights = [];
  for (let l = 0; l < config.layers; l++) {
    const w = (name: string) => read(`model.layers.${l}.${name}.weight`);
    const { q, k, v } = attentionProjections(config, l); // the architecture's names, as forward()'s
    weights.push({
      inputNorm: await w("input_layernorm"),
      q: await read(q.weight),
      k: await read(k.weight),
      v: await read(v.weight),
      qBias: await optional(q.bias),
      kBias: await optional(k.bias),
      vBias: await optional(v.bias),
      qNorm: await optional(q.norm),
      kNorm: await optional(k.norm),
      o: await w("self_attn.o_proj"),
      postNorm: await w("post_attention_layernorm"),
      gate: await w("mlp.gate_proj"),
      up: await w("mlp.up_proj"),
      down: await w("mlp.down_proj"),
    });
  }
  const embedding = await read("model.embed_tokens.weight"); // [V, d]
  const finalNorm = await read("model.norm.weight");
  const head = config.tiedEmbeddings ? null : await read("lm_head.weight"); // [d, V]
  // Views are taken again after the heap grew (their arrays then read as empty).
  const products = ["q", "k", "v", "o", "gate", "up", "down"] as const;
  const reread = views
    ? (w: DecoderWeights) => {
      if (w.embedding.length > 0) return;
      w.embedding = views(tensor("model.embed_tokens.weight"));
      if (w.head) w.head = views(tensor("lm_head.weight"));
      w.layers.forEach((layer, l) => {
        const names = attentionProjections(config, l);
        for (const which of products) {
          const name = which === "q" || which === "k" || which === "v"
            ? names[which].weight
            : `model.layers.${l}.${which === "o" ? "self_attn" : "mlp"}.${which}_proj.weight`;
          layer[which] = views(tensor(name));
        }
      });
    }
    : null;
  const arena = freeArenas.pop() ?? new Arena();
  arena.top = 0;
  const cache = rows * config.kvHeads * capacity * config.headDim;
  const copyIn = (values: Float32Array | null) => values === null ? null : arena.copyIn(values);
  const layers: Layer[] = weights.map((w) => ({
    ...w,
    inputNorm: arena.copyIn(w.inputNorm),
    postNorm: arena.copyIn(w.postNorm),
    qBias: copyIn(w.qBias),
    kBias: copyIn(w.kBias),
    vBias: copyIn(w.vBias),
    qNorm: copyIn(w.qNorm),
    kNorm: copyIn(w.kNorm),
    keys: arena.alloc(cache),
    values: arena.alloc(cache),
  }));
  return new BlasDecoder(
    blas,
    arena,
    config,
    {
      embedding,
      finalNorm: arena.copyIn(finalNorm),
      head,
      layers,
    },
    rows,
    padding,
    capacity,
    reread,
  );
}

/** The decoder's weights: the products' in JavaScript arrays or heap views, the rest in its arena. */
interface DecoderWeights {
  embedding: Float32Array;
  finalNorm: number;
  head: Float32Array | null;
  layers: Layer[];
}

/**
 * The decoder's state and step. A class, not closures made per call: V8 keeps what it learns
 * about a function (and its optimised code) per closure, so fresh closures on every sampling call
 * would run cold.
 */
class BlasDecoder implements Decoder {
  /** Positions already in the cache. */
  past = 0;
  /** Whether `dispose` handed the arena back. */
  disposed = false;
  /** Offset of one query's attention weights, by position. */
  readonly scores: number;
  /**
   * Offsets of RoPE's cos and sin, [capacity, headDim / 2], as `ropeTables` computes them (from
   * the same inverse frequencies, scaled as the architecture says).
   */
  readonly cosines: number;
  readonly sines: number;
  /** Where the work arrays of `run` start: everything before is this decoder's for good. */
  readonly fixed: number;

  constructor(
    readonly blas: Blas,
    readonly arena: Arena,
    readonly config: ModelConfig,
    readonly weights: DecoderWeights,
    readonly rows: number,
    readonly padding: readonly number[],
    readonly capacity: number,
    /** Takes the weights' heap views again when the heap grew; null for copies. */
    readonly reread: ((weights: DecoderWeights) => void) | null,
  ) {
    const half = config.headDim / 2;
    const inverse = ropeInverseFrequencies(config); // [hd / 2]
    this.scores = arena.alloc(capacity);
    this.cosines = arena.alloc(capacity * half);
    this.sines = arena.alloc(capacity * half);
    for (let position = 0; position < capacity; position++) {
      for (let i = 0; i < half; i++) {
        const angle = position * inverse[i]!;
        arena.heap[this.cosines + position * half + i] = Math.cos(angle);
        arena.heap[this.sines + position * half + i] = Math.sin(angle);
      }
    }
    this.fixed = arena.top;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    if (freeArenas.length < 2) freeArenas.push(this.arena);
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
    const single = this.blas.threads > 1 && chosen.length * time < DECODER_THREADED_ROWS;
    if (single) this.blas.setThreads(1);
    let logits: Float32Array;
    try {
      logits = this.run(ids, time, chosen);
    } finally {
      if (single) this.blas.setThreads(this.blas.threads);
    }
    const { vocab, kvHeads, headDim: hd } = config;
    const block = kvHeads * capacity * hd; // one row's cache
    const heap = this.arena.heap;
    for (const [from, to] of copies) {
      logits.copyWithin(to * vocab, from * vocab, (from + 1) * vocab);
      for (const { keys, values } of this.weights.layers) {
        heap.copyWithin(keys + to * block, keys + from * block, keys + (from + 1) * block);
        heap.copyWithin(values + to * block, values + from * block, values + (from + 1) * block);
      }
    }
    this.past += time;
    return logits;
  }

  /** C[M, N] = A[M, K] · B, A and C in the arena, B a weight ([K, N], or [N, K] with `transB`). */
  matmul(a: number, b: Float32Array, c: number, m: number, n: number, k: number, transB = false) {
    const arena = this.arena;
    this.blas.sgemm(
      ROW_MAJOR,
      NO_TRANS,
      transB ? TRANS : NO_TRANS,
      m,
      n,
      k,
      1,
      arena.pointer(a),
      k,
      Deno.UnsafePointer.of(b),
      transB ? k : n,
      0,
      arena.pointer(c),
      n,
    );
  }

  /**
   * The model on `time` new tokens of the rows `chosen` (of `ids`, [B, time]): writes their
   * keys and values into the cache and returns [B, vocab] logits of their last token (other rows 0).
   * Its work arrays follow the decoder's own in the arena; only the logits are a fresh array.
   */
  run(ids: Int32Array, time: number, chosen: readonly number[]): Float32Array {
    const { arena, config, weights, padding, capacity, past, cosines, sines } = this;
    if (laps) lapStart = performance.now();
    this.reread?.(weights);
    const { dModel: d, heads, kvHeads, headDim: hd, ffnDim: ff, vocab, normEps: eps } = config;
    const kernels = arena.kernels;
    const half = hd / 2;
    const count = chosen.length;
    const n = count * time; // rows of the residual stream: i·time + t for the i-th chosen row
    arena.top = this.fixed;
    const x = arena.alloc(n * d);
    const h = arena.alloc(n * d);
    const q = arena.alloc(n * heads * hd);
    const k = arena.alloc(n * kvHeads * hd);
    const v = arena.alloc(n * kvHeads * hd);
    const attended = arena.alloc(n * heads * hd);
    const projected = arena.alloc(n * d);
    const gate = arena.alloc(n * ff);
    const up = arena.alloc(n * ff);
    const out = arena.alloc(count * vocab);
    const heap = arena.heap; // after the last allocation: growing the memory replaces it
    const embedding = weights.embedding;
    for (let i = 0; i < count; i++) {
      const b = chosen[i]!;
      for (let t = 0; t < time; t++) {
        const id = ids[b * time + t]!;
        heap.set(embedding.subarray(id * d, (id + 1) * d), x + (i * time + t) * d);
      }
    }
    lap("embedding");
    // Queries run for positions [from, time): all of them, but in the last layer only the last
    // one, whose logits are asked for (the others' keys and values are all later positions need).
    let from = 0;
    let m = n; // rows of x: count·(time − from)
    const layers = weights.layers;
    for (let l = 0; l < layers.length; l++) {
      const layer = layers[l]!;
      // 1) attention
      kernels.rmsNorm(4 * x, 4 * layer.inputNorm, 4 * h, m, d, eps);
      lap("RMSNorm");
      this.matmul(h, layer.k, k, m, kvHeads * hd, d);
      lap("k product");
      this.finishProjection(k, layer.kBias, layer.kNorm, m, kvHeads);
      this.matmul(h, layer.v, v, m, kvHeads * hd, d);
      lap("v product");
      this.finishProjection(v, layer.vBias, null, m, kvHeads);
      for (let i = 0; i < count; i++) {
        const b = chosen[i]!;
        for (let t = 0; t < time; t++) {
          const r = i * time + t;
          const table = Math.max(0, past + t - padding[b]!) * half;
          for (let j = 0; j < kvHeads; j++) {
            const at = ((b * kvHeads + j) * capacity + past + t) * hd; // in the cache
            const head = (r * kvHeads + j) * hd; // in k and v
            kernels.rope(
              4 * (k + head),
              4 * (layer.keys + at),
              4 * (cosines + table),
              4 * (sines + table),
              half,
            );
            heap.copyWithin(layer.values + at, v + head, v + head + hd);
          }
        }
      }
      if (l === layers.length - 1 && time > 1) {
        // in place: row i moves to i·time + time − 1 ≥ i, in ascending order
        for (let i = 0; i < count; i++) {
          const last = i * time + time - 1;
          heap.copyWithin(x + i * d, x + last * d, x + (last + 1) * d);
          heap.copyWithin(h + i * d, h + last * d, h + (last + 1) * d);
        }
        from = time - 1;
        m = count;
      }
      const span = time - from;
      lap("RoPE, biases, cache");
      this.matmul(h, layer.q, q, m, heads * hd, d);
      lap("q product");
      this.finishProjection(q, layer.qBias, layer.qNorm, m, heads);
      for (let i = 0; i < count; i++) {
        const b = chosen[i]!;
        for (let t = 0; t < span; t++) {
          const table = Math.max(0, past + from + t - padding[b]!) * half;
          for (let j = 0; j < heads; j++) {
            const at = 4 * (q + ((i * span + t) * heads + j) * hd);
            kernels.rope(at, at, 4 * (cosines + table), 4 * (sines + table), half);
          }
        }
      }
      lap("RoPE, biases, cache");
      this.attend(layer, q, attended, chosen, from, time);
      lap("attention");
      this.matmul(attended, layer.o, projected, m, d, heads * hd);
      lap("o product");
      kernels.addInto(4 * x, 4 * projected, m * d);
      // 2) SwiGLU feed-forward
      kernels.rmsNorm(4 * x, 4 * layer.postNorm, 4 * h, m, d, eps);
      lap("RMSNorm");
      this.matmul(h, layer.gate, gate, m, ff, d);
      lap("gate product");
      this.matmul(h, layer.up, up, m, ff, d);
      lap("up product");
      kernels.siluTimes(4 * gate, 4 * up, m * ff);
      lap("SiLU·up, residuals");
      this.matmul(gate, layer.down, projected, m, d, ff);
      lap("down product");
      kernels.addInto(4 * x, 4 * projected, m * d);
      lap("SiLU·up, residuals");
    }
    // 3) output: x now holds each chosen row's last position only
    kernels.rmsNorm(4 * x, 4 * weights.finalNorm, 4 * h, count, d, eps);
    lap("RMSNorm");
    if (weights.head) this.matmul(h, weights.head, out, count, vocab, d);
    else this.matmul(h, embedding, out, count, vocab, d, true);
    lap("output head product");
    const logits = new Float32Array(this.rows * vocab);
    for (let i = 0; i < count; i++) {
      logits.set(heap.subarray(out + i * vocab, out + (i + 1) * vocab), chosen[i]! * vocab);
    }
    lap("logits out");
    return logits;
  }

  /**
   * What follows a projection's product y [rows, heads·hd] (in the arena), in place, as
   * `project()` in `forward()`: the bias added to each row, then RMSNorm over each head.
   */
  finishProjection(
    y: number,
    bias: number | null,
    norm: number | null,
    rows: number,
    heads: number,
  ): void {
    const { headDim: hd, normEps: eps } = this.config;
    const kernels = this.arena.kernels;
    const width = heads * hd;
    if (bias !== null) {
      for (let r = 0; r < rows; r++) kernels.addInto(4 * (y + r * width), 4 * bias, width);
    }
    if (norm !== null) kernels.rmsNorm(4 * y, 4 * norm, 4 * y, rows * heads, hd, eps);
  }

  /**
   * Causal attention of the queries of new positions [from, time) of the rows `chosen` (`q`:
   * [count·(time − from), heads·hd]) over their cached positions, skipping each row's padding
   * (`forward()`'s additive −1e9 mask gives those keys weight exactly 0). A padding position's
   * query sees no key; its output (never read by a real token) is 0.
   */
  attend(
    layer: Layer,
    q: number,
    out: number,
    chosen: readonly number[],
    from: number,
    time: number,
  ): void {
    const { arena, padding, capacity, past, scores } = this;
    const { heads, kvHeads, headDim: hd } = this.config;
    const attend = arena.kernels.attend;
    const scale = 1 / Math.sqrt(hd);
    const repeats = heads / kvHeads;
    const span = time - from;
    for (let c = 0; c < chosen.length; c++) {
      const b = chosen[c]!;
      for (let t = from; t < time; t++) {
        for (let j = 0; j < heads; j++) {
          const at = ((c * span + t - from) * heads + j) * hd;
          const base = (b * kvHeads + Math.floor(j / repeats)) * capacity * hd;
          attend(
            4 * (q + at),
            4 * (layer.keys + base),
            4 * (layer.values + base),
            padding[b]!,
            past + t + 1, // causal: up to and including this position
            hd,
            scale,
            4 * scores,
            4 * (out + at),
          );
        }
      }
    }
  }
}
