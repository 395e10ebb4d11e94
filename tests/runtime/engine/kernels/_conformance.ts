/**
 * The kernel sets' conformance suite: every fused operation of the kernel set `useBackend()`
 * chooses for a backend, forward and gradient, against the plain tfjs set (`tfjsKernels()`) on the
 * same backend, or on `cpu` for a backend whose set is the plain one. Results agree to 1e-5
 * relative (norm-wise, `relativeError`); the operations a set lists as `exact` give the plain
 * ops' bits. Every operation leaves no tensor behind, and a forward pass saves nothing.
 *
 * One call per backend and OpenBLAS setting registers its tests (cpu_test.ts, wasm_test.ts,
 * webgpu_test.ts, tfjs_test.ts).
 *
 * @module
 */

import { deviceConstantCount } from "../../../../runtime/engine/kernels/constants.ts";
import assert from "node:assert/strict";
import { relativeError } from "../../_numeric.ts";
import { GQA_CONFIG } from "../../_tiny.ts";
import { type Requirement, requires } from "../../../_requires.ts";
import { type BackendName, tf, useBackend } from "../../../../runtime/engine/backend.ts";
import { tfjsKernels } from "../../../../runtime/engine/kernels/tfjs.ts";
import type { KernelSet } from "../../../../runtime/engine/kernels/types.ts";
import {
  forward,
  initParams,
  type ModelConfig,
  paramShapes,
  ropeTables,
  tokenLogProbs,
} from "../../../../runtime/engine/model/transformer.ts";
import { adamW, adamWStep, disposeAdamW } from "../../../../runtime/engine/optim.ts";
import { normalArray, Rng } from "../../../../runtime/engine/random.ts";
import { oneHotFloat } from "../../../../runtime/engine/tf.ts";

/** Live tensors other than the device caches' (kernels/constants.ts: made once, then kept). */
function liveTensors(): number {
  return tf.memory().numTensors - deviceConstantCount();
}

/** The operations of a kernel set this suite checks. */
export type Operation =
  | "product"
  | "linear"
  | "unembed"
  | "embed"
  | "rmsNorm"
  | "ropeHeads"
  | "attention"
  | "swiGlu"
  | "logSoftmaxAt"
  | "adamW"
  | "decoder"
  | "model";

/** Options of `runKernelConformance()`. */
export interface ConformanceOptions {
  /** Set the backend up with OpenBLAS running its products (when it loads). @default true */
  blas?: boolean;
  /** The backend the plain tfjs set runs on as the reference. @default the backend itself */
  against?: BackendName;
  /** Operations that must give the plain set's bits. @default [] */
  exact?: readonly Operation[];
  /**
   * Operations a set computes its own way, compared within 1e-5 even against the plain set on the
   * same backend (`logSoftmaxAt` otherwise gives the one-hot formula's bits there). @default []
   */
  approximate?: readonly Operation[];
  /** The set under test, once the backend is set up. @default the set `useBackend()` chooses */
  kernels?: (chosen: KernelSet) => KernelSet;
  /** Runs the tests only where this holds, saying why not in their names. @default always */
  requirement?: Requirement;
  /** The kernel set `useBackend()` must choose (checked first). */
  expect: { name: KernelSet["name"]; blas: boolean };
}

/** A tensor's values and shape, made afresh on whichever backend runs. */
interface Input {
  values: Float32Array | Int32Array;
  shape: number[];
  dtype?: "int32";
}

function normal(rng: Rng, shape: number[], std = 1): Input {
  return { values: normalArray(rng, shape.reduce((a, b) => a * b, 1), std), shape };
}

function ints(rng: Rng, shape: number[], below: number): Input {
  const size = shape.reduce((a, b) => a * b, 1);
  return { values: Int32Array.from({ length: size }, () => rng.int(below)), shape, dtype: "int32" };
}

function make(input: Input): tf.Tensor {
  return tf.tensor(input.values, input.shape, input.dtype ?? "float32");
}

/** Reads tensors out (asynchronously: webgpu cannot read synchronously) and disposes them. */
async function readAll(tensors: tf.Tensor[]): Promise<Float32Array[]> {
  const values = await Promise.all(tensors.map((t) => t.data()));
  tf.dispose(tensors);
  return values.map((v) => Float32Array.from(v));
}

/**
 * f's value at `inputs` and the gradients of Σ f·weights with respect to the float inputs (int32
 * inputs are passed along, not differentiated), read out. Checks that nothing is left behind and
 * that a forward pass alone saves nothing.
 */
async function valueAndGrads(
  f: (...xs: tf.Tensor[]) => tf.Tensor,
  inputs: Input[],
  weights: Input,
): Promise<Float32Array[]> {
  const before = liveTensors();
  const xs = inputs.map(make);
  const w = make(weights);
  const floats = xs.filter((x) => x.dtype === "float32");
  const with_ = (ts: tf.Tensor[]) => {
    let i = 0;
    return xs.map((x) => x.dtype === "float32" ? ts[i++]! : x);
  };
  const outs = tf.tidy(() => {
    const value = f(...xs);
    const grads = tf.grads((...ts: tf.Tensor[]) => tf.sum(tf.mul(f(...with_(ts)), w)))(floats);
    return [value, ...grads];
  });
  const read = await readAll(outs);
  const forwardOnly = tf.tidy(() => f(...xs));
  await forwardOnly.data();
  forwardOnly.dispose();
  tf.dispose([...xs, w]);
  assert.equal(liveTensors(), before, "a tensor left behind");
  return read;
}

/** `got` equals `expected`: bit for bit, or within 1e-5 relative (norm-wise). */
function assertAgree(
  got: readonly Float32Array[],
  expected: readonly Float32Array[],
  names: readonly string[],
  exact: boolean,
): void {
  assert.equal(got.length, expected.length);
  got.forEach((g, i) => {
    if (exact) {
      assert.deepEqual(g, expected[i], `${names[i]}: not the plain ops' bits`);
    } else {
      const error = relativeError(g, expected[i]!);
      assert.ok(error < 1e-5, `${names[i]}: relative error ${error}`);
    }
  });
}

/** A config with the head width and RoPE base `ropeTables` reads. */
function ropeConfig(hd: number): ModelConfig {
  return { ...GQA_CONFIG, headDim: hd, ropeTheta: 10_000 };
}

/** The decoder suite's models (grouped-query attention, tied and untied heads, odd widths). */
export const DECODER_CONFIGS: Record<string, ModelConfig> = {
  "grouped-query attention, untied head": GQA_CONFIG,
  "one layer, tied head": {
    vocab: 15,
    dModel: 64,
    layers: 1,
    heads: 2,
    kvHeads: 2,
    headDim: 32,
    ffnDim: 96,
    contextLength: 12,
    tiedEmbeddings: true,
    ropeTheta: 10_000,
    normEps: 1e-5,
  },
  // widths that are not multiples of 4: simd.wat's loops end one value at a time
  "odd widths": {
    vocab: 13,
    dModel: 30,
    layers: 2,
    heads: 3,
    kvHeads: 3,
    headDim: 10,
    ffnDim: 42,
    contextLength: 12,
    tiedEmbeddings: false,
    ropeTheta: 10_000,
    normEps: 1e-5,
  },
};

/**
 * Registers the conformance tests of `backend`'s kernel set.
 *
 * @example
 * ```ts
 * runKernelConformance("wasm", { expect: { name: "wasm", blas: false }, blas: false });
 * ```
 */
export function runKernelConformance(backend: BackendName, options: ConformanceOptions): void {
  const blas = options.blas ?? true;
  const against = options.against ?? backend;
  const exact = new Set(options.exact ?? []);
  const requirement = options.requirement ?? requires(true, "");
  const label = `${backend}${blas ? "" : " without OpenBLAS"}`;
  const approximate = new Set(options.approximate ?? []);
  const choose = options.kernels ?? ((chosen: KernelSet) => chosen);
  const setUp = async () => choose((await useBackend(backend, { blas })).kernels);
  const plain = async () => {
    await useBackend(against, { blas });
    return tfjsKernels();
  };
  const test = (name: string, fn: () => Promise<void>) =>
    Deno.test({ ...requirement(`kernel set of ${label}: ${name}`), fn });

  /** Runs `run` with the backend's set, then with the plain set, and compares. */
  const compare = async (
    operation: Operation,
    names: readonly string[],
    run: (kernels: KernelSet) => Promise<Float32Array[]>,
    reference: (kernels: KernelSet) => KernelSet = (plainSet) => plainSet,
  ) => {
    const kernels = await setUp();
    const got = await run(kernels);
    const expected = await run(reference(await plain()));
    assertAgree(got, expected, names, exact.has(operation));
  };

  const chooser = options.kernels ? "the set under test is" : "useBackend() chooses";
  test(`${chooser} the '${options.expect.name}' set`, async () => {
    const kernels = await setUp();
    assert.deepEqual(
      { name: kernels.name, blas: kernels.blas, layout: kernels.layout },
      { ...options.expect, layout: "[in, out]" },
    );
  });

  test("product() equals the plain product for every transpose, batched and broadcast", async () => {
    const cases: [number[], number[], boolean, boolean][] = [
      [[64, 128], [128, 352], false, false], // big enough for OpenBLAS where it runs them
      [[64, 128], [352, 128], false, true],
      [[128, 64], [128, 352], true, false],
      [[128, 64], [352, 128], true, true],
      [[8, 4, 11, 32], [8, 4, 11, 32], false, true], // attention's, batched
      [[3, 64, 128], [96, 128], false, true], // broadcast b
      [[4, 8], [4, 8], true, false], // small: the backend's own kernel
    ];
    const rng = new Rng(1);
    const inputs = cases.map(([a, b]) => [normal(rng, a), normal(rng, b)]);
    await compare("product", cases.map((c) => JSON.stringify(c)), async (k) => {
      const outs = cases.map(([, , ta, tb], i) =>
        tf.tidy(() => k.product(make(inputs[i]![0]!), make(inputs[i]![1]!), ta, tb))
      );
      return await readAll(outs);
    });
  });

  test("linear() equals x·W, forward and both gradients", async () => {
    const rng = new Rng(2);
    for (const [n, i, o] of [[37, 24, 40], [256, 128, 352]]) {
      const inputs = [normal(rng, [n!, i!]), normal(rng, [i!, o!])];
      const weights = normal(rng, [n!, o!]);
      await compare(
        "linear",
        ["value", "dx", "dW"],
        (k) => valueAndGrads((x, w) => k.linear(x as tf.Tensor2D, w!), inputs, weights),
      );
    }
  });

  test("unembed() equals x·Eᵀ for an embedding table E, forward and both gradients", async () => {
    const rng = new Rng(12);
    for (const [n, d, vocab] of [[37, 24, 15], [128, 64, 300]]) {
      const inputs = [normal(rng, [n!, d!]), normal(rng, [vocab!, d!])];
      const weights = normal(rng, [n!, vocab!]);
      await compare(
        "unembed",
        ["value", "dx", "dE"],
        (k) => valueAndGrads((x, e) => k.unembed(x as tf.Tensor2D, e!), inputs, weights),
      );
    }
  });

  for (const [vocab, n] of [[15, 1100], [1100, 64]]) {
    test(`embed() equals gather, and its gradient oneHotᵀ · dy (vocabulary ${vocab})`, async () => {
      const d = 16;
      const rng = new Rng(3);
      const table = normal(rng, [vocab!, d]);
      const ids = ints(rng, [n!], vocab!);
      const weights = normal(rng, [n!, d]);
      // gather has no gradient on wasm: the expected gradient is written out
      const kernels = await setUp();
      const got = await valueAndGrads(
        (t, i) => kernels.embed(t, i as tf.Tensor1D, vocab!),
        [table, ids],
        weights,
      );
      await plain();
      const expected = await readAll(tf.tidy(() => {
        const [t, i, w] = [make(table), make(ids), make(weights)];
        return [
          tfjsKernels().embed(t, i as tf.Tensor1D, vocab!),
          tf.matMul(oneHotFloat(i, vocab!) as tf.Tensor2D, w as tf.Tensor2D, true),
        ];
      }));
      assertAgree(got, expected, ["value", "dtable"], exact.has("embed"));
    });
  }

  // 26 columns: on wasm the SIMD loops' one-by-one ends run too
  for (const d of [24, 26]) {
    test(`rmsNorm() equals the tfjs ops, forward and both gradients (d ${d})`, async () => {
      const rng = new Rng(7);
      const inputs = [normal(rng, [37, d], 3), normal(rng, [d])];
      const weights = normal(rng, [37, d]);
      await compare(
        "rmsNorm",
        ["value", "dx", "dw"],
        (k) => valueAndGrads((x, w) => k.rmsNorm(x as tf.Tensor2D, w!, 1e-5), inputs, weights),
      );
    });
  }

  const ropeCases: [number, number, number, number, number[] | null][] = [
    [3, 5, 2, 32, null],
    [3, 5, 2, 32, [0, 3, 1]],
    [3, 5, 2, 10, null],
    [3, 5, 2, 10, [0, 3, 1]],
    [4, 16, 4, 32, null], // the rotation's product big enough for OpenBLAS where it runs them
  ];
  for (const [batch, time, heads, hd, padding] of ropeCases) {
    test(
      `ropeHeads() equals the split into heads and RoPE as tfjs ops, forward and gradient ` +
        `([${batch}, ${heads}, ${time}, ${hd}], ${padding ? "left padding" : "no padding"})`,
      async () => {
        const rng = new Rng(9);
        const inputs = [normal(rng, [batch * time, heads * hd])];
        const weights = normal(rng, [batch, heads, time, hd]);
        await compare("ropeHeads", ["value", "dx"], async (k) => {
          const rotary = ropeTables(ropeConfig(hd), 2, time, padding); // 2 positions cached
          try {
            return await valueAndGrads(
              (x) => k.ropeHeads(x as tf.Tensor2D, heads, rotary),
              inputs,
              weights,
            );
          } finally {
            tf.dispose([rotary.cos, rotary.sin]);
          }
        });
      },
    );
  }

  const attentionCases: [number[], number[] | null][] = [
    [[3, 2, 4, 6, 8], null], // 4 new queries after 2 cached: through OpenBLAS where it runs
    [[3, 2, 4, 6, 8], [0, 3, 1]],
    [[1, 2, 64, 64, 64], [5]], // products big enough for BatchMatMul: the tfjs ops everywhere
  ];
  for (const [[batch, heads, time, keys, hd], padding] of attentionCases) {
    test(
      `attention() equals tfjs's masked softmax attention, forward and gradient ` +
        `([${batch}, ${heads}, ${time}, ${hd}] over ${keys} keys, ` +
        `${padding ? "left padding" : "no padding"})`,
      async () => {
        const rng = new Rng(6);
        const inputs = [
          normal(rng, [batch!, heads!, time!, hd!], 2),
          normal(rng, [batch!, heads!, keys!, hd!], 2),
          normal(rng, [batch!, heads!, keys!, hd!], 2),
        ];
        const weights = normal(rng, [batch!, heads!, time!, hd!]);
        await compare("attention", ["value", "dq", "dk", "dv"], (k) =>
          valueAndGrads(
            (q, kk, v) =>
              k.attention(q as tf.Tensor4D, kk as tf.Tensor4D, v as tf.Tensor4D, padding),
            inputs,
            weights,
          ));
      },
    );
  }

  test("swiGlu() equals the tfjs ops, forward and every gradient", async () => {
    const rng = new Rng(10);
    const inputs = [
      normal(rng, [37, 24]),
      normal(rng, [24, 40], 0.2),
      normal(rng, [24, 40], 0.2),
      normal(rng, [40, 24], 0.2),
    ];
    const weights = normal(rng, [37, 24]);
    await compare("swiGlu", ["value", "dx", "dgate", "dup", "ddown"], (k) =>
      valueAndGrads(
        (x, gate, up, down) => k.swiGlu(x as tf.Tensor2D, gate!, up!, down!),
        inputs,
        weights,
      ));
  });

  test("logSoftmaxAt() equals log-softmax times a one-hot summed over the vocabulary (its bits on the same backend), forward and gradient", async () => {
    // The reference is the one-hot formula under tfjs's division by the temperature, as
    // tokenLogProbs() computed it, written here: every set shares the plain set's
    // gather-and-scatter logSoftmaxAt, which does the same float32 operations without the one-hot
    // (the same bits on the same backend; within 1e-5 of cpu's on webgpu).
    const oneHotFormula = (plainSet: KernelSet): KernelSet => ({
      ...plainSet,
      logSoftmaxAt: (logits, targets, { temperature = 1 } = {}) => {
        const scaled = temperature === 1 ? logits : tf.div(logits, temperature); // [B, C, V]
        const oneHot = oneHotFloat(targets, logits.shape[2]); // [B, C, V]
        return tf.sum(tf.mul(tf.logSoftmax(scaled), oneHot), -1);
      },
    });
    const rng = new Rng(11);
    const cases: [number, number, number, number][] = [
      [3, 4, 15, 1],
      [3, 4, 15, 0.7],
      [2, 3, 50_000, 1],
    ];
    for (const [b, c, vocab, temperature] of cases) {
      const inputs = [normal(rng, [b, c, vocab], 3), ints(rng, [b, c], vocab)];
      const weights = normal(rng, [b, c]);
      const kernels = await setUp();
      const run = (k: KernelSet) =>
        valueAndGrads(
          (logits, targets) =>
            k.logSoftmaxAt(logits as tf.Tensor3D, targets as tf.Tensor2D, { temperature }),
          inputs,
          weights,
        );
      const got = await run(kernels);
      const expected = await run(oneHotFormula(await plain()));
      const same = against === backend && !approximate.has("logSoftmaxAt");
      assertAgree(got, expected, ["value", "dlogits"], same);
    }
  });

  test("adamW() through adamWStep() equals the tfjs ops (clipping, decay, warm-up, cosine)", async () => {
    // decay on matrices only, clipping on the second step, warm-up then cosine decay; sizes that
    // leave 1–3 values after simd.wat's 4-lane loop
    const adamOptions = {
      lr: 0.01,
      betas: [0.9, 0.999] as [number, number],
      eps: 1e-8,
      weightDecay: 0.1,
      clipGradNorm: 1,
      warmupSteps: 2,
      schedule: "cosine" as const,
    };
    const shapes: Record<string, number[]> = { w: [6, 5], gain: [7], e: [4, 3] };
    const values = (seed: number, size: number, scale: number) =>
      Array.from({ length: size }, (_, i) => scale * Math.sin(seed * 7.3 + i * 1.7));
    const size = (shape: number[]) => shape.reduce((a, b) => a * b, 1);
    const norms: number[][] = [];
    await compare("adamW", ["params, moments and gradient norms"], async (k) => {
      const params = Object.fromEntries(
        Object.entries(shapes).map(([name, shape], j) => [
          name,
          tf.variable(tf.tensor(values(j, size(shape), 1), shape)),
        ]),
      );
      const state = adamW(params, adamOptions, 6);
      const stepNorms: number[] = [];
      const before = liveTensors();
      for (let t = 0; t < 4; t++) {
        const grads = Object.fromEntries(
          Object.entries(shapes).map(([name, shape], j) => [
            name,
            tf.tensor(values(10 * t + j, size(shape), t % 2 ? 2 : 0.05), shape),
          ]),
        );
        stepNorms.push((await adamWStep(k, state, params, grads)).gradNorm);
        tf.dispose(Object.values(grads));
      }
      assert.equal(liveTensors(), before, "no tensor left behind");
      norms.push(stepNorms);
      const all = [...Object.values(params), ...Object.values(state.m), ...Object.values(state.v)];
      const flat = (await Promise.all(all.map((x) => x.data()))).flatMap((a) => Array.from(a));
      tf.dispose(Object.values(params));
      disposeAdamW(state);
      return [Float32Array.from([...flat, ...stepNorms])];
    });
    assert.ok(norms[0]![0]! < 1 && norms[0]![1]! > 1, `clipping on step 2 only: ${norms[0]}`);
  });

  for (const [what, config] of Object.entries(DECODER_CONFIGS)) {
    test(`decoder() gives forward()'s logits at every step, rows shared or ended (${what})`, async () => {
      const rng = new Rng(5);
      const [rows, width, prefill] = [5, 10, 6];
      const padding = [0, 2, 0, 5, 1];
      const ids = Int32Array.from(
        { length: rows * width },
        (_, i) => i % width < padding[Math.floor(i / width)]! ? 0 : 3 + rng.int(config.vocab - 3),
      );
      // Rows 0 and 2 share their prompt (the OpenBLAS decoder runs one prefill for both).
      ids.copyWithin(2 * width, 0, prefill);
      const model = async (run: (params: Record<string, tf.Variable>) => Promise<number[][][]>) => {
        const params = initParams(config, new Rng(4));
        // Large weights, so that the logits are far from 0 and a wrong step shows.
        for (const p of Object.values(params)) p.assign(tf.tidy(() => tf.mul(p, 20)));
        try {
          return await run(params);
        } finally {
          tf.dispose(Object.values(params));
        }
      };
      const kernels = await setUp();
      const columns = (from: number, to: number) =>
        Int32Array.from(
          { length: rows * (to - from) },
          (_, i) => ids[Math.floor(i / (to - from)) * width + from + (i % (to - from))]!,
        );
      // Row 3 ends after the first sampled token: it runs no more (its logits are not compared).
      const active = (t: number) => t > prefill ? [0, 1, 2, 4] : undefined;
      const decoded = await model(async (params) => {
        const decoder = await kernels.decoder(params, config, rows, padding, width);
        const steps: number[][][] = [];
        try {
          for (let t = prefill - 1; t < width; t++) {
            const logits = t < prefill
              ? await decoder.next(columns(0, prefill), prefill)
              : await decoder.next(columns(t, t + 1), 1, active(t));
            steps.push(
              Array.from(
                { length: rows },
                (_, b) => Array.from(logits.subarray(b * config.vocab, (b + 1) * config.vocab)),
              ),
            );
          }
        } finally {
          decoder.dispose();
        }
        return steps;
      });
      const reference = tfjsKernels();
      await plain();
      const full = await model(async (params) => {
        const logits = tf.tidy(() =>
          forward(reference, params, config, tf.tensor2d(ids, [rows, width], "int32"), { padding })
            .logits
        );
        const values = (await logits.array()) as number[][][]; // [B, T, V]
        logits.dispose();
        return values;
      });
      decoded.forEach((step, i) => {
        const t = prefill - 1 + i;
        const live = active(t) ?? [0, 1, 2, 3, 4];
        const got = live.flatMap((b) => step[b]!);
        const expected = live.flatMap((b) => full[b]![t]!);
        const error = relativeError(got, expected);
        assert.ok(error < 1e-5, `position ${t}: relative error ${error}`);
      });
    });
  }

  // The embedding is the set's own in both: tfjs's gather has no gradient on wasm (embed() is
  // compared with its gradient written out above).
  test("a model's log-probs and their gradients equal the plain set's", async () => {
    const config = GQA_CONFIG;
    const rng = new Rng(12);
    const ids = Int32Array.from({ length: 3 * 9 }, () => 3 + rng.int(config.vocab - 3));
    const padding = [0, 2, 1];
    const names = ["log-probs", ...Object.keys(paramShapes(config))];
    let setEmbed: KernelSet["embed"] | null = null;
    await compare("model", names, async (k) => {
      setEmbed ??= k.embed;
      const params = initParams(config, new Rng(13));
      const vars = Object.values(params);
      const t = tf.tensor2d(ids, [3, 9], "int32");
      const logp = tf.tidy(() => tokenLogProbs(k, params, config, t, 6, 0.7, padding));
      const { value, grads } = tf.variableGrads(
        () => tf.sum(tokenLogProbs(k, params, config, t, 6, 0.7, padding)) as tf.Scalar,
        vars,
      );
      value.dispose();
      const out = await readAll([logp, ...vars.map((v) => grads[v.name]!)]);
      tf.dispose([t, ...vars]);
      return out;
    }, (plainSet) => ({ ...plainSet, embed: setEmbed! }));
  });
}
