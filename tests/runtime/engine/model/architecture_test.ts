// Every supported architecture (architecture.ts: Llama with Llama 3.1's RoPE scaling, Mistral,
// Qwen2's q/k/v biases, Qwen3's per-head q/k norms with a head width other than dModel / heads;
// grouped-query attention; tied and untied heads), as a small random model: forward() on every
// kernel set, the sampler's decoder step by step, and a PyTorch implementation written after
// transformers' modeling code (torch_architectures.py) give the same logits within 1e-4; the new
// parameters get gradients. The PyTorch test is skipped, saying why, where Debian's python3 cannot
// import torch, unless GIFTWRAP_REQUIRE_TORCH=1.

import assert from "node:assert/strict";
import { type KernelSet, tf, useBackend } from "../../../../runtime/engine/backend.ts";
import { tfjsKernels } from "../../../../runtime/engine/kernels/tfjs.ts";
import {
  attentionProjections,
  checkArchitecture,
  ropeInverseFrequencies,
} from "../../../../runtime/engine/model/architecture.ts";
import { toTensorData } from "../../../../runtime/engine/model/checkpoint.ts";
import { encodeSafetensors } from "../../../../runtime/engine/model/safetensors.ts";
import {
  forward,
  initParams,
  type ModelConfig,
  paramShapes,
  ropeTables,
  tokenLogProbs,
} from "../../../../runtime/engine/model/transformer.ts";
import { normalArray, Rng } from "../../../../runtime/engine/random.ts";
import { needsTorch, pythonJson, TORCH } from "../../../_requires.ts";
import { relativeError } from "../../_numeric.ts";
import { GQA_CONFIG } from "../../_tiny.ts";

const SCRIPT = new URL("./torch_architectures.py", import.meta.url).pathname;

/** A small model of each architecture, and its Hugging Face `config.json`. */
interface Variant {
  config: ModelConfig;
  modelType: "llama" | "mistral" | "qwen2" | "qwen3";
}

const BASE = { vocab: 50, layers: 2, contextLength: 16, ropeTheta: 10_000, normEps: 1e-5 };

const VARIANTS: Record<string, Variant> = {
  // head width 8: inverse frequencies 1, 0.1, 0.01, 0.001, wavelengths 6.3, 63, 628, 6283 against
  // 64 / 4 and 64 / 1: one kept, one interpolated, two slowed down
  "llama, llama3 RoPE scaling, GQA, untied head": {
    modelType: "llama",
    config: {
      ...BASE,
      dModel: 32,
      heads: 4,
      kvHeads: 2,
      headDim: 8,
      ffnDim: 48,
      tiedEmbeddings: false,
      ropeScaling: {
        type: "llama3",
        factor: 8,
        lowFreqFactor: 1,
        highFreqFactor: 4,
        originalMaxPositions: 64,
      },
    },
  },
  "mistral, one key/value head, tied head": {
    modelType: "mistral",
    config: {
      ...BASE,
      dModel: 48,
      heads: 4,
      kvHeads: 1,
      headDim: 12,
      ffnDim: 64,
      tiedEmbeddings: true,
      ropeTheta: 1_000_000,
    },
  },
  "qwen2, q/k/v biases, GQA, tied head": {
    modelType: "qwen2",
    config: {
      ...BASE,
      dModel: 32,
      heads: 4,
      kvHeads: 2,
      headDim: 8,
      ffnDim: 48,
      tiedEmbeddings: true,
      attentionBias: true,
      normEps: 1e-6,
    },
  },
  "qwen3, q/k norms, head width 12 ≠ 32 / 4, GQA, untied head": {
    modelType: "qwen3",
    config: {
      ...BASE,
      dModel: 32,
      heads: 4,
      kvHeads: 2,
      headDim: 12,
      ffnDim: 40,
      tiedEmbeddings: false,
      qkNorm: true,
      normEps: 1e-6,
    },
  },
  "qwen3, q/k norms, GQA, tied head, odd widths": {
    modelType: "qwen3",
    config: {
      ...BASE,
      dModel: 30,
      heads: 3,
      kvHeads: 1,
      headDim: 10,
      ffnDim: 42,
      tiedEmbeddings: true,
      qkNorm: true,
    },
  },
};

/** `config.json` of a variant, as Hugging Face writes it for its model type. */
function hfConfig({ config, modelType }: Variant): Record<string, unknown> {
  const scaling = config.ropeScaling;
  return {
    model_type: modelType,
    vocab_size: config.vocab,
    hidden_size: config.dModel,
    intermediate_size: config.ffnDim,
    num_hidden_layers: config.layers,
    num_attention_heads: config.heads,
    num_key_value_heads: config.kvHeads,
    head_dim: config.headDim,
    max_position_embeddings: config.contextLength,
    rope_theta: config.ropeTheta,
    rms_norm_eps: config.normEps,
    tie_word_embeddings: config.tiedEmbeddings,
    ...(modelType === "qwen3" ? { attention_bias: false } : {}),
    ...(scaling
      ? {
        rope_scaling: {
          rope_type: "llama3",
          factor: scaling.factor,
          low_freq_factor: scaling.lowFreqFactor,
          high_freq_factor: scaling.highFreqFactor,
          original_max_position_embeddings: scaling.originalMaxPositions,
        },
      }
      : {}),
  };
}

/**
 * Random parameters of every kind (initParams' zero biases and unit norm gains would hide a bias
 * or a gain that is never read): weights of std 0.3, the embedding of std 1, biases of std 0.5,
 * gains 1 ± 0.3.
 */
function randomParams(config: ModelConfig, seed: number): Record<string, tf.Variable> {
  const params = initParams(config, new Rng(seed));
  const rng = new Rng(seed + 1);
  for (const [name, p] of Object.entries(params)) {
    const values = normalArray(rng, p.size, 1);
    const gain = name.endsWith("norm.weight");
    const std = gain ? 0.3 : name.endsWith(".bias") ? 0.5 : name.includes("embed") ? 1 : 0.3;
    for (let i = 0; i < values.length; i++) values[i] = (gain ? 1 : 0) + std * values[i]!;
    p.assign(tf.tensor(values, p.shape));
  }
  return params;
}

/** Token ids [B, T], from 1 on. */
function randomIds(rng: Rng, rows: number, time: number, vocab: number): Int32Array {
  return Int32Array.from({ length: rows * time }, () => 1 + rng.int(vocab - 1));
}

/** The largest absolute difference of two arrays of one length. */
function maxDifference(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
  return worst;
}

/** The kernel sets present here: cpu's and wasm's as `useBackend()` chooses them, and tfjs's. */
const KERNEL_SETS: [string, () => Promise<KernelSet>][] = [
  ["cpu", async () => (await useBackend("cpu")).kernels],
  ["wasm", async () => (await useBackend("wasm")).kernels],
  ["tfjs", async () => {
    await useBackend("cpu");
    return tfjsKernels();
  }],
];

/** forward()'s logits [B·T·V] of `ids` ([rows, time]). */
async function forwardLogits(
  kernels: KernelSet,
  params: Record<string, tf.Tensor>,
  config: ModelConfig,
  ids: Int32Array,
  rows: number,
  padding?: readonly number[],
): Promise<Float32Array> {
  const logits = tf.tidy(() =>
    forward(kernels, params, config, tf.tensor2d(ids, [rows, ids.length / rows], "int32"), {
      ...(padding ? { padding } : {}),
    }).logits
  );
  try {
    return Float32Array.from(await logits.data());
  } finally {
    logits.dispose();
  }
}

/**
 * The decoder's logits [B, T − prefill + 1, V] of `ids` ([rows, time]): a prefill of `prefill`
 * tokens, then one token at a time.
 */
async function decoderLogits(
  kernels: KernelSet,
  params: Record<string, tf.Tensor>,
  config: ModelConfig,
  ids: Int32Array,
  rows: number,
  prefill: number,
  padding: readonly number[],
): Promise<Float32Array[]> {
  const time = ids.length / rows;
  const columns = (from: number, to: number) =>
    Int32Array.from(
      { length: rows * (to - from) },
      (_, i) => ids[Math.floor(i / (to - from)) * time + from + (i % (to - from))]!,
    );
  const decoder = await kernels.decoder(params, config, rows, padding, time);
  try {
    const steps = [Float32Array.from(await decoder.next(columns(0, prefill), prefill))];
    for (let t = prefill; t < time; t++) {
      steps.push(Float32Array.from(await decoder.next(columns(t, t + 1), 1)));
    }
    return steps;
  } finally {
    decoder.dispose();
  }
}

/** Rows [B, V] of position `t` of logits [B, T, V]. */
function at(logits: Float32Array, rows: number, time: number, vocab: number, t: number) {
  return Float32Array.from(
    { length: rows * vocab },
    (_, i) => logits[(Math.floor(i / vocab) * time + t) * vocab + (i % vocab)]!,
  );
}

Deno.test("ropeInverseFrequencies() without scaling gives ropeTables' angles as they always were, bit for bit", () => {
  for (const config of Object.values(VARIANTS).map((v) => v.config)) {
    const { ropeScaling: _, ...plain } = config;
    const { headDim, ropeTheta } = plain;
    const rotary = ropeTables(plain, 3, 5, null);
    const cos = rotary.cos.dataSync();
    const sin = rotary.sin.dataSync();
    tf.dispose([rotary.cos, rotary.sin]);
    for (let t = 0; t < 5; t++) {
      for (let i = 0; i < headDim / 2; i++) {
        const angle = (3 + t) * ropeTheta ** (-(2 * i) / headDim); // the former formula
        for (const j of [i, i + headDim / 2]) {
          assert.equal(cos[t * headDim + j], Math.fround(Math.cos(angle)));
          assert.equal(sin[t * headDim + j], Math.fround(Math.sin(angle)));
        }
      }
    }
  }
});

Deno.test("ropeInverseFrequencies() with llama3 scaling keeps, interpolates and slows down as transformers does", () => {
  const config = VARIANTS["llama, llama3 RoPE scaling, GQA, untied head"]!.config;
  const got = ropeInverseFrequencies(config);
  // By hand: θ = 1, 0.1, 0.01, 0.001; wavelengths 2π/θ against 16 (= 64 / 4) and 64 (= 64 / 1).
  // 2π < 16: kept. 20π is between: s = (64 / 20π − 1) / 3, θ' = (1 − s)·0.1 / 8 + s·0.1.
  // 200π and 2000π > 64: θ / 8.
  const s = (64 / (20 * Math.PI) - 1) / 3;
  const expected = [1, ((1 - s) * 0.1) / 8 + s * 0.1, 0.01 / 8, 0.001 / 8];
  got.forEach((value, i) => {
    assert.ok(
      Math.abs(value - expected[i]!) < 1e-15 * Math.max(1, expected[i]!),
      `θ${i}: ${value}`,
    );
  });
  // Llama 3.1's own settings on a 128-wide head: the short wavelengths are untouched, the long
  // ones divided by 8 (transformers' values, float32, for rope_theta 500000).
  const llama31 = ropeInverseFrequencies({
    ...config,
    headDim: 128,
    ropeTheta: 500_000,
    ropeScaling: {
      type: "llama3",
      factor: 8,
      lowFreqFactor: 1,
      highFreqFactor: 4,
      originalMaxPositions: 8192,
    },
  });
  assert.equal(llama31[0], 1);
  assert.ok(Math.abs(llama31[63]! - 500_000 ** (-126 / 128) / 8) < 1e-20);
});

Deno.test("checkArchitecture() refuses a bad field in one line naming it", () => {
  const config = GQA_CONFIG;
  const scaling = {
    type: "llama3" as const,
    factor: 8,
    lowFreqFactor: 1,
    highFreqFactor: 4,
    originalMaxPositions: 8192,
  };
  const cases: [ModelConfig, RegExp][] = [
    [
      { ...config, headDim: 7 },
      /Cannot run the model as 'headDim' must be a positive even integer .*: current value is 7$/,
    ],
    [
      { ...config, ropeTheta: 0 },
      /Cannot run the model as 'ropeTheta' must be a positive number: current value is 0$/,
    ],
    [
      { ...config, ropeScaling: { ...scaling, type: "yarn" as "llama3" } },
      /Cannot run the model as 'ropeScaling.type' must be "llama3": current value is "yarn"$/,
    ],
    [
      { ...config, ropeScaling: { ...scaling, factor: -1 } },
      /Cannot run the model as 'ropeScaling.factor' must be a positive number: current value is -1$/,
    ],
    [
      { ...config, ropeScaling: { ...scaling, highFreqFactor: 1 } },
      /Cannot run the model as 'ropeScaling.highFreqFactor' must be greater than lowFreqFactor \(1\): current value is 1$/,
    ],
  ];
  for (const [bad, message] of cases) assert.throws(() => checkArchitecture(bad), message);
});

Deno.test("paramShapes() adds Hugging Face's q/k/v biases and q/k norms after a Llama's, and initParams() zeros and ones", () => {
  const qwen2 = VARIANTS["qwen2, q/k/v biases, GQA, tied head"]!.config;
  const qwen3 = VARIANTS["qwen3, q/k norms, head width 12 ≠ 32 / 4, GQA, untied head"]!.config;
  const llama = { ...qwen2, attentionBias: false };
  const names = (config: ModelConfig) => Object.keys(paramShapes(config));
  // The same parameters as a Llama's, in the same order, plus the biases (whose zeros draw nothing
  // from the generator: the weights are a Llama's, below).
  const layer0 = names(llama).filter((n) => n.startsWith("model.layers.0."));
  const extra = names(qwen2).filter((n) => !names(llama).includes(n));
  assert.deepEqual(extra, [
    "model.layers.0.self_attn.q_proj.bias",
    "model.layers.0.self_attn.k_proj.bias",
    "model.layers.0.self_attn.v_proj.bias",
    "model.layers.1.self_attn.q_proj.bias",
    "model.layers.1.self_attn.k_proj.bias",
    "model.layers.1.self_attn.v_proj.bias",
  ]);
  assert.deepEqual(
    names(qwen2).filter((n) => n.startsWith("model.layers.0.") && !n.endsWith(".bias")),
    layer0,
  );
  const shapes2 = paramShapes(qwen2);
  assert.deepEqual(shapes2["model.layers.1.self_attn.q_proj.bias"]!.shape, [4 * 8]);
  assert.deepEqual(shapes2["model.layers.1.self_attn.k_proj.bias"]!.shape, [2 * 8]);
  const shapes3 = paramShapes(qwen3);
  assert.deepEqual(shapes3["model.layers.0.self_attn.q_norm.weight"]!.shape, [12]);
  assert.deepEqual(shapes3["model.layers.0.self_attn.k_norm.weight"]!.shape, [12]);
  assert.deepEqual(shapes3["model.layers.0.self_attn.q_proj.weight"]!.shape, [32, 48]);
  assert.equal(names(qwen3).filter((n) => n.includes("_norm.weight")).length, 4);
  assert.deepEqual(attentionProjections(qwen3, 1).v, {
    weight: "model.layers.1.self_attn.v_proj.weight",
    bias: null,
    norm: null,
    heads: 2,
  });

  const rng = () => new Rng(3);
  const plain = initParams(llama, rng());
  const biased = initParams(qwen2, rng());
  for (const [name, p] of Object.entries(plain)) {
    assert.deepEqual(biased[name]!.dataSync(), p.dataSync(), `${name} drawn as for a Llama`);
  }
  assert.deepEqual(
    [...biased["model.layers.0.self_attn.k_proj.bias"]!.dataSync()],
    new Array(16).fill(0),
  );
  const normed = initParams(qwen3, rng());
  assert.deepEqual(
    [...normed["model.layers.1.self_attn.q_norm.weight"]!.dataSync()],
    new Array(12).fill(1),
  );
  tf.dispose([...Object.values(plain), ...Object.values(biased), ...Object.values(normed)]);
});

for (const [what, variant] of Object.entries(VARIANTS)) {
  const { config } = variant;
  Deno.test({
    ...needsTorch(
      `${what}: PyTorch, forward() on every kernel set and the sampler's decoder give the same logits`,
    ),
    async fn() {
      assert.ok(TORCH.ok, `PyTorch is required here: ${!TORCH.ok && TORCH.reason}`);
      const [rows, time, prefill] = [2, 12, 5];
      const ids = randomIds(new Rng(11), rows, time, config.vocab);
      // The checkpoint PyTorch reads: HF names and [out, in] layout.
      await useBackend("cpu");
      const params = randomParams(config, 21);
      const dir = await Deno.makeTempDir({ prefix: "giftwrap-arch-" });
      try {
        await Deno.writeFile(
          `${dir}/model.safetensors`,
          encodeSafetensors(await toTensorData(params)),
        );
        await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify(hfConfig(variant)));
        const rowsOfIds = Array.from(
          { length: rows },
          (_, b) => [...ids.subarray(b * time, (b + 1) * time)],
        );
        const answer = await pythonJson(SCRIPT, [dir], rowsOfIds) as { logits: number[][][] };
        const torchLogits = Float32Array.from(answer.logits.flat(2));
        assert.equal(torchLogits.length, rows * time * config.vocab);
        const scale = maxDifference(torchLogits, new Float32Array(torchLogits.length));
        assert.ok(scale > 1, `logits far from 0 (largest ${scale}), so that a wrong step shows`);

        for (const [name, setUp] of KERNEL_SETS) {
          const kernels = await setUp();
          // Parameters live on the backend: made afresh there, with the same values.
          const local = randomParams(config, 21);
          try {
            const logits = await forwardLogits(kernels, local, config, ids, rows);
            const error = maxDifference(logits, torchLogits);
            assert.ok(error < 1e-4, `${name} forward(): |Δ| ${error} from PyTorch`);
            const steps = await decoderLogits(kernels, local, config, ids, rows, prefill, [0, 0]);
            steps.forEach((step, i) => {
              const t = prefill - 1 + i;
              const error = maxDifference(step, at(torchLogits, rows, time, config.vocab, t));
              assert.ok(error < 1e-4, `${name} decoder, position ${t}: |Δ| ${error} from PyTorch`);
            });
          } finally {
            tf.dispose(Object.values(local));
          }
        }
      } finally {
        tf.dispose(Object.values(params));
        await Deno.remove(dir, { recursive: true });
      }
    },
  });

  Deno.test(`${what}: the decoder gives forward()'s logits with left padding, on every kernel set`, async () => {
    const [rows, time, prefill] = [3, 11, 6];
    const padding = [0, 3, 1];
    const ids = randomIds(new Rng(12), rows, time, config.vocab);
    padding.forEach((pad, b) => ids.fill(0, b * time, b * time + pad));
    for (const [name, setUp] of KERNEL_SETS) {
      const kernels = await setUp();
      const params = randomParams(config, 22);
      try {
        const full = await forwardLogits(kernels, params, config, ids, rows, padding);
        const steps = await decoderLogits(kernels, params, config, ids, rows, prefill, padding);
        steps.forEach((step, i) => {
          const t = prefill - 1 + i;
          const error = relativeError(step, at(full, rows, time, config.vocab, t));
          assert.ok(error < 1e-5, `${name}, position ${t}: relative error ${error}`);
        });
      } finally {
        tf.dispose(Object.values(params));
      }
    }
  });
}

/** The parameters only some architectures have. */
function architectureParams(config: ModelConfig): string[] {
  return Object.keys(paramShapes(config)).filter((n) =>
    n.endsWith(".bias") || n.includes("_norm.weight")
  );
}

for (
  const what of [
    "qwen2, q/k/v biases, GQA, tied head",
    "qwen3, q/k norms, head width 12 ≠ 32 / 4, GQA, untied head",
  ]
) {
  Deno.test(`${what}: gradients of the log-probs reach the new parameters, as finite differences say, on every kernel set`, async () => {
    const { config } = VARIANTS[what]!;
    const [rows, time, promptLength] = [2, 9, 4];
    const ids = randomIds(new Rng(13), rows, time, config.vocab);
    const names = architectureParams(config);
    assert.ok(names.length > 0);
    const gradients: Record<string, Float32Array>[] = [];
    for (const [, setUp] of KERNEL_SETS) {
      const kernels = await setUp();
      const params = randomParams(config, 23);
      const input = tf.tensor2d(ids, [rows, time], "int32");
      const loss = () =>
        tf.sum(tokenLogProbs(kernels, params, config, input, promptLength)) as tf.Scalar;
      const { value, grads } = tf.variableGrads(loss, names.map((n) => params[n]!));
      const read: Record<string, Float32Array> = {};
      for (const name of names) {
        read[name] = Float32Array.from(await grads[params[name]!.name]!.data());
      }
      gradients.push(read);
      if (kernels.name === "cpu") {
        // Central differences of float32 sums: a step of 1e-2 on the first entries of each.
        for (const name of names) {
          const p = params[name]!;
          const original = p.dataSync().slice();
          for (const i of [0, 1, p.size - 1]) {
            const shifted = (delta: number) => {
              const values = original.slice();
              values[i] = values[i]! + delta;
              p.assign(tf.tensor(values, p.shape));
              return tf.tidy(() => loss().dataSync()[0]!);
            };
            const h = 1e-2;
            const numeric = (shifted(h) - shifted(-h)) / (2 * h);
            p.assign(tf.tensor(original, p.shape));
            const analytic = read[name]![i]!;
            assert.ok(
              Math.abs(numeric - analytic) < 2e-2 * Math.max(1, Math.abs(analytic)),
              `${name}[${i}]: gradient ${analytic}, finite difference ${numeric}`,
            );
          }
          assert.ok(read[name]!.some((g) => Math.abs(g) > 1e-3), `${name}: gradient all but 0`);
        }
      }
      tf.dispose([value, input, ...Object.values(grads), ...Object.values(params)]);
    }
    for (const [i, [name]] of KERNEL_SETS.entries()) {
      for (const param of names) {
        const error = relativeError(gradients[i]![param]!, gradients[0]![param]!);
        assert.ok(error < 1e-4, `${name} set, ${param}: relative error ${error} from cpu's`);
      }
    }
  });
}

Deno.test("llama3 RoPE scaling changes the logits (the scaled frequencies are read)", async () => {
  const { config } = VARIANTS["llama, llama3 RoPE scaling, GQA, untied head"]!;
  const { ropeScaling: _, ...plain } = config;
  const kernels = (await useBackend("cpu")).kernels;
  const ids = randomIds(new Rng(14), 1, 12, config.vocab);
  const params = randomParams(config, 24);
  const scaled = await forwardLogits(kernels, params, config, ids, 1);
  const unscaled = await forwardLogits(kernels, params, plain, ids, 1);
  tf.dispose(Object.values(params));
  assert.ok(maxDifference(scaled, unscaled) > 1e-2, "llama3 scaling made no difference");
});
