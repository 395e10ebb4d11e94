// Hugging Face model directories in (runtime/engine/model/hf.ts): config.json of each supported
// architecture and each refusal, and small random checkpoints written here in Hugging Face's
// layout (F32, F16, BF16, sharded) read back to the values written, or refused in one line.

import assert from "node:assert/strict";
import { tf, useBackend } from "../../../../runtime/engine/backend.ts";
import { loadCheckpoint, saveCheckpoint } from "../../../../runtime/engine/model/checkpoint.ts";
import { initParams } from "../../../../runtime/engine/model/transformer.ts";
import { GQA_CONFIG } from "../../_tiny.ts";
import {
  hfParamShapes,
  type LoadedHfModel,
  loadHfModel,
  parseHfConfig,
  readHfConfig,
} from "../../../../runtime/engine/model/hf.ts";
import {
  encodeSafetensors,
  type TensorData,
} from "../../../../runtime/engine/model/safetensors.ts";
import { Rng } from "../../../../runtime/engine/random.ts";
import { withTempDir } from "../../../_helpers.ts";
import { randomHfWeights } from "../../_hf.ts";

// ---------------------------------------------------------------------------------------------
// config.json

/** The dimensions every test config shares: 2 layers, 4 heads on 2 key/value heads. */
const DIMS = {
  vocab_size: 16,
  hidden_size: 16,
  intermediate_size: 24,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  max_position_embeddings: 64,
};

/** Trimmed from SmolLM2-135M's config.json (a `llama`), with the dimensions shrunk. */
const LLAMA = {
  architectures: ["LlamaForCausalLM"],
  model_type: "llama",
  ...DIMS,
  hidden_act: "silu",
  attention_bias: false,
  mlp_bias: false,
  rms_norm_eps: 1e-5,
  rope_theta: 100_000,
  rope_scaling: null,
  tie_word_embeddings: true,
  torch_dtype: "bfloat16",
};

/** Trimmed from Mistral-7B-v0.3's config.json, with the dimensions shrunk. */
const MISTRAL = {
  architectures: ["MistralForCausalLM"],
  model_type: "mistral",
  ...DIMS,
  hidden_act: "silu",
  rms_norm_eps: 1e-5,
  rope_theta: 1_000_000,
  sliding_window: null,
  tie_word_embeddings: false,
};

/** Trimmed from Qwen2.5-0.5B-Instruct's config.json, with the dimensions shrunk. */
const QWEN2 = {
  architectures: ["Qwen2ForCausalLM"],
  model_type: "qwen2",
  ...DIMS,
  hidden_act: "silu",
  max_window_layers: 21,
  rms_norm_eps: 1e-6,
  rope_theta: 1_000_000,
  sliding_window: 32_768,
  use_sliding_window: false,
  tie_word_embeddings: true,
};

/** Trimmed from Qwen3-0.6B's config.json (head_dim 8, not hidden / heads = 4), shrunk. */
const QWEN3 = {
  architectures: ["Qwen3ForCausalLM"],
  model_type: "qwen3",
  ...DIMS,
  head_dim: 8,
  attention_bias: false,
  hidden_act: "silu",
  rms_norm_eps: 1e-6,
  rope_scaling: null,
  rope_theta: 1_000_000,
  sliding_window: null,
  use_sliding_window: false,
  tie_word_embeddings: true,
};

/** Llama-3.2-1B's rope scaling on the llama dimensions, untied. */
const LLAMA3 = {
  ...LLAMA,
  rope_theta: 500_000,
  rope_scaling: {
    factor: 32,
    high_freq_factor: 4,
    low_freq_factor: 1,
    original_max_position_embeddings: 8192,
    rope_type: "llama3",
  },
  tie_word_embeddings: false,
};

/** The ModelConfig fields of DIMS. */
const BASE = {
  vocab: 16,
  dModel: 16,
  layers: 2,
  heads: 4,
  kvHeads: 2,
  ffnDim: 24,
  contextLength: 64,
};

Deno.test("readHfConfig() reads llama, mistral, qwen2 and qwen3 config.json files", async () => {
  await withTempDir(async (dir) => {
    const read = async (config: unknown) => {
      await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify(config));
      return await readHfConfig(dir);
    };
    assert.deepEqual(await read(LLAMA), {
      modelType: "llama",
      architectures: ["LlamaForCausalLM"],
      config: {
        ...BASE,
        headDim: 4,
        tiedEmbeddings: true,
        ropeTheta: 100_000,
        normEps: 1e-5,
      },
      torchDtype: "bfloat16",
    });
    assert.deepEqual(await read(MISTRAL), {
      modelType: "mistral",
      architectures: ["MistralForCausalLM"],
      config: { ...BASE, headDim: 4, tiedEmbeddings: false, ropeTheta: 1e6, normEps: 1e-5 },
    });
    assert.deepEqual((await read(QWEN2)).config, {
      ...BASE,
      headDim: 4,
      tiedEmbeddings: true,
      ropeTheta: 1e6,
      normEps: 1e-6,
      attentionBias: true,
    });
    assert.deepEqual((await read(QWEN3)).config, {
      ...BASE,
      headDim: 8,
      tiedEmbeddings: true,
      ropeTheta: 1e6,
      normEps: 1e-6,
      qkNorm: true,
    });
    assert.deepEqual((await read(LLAMA3)).config, {
      ...BASE,
      headDim: 4,
      tiedEmbeddings: false,
      ropeTheta: 500_000,
      normEps: 1e-5,
      ropeScaling: {
        type: "llama3",
        factor: 32,
        lowFreqFactor: 1,
        highFreqFactor: 4,
        originalMaxPositions: 8192,
      },
    });
  });
});

Deno.test("parseHfConfig() fills in what transformers defaults, and reads rope_parameters", () => {
  const minimal = {
    model_type: "llama",
    vocab_size: 16,
    hidden_size: 16,
    intermediate_size: 24,
    num_hidden_layers: 2,
    num_attention_heads: 4,
  };
  assert.deepEqual(parseHfConfig(minimal, "x/config.json"), {
    modelType: "llama",
    architectures: [],
    config: {
      ...BASE,
      kvHeads: 4, // num_key_value_heads defaults to num_attention_heads
      headDim: 4, // hidden / heads
      contextLength: 2048, // LlamaConfig's max_position_embeddings
      tiedEmbeddings: false,
      ropeTheta: 10_000,
      normEps: 1e-6,
    },
  });
  // Newer files hold θ and the scaling in rope_parameters; "default" is no scaling.
  const newer = { ...minimal, rope_parameters: { rope_type: "default", rope_theta: 50_000 } };
  assert.equal(parseHfConfig(newer, "x/config.json").config.ropeTheta, 50_000);
  assert.equal(parseHfConfig(newer, "x/config.json").config.ropeScaling, undefined);
  // Older files may name the default rope scaling.
  const named = { ...minimal, rope_scaling: { rope_type: "default" } };
  assert.equal(parseHfConfig(named, "x/config.json").config.ropeScaling, undefined);
  // A sliding window wider than the context never slides (Mistral's default 4096 too).
  assert.equal(
    parseHfConfig({ ...MISTRAL, sliding_window: undefined }, "x/config.json").config.contextLength,
    64,
  );
  const wide = { ...MISTRAL, sliding_window: 64 };
  assert.equal(parseHfConfig(wide, "x/config.json").config.contextLength, 64);
  // Qwen2's sliding_window is unused while use_sliding_window is false (QWEN2 has both).
  assert.equal(parseHfConfig(QWEN2, "x/config.json").config.attentionBias, true);
});

Deno.test("parseHfConfig() refuses what the transformer does not compute, naming the field", () => {
  const where = "models/x/config.json";
  const cases: [string, unknown, string][] = [
    [
      "another model_type",
      { ...LLAMA, model_type: "gpt2" },
      "model_type: expected one of llama, mistral, qwen2, qwen3, got 'gpt2'",
    ],
    [
      "no model_type",
      { ...DIMS },
      "model_type: expected one of llama, mistral, qwen2, qwen3, got nothing",
    ],
    [
      "experts",
      { ...QWEN2, num_experts: 60 },
      "num_experts: expected no experts (a dense model), got 60",
    ],
    [
      "Mixtral's experts",
      { ...MISTRAL, num_local_experts: 8 },
      "num_local_experts: expected no experts (a dense model), got 8",
    ],
    [
      "a sliding window in use (Mistral)",
      { ...MISTRAL, sliding_window: 32 },
      "sliding_window: expected null or at least max_position_embeddings (64), got 32",
    ],
    [
      "Mistral's default sliding window (4096) in use",
      { ...MISTRAL, sliding_window: undefined, max_position_embeddings: 32_768 },
      "sliding_window: expected null or at least max_position_embeddings (32768), got nothing, " +
      "which transformers takes as 4096",
    ],
    [
      "a sliding window in use (Qwen2)",
      { ...QWEN2, use_sliding_window: true },
      "use_sliding_window: expected false, got true",
    ],
    [
      "sliding layers",
      { ...QWEN3, layer_types: ["full_attention", "sliding_attention"] },
      "layer_types[1]: expected 'full_attention', got 'sliding_attention'",
    ],
    [
      "another rope scaling (rope_type)",
      { ...LLAMA, rope_scaling: { rope_type: "yarn", factor: 4 } },
      "rope_scaling.rope_type: expected 'llama3' (or no rope scaling), got 'yarn'",
    ],
    [
      "another rope scaling (type)",
      { ...LLAMA, rope_scaling: { type: "linear", factor: 2 } },
      "rope_scaling.type: expected 'llama3' (or no rope scaling), got 'linear'",
    ],
    [
      "another rope scaling (rope_parameters)",
      { ...LLAMA, rope_parameters: { rope_type: "dynamic", rope_theta: 1e4, factor: 2 } },
      "rope_parameters.rope_type: expected 'llama3' (or no rope scaling), got 'dynamic'",
    ],
    [
      "llama3 scaling without its factors",
      { ...LLAMA3, rope_scaling: { rope_type: "llama3", factor: 8 } },
      "rope_scaling.low_freq_factor: expected a number > 0, got nothing",
    ],
    [
      "another activation",
      { ...LLAMA, hidden_act: "gelu" },
      "hidden_act: expected 'silu', got 'gelu'",
    ],
    [
      "biases on all attention projections",
      { ...LLAMA, attention_bias: true },
      "attention_bias: expected false, got true",
    ],
    ["MLP biases", { ...QWEN2, mlp_bias: true }, "mlp_bias: expected false, got true"],
    [
      "Qwen3 without head_dim",
      { ...QWEN3, head_dim: undefined },
      "head_dim: expected an integer >= 1 (Qwen3 states it), got nothing",
    ],
    [
      "an odd head_dim",
      { ...LLAMA, head_dim: 5 },
      "head_dim: expected an even number (RoPE rotates pairs), got 5",
    ],
    [
      "key/value heads that do not divide the heads",
      { ...LLAMA, num_key_value_heads: 3 },
      "num_key_value_heads: expected a divisor of num_attention_heads (4), got 3",
    ],
    [
      "a hidden size the heads do not divide",
      { ...LLAMA, hidden_size: 18 },
      "hidden_size: expected a multiple of num_attention_heads (4) when head_dim is not given, got 18",
    ],
    [
      "no vocab_size",
      { ...LLAMA, vocab_size: undefined },
      "vocab_size: expected an integer >= 1, got nothing",
    ],
    [
      "a fractional size",
      { ...LLAMA, intermediate_size: 2.5 },
      "intermediate_size: expected an integer >= 1, got 2.5",
    ],
    ["a zero rope_theta", { ...LLAMA, rope_theta: 0 }, "rope_theta: expected a number > 0, got 0"],
    [
      "tie_word_embeddings as text",
      { ...LLAMA, tie_word_embeddings: "yes" },
      "tie_word_embeddings: expected true or false, got 'yes'",
    ],
  ];
  for (const [what, config, message] of cases) {
    // JSON drops the undefined fields, as a config.json without them would.
    const raw = JSON.parse(JSON.stringify(config));
    assert.throws(() => parseHfConfig(raw, where), { message: `${where}: ${message}` }, what);
  }
  assert.throws(() => parseHfConfig([1], where), {
    message: `${where}: expected a JSON object, got [1]`,
  });
});

// ---------------------------------------------------------------------------------------------
// Weights

/** The HF config of a small random model of each architecture. */
const ARCHITECTURES: Record<string, Record<string, unknown>> = {
  "llama (tied)": LLAMA,
  "llama with llama3 rope scaling (untied)": LLAMA3,
  "mistral (untied)": MISTRAL,
  "qwen2 (q/k/v biases)": QWEN2,
  "qwen3 (q/k norms, head_dim 8)": QWEN3,
};

/** Round-to-nearest-even of `y` to an integer (the IEEE rounding the dtypes use). */
function roundHalfEven(y: number): number {
  const floor = Math.floor(y);
  const rest = y - floor;
  return rest > 0.5 ? floor + 1 : rest < 0.5 ? floor : floor % 2 === 0 ? floor : floor + 1;
}

/** A finite float32 rounded to half precision: its 16 bits and the value they hold. */
function toF16(x: number): { bits: number; value: number } {
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(x);
  if (a === 0) return { bits: sign, value: x };
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e--;
  if (2 ** (e + 1) <= a) e++;
  const s = sign ? -1 : 1;
  if (e < -14) {
    const m = roundHalfEven(a / 2 ** -24); // subnormal: a multiple of 2^-24 (m = 1024 is normal)
    return { bits: sign | m, value: s * m * 2 ** -24 };
  }
  let m = roundHalfEven(a / 2 ** (e - 10)); // 1024 ≤ m ≤ 2048
  if (m === 2048) {
    m = 1024;
    e++;
  }
  assert.ok(e <= 15, `${x} is beyond half precision`);
  return { bits: sign | ((e + 15) << 10) | (m - 1024), value: s * m * 2 ** (e - 10) };
}

/** A finite float32 rounded to bfloat16: its 16 bits and the value they hold. */
function toBf16(x: number): { bits: number; value: number } {
  const u = new Uint32Array(Float32Array.of(x).buffer)[0]!;
  const bits = ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
  return { bits, value: new Float32Array(Uint32Array.of(bits << 16).buffer)[0]! };
}

Deno.test("the tests' rounding to F16 and BF16 gives hand-computed bits", () => {
  const f16 = (x: number) => toF16(x).bits;
  assert.equal(f16(1), 0x3c00);
  assert.equal(f16(-2.5), 0xc100);
  assert.equal(f16(65504), 0x7bff);
  assert.equal(f16(1 / 3), 0x3555); // 0.333251953125
  assert.equal(f16(2 ** -24), 0x0001); // the smallest subnormal
  assert.equal(f16(3 * 2 ** -26), 0x0001); // 0.75 of it rounds up
  assert.equal(f16(1 + 2 ** -11), 0x3c00); // a tie goes to the even mantissa
  assert.equal(f16(1 + 3 * 2 ** -11), 0x3c02);
  assert.equal(f16(2047.5), 0x6800); // 2048: the mantissa carries into the exponent
  assert.deepEqual(toF16(-(2 ** -20)), { bits: 0x8010, value: -(2 ** -20) });
  assert.equal(toBf16(1).bits, 0x3f80);
  assert.equal(toBf16(-2.5).bits, 0xc020);
  assert.deepEqual(toBf16(1 + 2 ** -8), { bits: 0x3f80, value: 1 }); // a tie, to even
  assert.deepEqual(toBf16(1 + 3 * 2 ** -8), { bits: 0x3f82, value: 1 + 2 ** -6 });
});

/**
 * A safetensors file of `tensors` with every tensor stored as `dtype` (rounded here), and the
 * float32 values the rounded ones are.
 */
function encodeAs(
  tensors: Record<string, TensorData>,
  dtype: "F16" | "BF16",
): { bytes: Uint8Array; values: Record<string, Float32Array> } {
  const round = dtype === "F16" ? toF16 : toBf16;
  const header: Record<string, unknown> = { __metadata__: { format: "pt" } };
  const parts: Uint8Array[] = [];
  const values: Record<string, Float32Array> = {};
  let offset = 0;
  for (const [name, { shape, data }] of Object.entries(tensors)) {
    const part = new Uint8Array(2 * data.length);
    values[name] = new Float32Array(data.length);
    data.forEach((x, i) => {
      const { bits, value } = round(x);
      part[2 * i] = bits & 0xff;
      part[2 * i + 1] = bits >> 8;
      values[name]![i] = value;
    });
    header[name] = { dtype, shape, data_offsets: [offset, offset + part.length] };
    parts.push(part);
    offset += part.length;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.length / 8) * 8;
  const bytes = new Uint8Array(8 + padded + offset).fill(0x20, 8 + json.length, 8 + padded);
  new DataView(bytes.buffer).setBigUint64(0, BigInt(padded), true);
  bytes.set(json, 8);
  let at = 8 + padded;
  for (const part of parts) {
    bytes.set(part, at);
    at += part.length;
  }
  return { bytes, values };
}

/** Writes a model directory: `config.json` and `files` (name → bytes, or JSON for `.json`). */
async function writeModel(
  dir: string,
  config: unknown,
  files: Record<string, Uint8Array | unknown>,
): Promise<string> {
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify(config));
  for (const [name, content] of Object.entries(files)) {
    if (content instanceof Uint8Array) await Deno.writeFile(`${dir}/${name}`, content);
    else await Deno.writeTextFile(`${dir}/${name}`, JSON.stringify(content));
  }
  return dir;
}

/** `weights` as `loaded` holds them ([out, in]), value for value, and nothing else. */
function assertWeights(loaded: LoadedHfModel, weights: Record<string, Float32Array>) {
  assert.deepEqual(Object.keys(loaded.weights).sort(), Object.keys(weights).sort());
  for (const [name, data] of Object.entries(weights)) {
    assert.deepEqual(loaded.weights[name]!.data, data, name);
  }
}

Deno.test("hfParamShapes() adds Qwen2's q/k/v biases and Qwen3's q/k norms to Llama's parameters", () => {
  const qwen2 = hfParamShapes(parseHfConfig(QWEN2, "config.json").config);
  const qwen3 = hfParamShapes(parseHfConfig(QWEN3, "config.json").config);
  const llama = hfParamShapes(parseHfConfig(LLAMA, "config.json").config);
  const at = "model.layers.1.self_attn.";
  assert.deepEqual(qwen2[`${at}q_proj.bias`], [16]); // 4 heads · 4
  assert.deepEqual(qwen2[`${at}k_proj.bias`], [8]); // 2 kv heads · 4
  assert.deepEqual(qwen2[`${at}v_proj.bias`], [8]);
  assert.deepEqual(qwen3[`${at}q_norm.weight`], [8]); // head_dim
  assert.deepEqual(qwen3[`${at}k_norm.weight`], [8]);
  assert.deepEqual(qwen3[`${at}q_proj.weight`], [32, 16]); // [4 heads · 8, hidden]
  assert.deepEqual(qwen3[`${at}o_proj.weight`], [16, 32]);
  // 2 layers × (2 norms + 7 projections) + embedding + final norm; tied: no lm_head
  assert.equal(Object.keys(llama).length, 2 * 9 + 2);
  assert.equal(Object.keys(qwen2).length, 2 * 12 + 2);
  assert.equal(Object.keys(qwen3).length, 2 * 11 + 2);
  assert.equal(llama["lm_head.weight"], undefined);
  assert.deepEqual(hfParamShapes(parseHfConfig(MISTRAL, "config.json").config)["lm_head.weight"], [
    16,
    16,
  ]);
});

Deno.test("loadHfModel() reads F32, F16, BF16 and sharded copies of each architecture to the values written", async () => {
  await withTempDir(async (dir) => {
    for (const [what, config] of Object.entries(ARCHITECTURES)) {
      const weights = randomHfWeights(config, 3);
      const f32 = Object.fromEntries(Object.entries(weights).map(([n, t]) => [n, t.data]));
      const buffer = "model.rotary_emb.inv_freq"; // older transformers saved it; not a parameter
      const withBuffer = {
        ...weights,
        [buffer]: { dtype: "F32" as const, shape: [2], data: Float32Array.of(1, 0.01) },
      };

      const plain = await loadHfModel(
        await writeModel(`${dir}/f32`, config, {
          "model.safetensors": encodeSafetensors(withBuffer, { format: "pt" }),
        }),
        "[out, in]",
      );
      assertWeights(plain, f32);
      assert.equal(plain.dtype, "F32", what);
      assert.deepEqual(plain.config, parseHfConfig(config, "config.json").config);
      for (const [name, shape] of Object.entries(hfParamShapes(plain.config))) {
        assert.deepEqual(plain.weights[name]!.shape, shape, `${what}: ${name}`);
      }

      // The kernel sets' [in, out]: linear weights transposed, the rest as stored.
      const inOut = await loadHfModel(`${dir}/f32`);
      const q = "model.layers.0.self_attn.q_proj.weight";
      const [outputs, inputs] = weights[q]!.shape as [number, number];
      assert.deepEqual(inOut.weights[q]!.shape, [inputs, outputs]);
      assert.equal(inOut.weights[q]!.data[2 * outputs + 1], weights[q]!.data[1 * inputs + 2]);
      assert.deepEqual(inOut.weights["model.norm.weight"], plain.weights["model.norm.weight"]);

      for (const dtype of ["F16", "BF16"] as const) {
        const { bytes, values } = encodeAs(weights, dtype);
        const loaded = await loadHfModel(
          await writeModel(`${dir}/${dtype}`, config, { "model.safetensors": bytes }),
          "[out, in]",
        );
        assertWeights(loaded, values);
        assert.equal(loaded.dtype, dtype);
        assert.ok(Object.values(loaded.dtypes).every((d) => d === dtype));
        // The rounding did round: a half keeps 11 significant bits, bfloat16 8.
        assert.notDeepEqual(values[q], f32[q]);
      }

      // Two shards and their index, the embedding alone in the second.
      const embed = "model.embed_tokens.weight";
      const rest = { ...withBuffer };
      delete (rest as Record<string, TensorData>)[embed];
      const weightMap = Object.fromEntries([
        ...Object.keys(rest).map((n) => [n, "model-00001-of-00002.safetensors"]),
        [embed, "model-00002-of-00002.safetensors"],
      ]);
      const sharded = await loadHfModel(
        await writeModel(`${dir}/sharded`, config, {
          "model-00001-of-00002.safetensors": encodeSafetensors(rest),
          "model-00002-of-00002.safetensors": encodeSafetensors({ [embed]: weights[embed]! }),
          "model.safetensors.index.json": { metadata: { total_size: 0 }, weight_map: weightMap },
        }),
        "[out, in]",
      );
      assertWeights(sharded, f32);
      // As in transformers, one model.safetensors is read before the index.
      await Deno.writeFile(`${dir}/sharded/model.safetensors`, encodeSafetensors(weights));
      await Deno.remove(`${dir}/sharded/model-00002-of-00002.safetensors`);
      assertWeights(await loadHfModel(`${dir}/sharded`, "[out, in]"), f32);
      await Deno.remove(`${dir}/sharded`, { recursive: true });
    }
  });
});

Deno.test("loadHfModel() reports a checkpoint of mixed dtypes, most tensors first", async () => {
  await withTempDir(async (dir) => {
    // Every tensor BF16 but the final norm, F32 in a shard of its own.
    const weights = randomHfWeights(LLAMA, 5);
    const norm = "model.norm.weight";
    const rest = encodeAs(
      Object.fromEntries(Object.entries(weights).filter(([n]) => n !== norm)),
      "BF16",
    );
    const weightMap = Object.fromEntries(
      Object.keys(weights).map((n) => [n, n === norm ? "b.safetensors" : "a.safetensors"]),
    );
    const loaded = await loadHfModel(
      await writeModel(dir, LLAMA, {
        "a.safetensors": rest.bytes,
        "b.safetensors": encodeSafetensors({ [norm]: weights[norm]! }),
        "model.safetensors.index.json": { weight_map: weightMap },
      }),
    );
    assert.equal(loaded.dtype, "BF16+F32");
    assert.equal(loaded.dtypes[norm], "F32");
    assert.equal(loaded.dtypes["model.embed_tokens.weight"], "BF16");
  });
});

/** The error `promise` rejects with, which must be one line. */
async function refusal(promise: Promise<unknown>): Promise<string> {
  const error = await promise.then(() => null, (e: Error) => e);
  assert.ok(error instanceof Error, "it was read");
  assert.ok(!error.message.includes("\n"), error.message);
  return error.message;
}

Deno.test("loadHfModel() refuses each bad input in one line naming the tensor and the file", async () => {
  await withTempDir(async (dir) => {
    const weights = randomHfWeights(LLAMA, 7);
    const file = (tensors: Record<string, TensorData>) => ({
      "model.safetensors": encodeSafetensors(tensors),
    });
    const without = (name: string) => {
      const copy = { ...weights };
      delete copy[name];
      return copy;
    };
    const up = "model.layers.1.mlp.up_proj.weight";

    assert.equal(
      await refusal(loadHfModel(`${dir}/nothing`)),
      `Cannot load the Hugging Face model '${dir}/nothing' as it has no config.json`,
    );
    await writeModel(`${dir}/gpt2`, { ...LLAMA, model_type: "gpt2" }, file(weights));
    assert.equal(
      await refusal(loadHfModel(`${dir}/gpt2`)),
      `${dir}/gpt2/config.json: model_type: expected one of llama, mistral, qwen2, qwen3, got 'gpt2'`,
    );
    await writeModel(`${dir}/no-weights`, LLAMA, {});
    assert.equal(
      await refusal(loadHfModel(`${dir}/no-weights`)),
      `Cannot load the Hugging Face model '${dir}/no-weights' as it has neither ` +
        `model.safetensors nor model.safetensors.index.json`,
    );

    const whole = encodeSafetensors(weights);
    await writeModel(`${dir}/truncated`, LLAMA, {
      "model.safetensors": whole.subarray(0, whole.length - 10),
    });
    assert.match(
      await refusal(loadHfModel(`${dir}/truncated`)),
      new RegExp(
        `^Cannot read safetensors '${dir}/truncated/model.safetensors' as its header declares ` +
          `${whole.length} bytes .*but the file is ${whole.length - 10}$`,
      ),
    );

    await writeModel(`${dir}/missing`, LLAMA, file(without(up)));
    assert.equal(
      await refusal(loadHfModel(`${dir}/missing`)),
      `${dir}/missing/model.safetensors: lacks tensor '${up}'`,
    );

    const transposed = { ...weights[up]!, shape: [...weights[up]!.shape].reverse() };
    await writeModel(`${dir}/shape`, LLAMA, file({ ...weights, [up]: transposed }));
    assert.equal(
      await refusal(loadHfModel(`${dir}/shape`)),
      `${dir}/shape/model.safetensors: tensor '${up}' has shape [16, 24], expected [24, 16]`,
    );

    const extra = "model.layers.0.self_attn.q_proj.bias"; // a Qwen2 parameter, not Llama's
    await writeModel(
      `${dir}/extra`,
      LLAMA,
      file({
        ...weights,
        [extra]: { dtype: "F32", shape: [16], data: new Float32Array(16) },
      }),
    );
    assert.equal(
      await refusal(loadHfModel(`${dir}/extra`)),
      `${dir}/extra/model.safetensors: tensor '${extra}' is extra: a llama model of this ` +
        `config.json has no such parameter`,
    );
    // A tied model's file may store the head anyway (Qwen3-0.6B's does): transformers ties it and
    // never reads it, so it loads as without it; a head of another shape than the embedding's is
    // refused.
    await writeModel(
      `${dir}/head`,
      LLAMA,
      file({
        ...weights,
        "lm_head.weight": {
          dtype: "F32",
          shape: weights["model.embed_tokens.weight"]!.shape,
          data: new Float32Array(weights["model.embed_tokens.weight"]!.data.length).fill(7),
        },
      }),
    );
    const withHead = await loadHfModel(`${dir}/head`, "[out, in]");
    assert.equal(withHead.weights["lm_head.weight"], undefined);
    assert.deepEqual(
      withHead.weights["model.embed_tokens.weight"]!.data,
      weights["model.embed_tokens.weight"]!.data,
    );
    const [rows, cols] = weights["model.embed_tokens.weight"]!.shape as [number, number];
    await writeModel(
      `${dir}/head-shape`,
      LLAMA,
      file({
        ...weights,
        "lm_head.weight": {
          dtype: "F32",
          shape: [rows - 1, cols],
          data: new Float32Array((rows - 1) * cols),
        },
      }),
    );
    assert.equal(
      await refusal(loadHfModel(`${dir}/head-shape`)),
      `${dir}/head-shape/model.safetensors: tensor 'lm_head.weight' has shape [${rows - 1}, ` +
        `${cols}], expected [${rows}, ${cols}] (the embedding it is tied to)`,
    );

    // Shards: the index must list every parameter, in files of the directory, where they are.
    const map = (names: string[], shard = "a.safetensors") =>
      Object.fromEntries(names.map((n) => [n, shard]));
    await writeModel(`${dir}/index-missing`, LLAMA, {
      "a.safetensors": encodeSafetensors(weights),
      "model.safetensors.index.json": { weight_map: map(Object.keys(without(up))) },
    });
    assert.equal(
      await refusal(loadHfModel(`${dir}/index-missing`)),
      `${dir}/index-missing/model.safetensors.index.json: lacks tensor '${up}' in its weight_map`,
    );
    await writeModel(`${dir}/shard-missing`, LLAMA, {
      "a.safetensors": encodeSafetensors(without(up)),
      "model.safetensors.index.json": { weight_map: map(Object.keys(weights)) },
    });
    assert.equal(
      await refusal(loadHfModel(`${dir}/shard-missing`)),
      `${dir}/shard-missing/a.safetensors: lacks tensor '${up}'`,
    );
    await writeModel(`${dir}/outside`, LLAMA, {
      "model.safetensors.index.json": {
        weight_map: { ...map(Object.keys(without(up))), [up]: "../outside.safetensors" },
      },
    });
    assert.equal(
      await refusal(loadHfModel(`${dir}/outside`)),
      `${dir}/outside/model.safetensors.index.json: weight_map['${up}']: expected a ` +
        `.safetensors file of the directory, got '../outside.safetensors'`,
    );
    await writeModel(`${dir}/elsewhere`, LLAMA, {
      "a.safetensors": encodeSafetensors(weights),
      "b.safetensors": encodeSafetensors({ [up]: weights[up]! }),
      "model.safetensors.index.json": {
        weight_map: { ...map(Object.keys(without(up))), [up]: "b.safetensors" },
      },
    });
    assert.equal(
      await refusal(loadHfModel(`${dir}/elsewhere`)),
      `${dir}/elsewhere/a.safetensors: tensor '${up}' is extra: model.safetensors.index.json ` +
        `places it elsewhere`,
    );
  });
});

Deno.test("loadHfModel() reads giftwrap's own checkpoints as loadCheckpoint() does", async () => {
  await useBackend("cpu");
  await withTempDir(async (dir) => {
    const params = initParams(GQA_CONFIG, new Rng(2));
    await saveCheckpoint(dir, params, GQA_CONFIG, "0123456789+=");
    for (const layout of ["[in, out]", "[out, in]"] as const) {
      const ours = await loadCheckpoint(dir, layout);
      const hf = await loadHfModel(dir, layout);
      assert.equal(hf.modelType, "llama");
      assert.deepEqual(hf.config, ours.config);
      assert.deepEqual(hf.weights, ours.weights);
    }
    tf.dispose(Object.values(params));
  });
});
