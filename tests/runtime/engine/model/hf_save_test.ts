// Hugging Face directories out (runtime/engine/model/hf_save.ts): stories260K and a small random
// model of each architecture saved from tfjs parameters and read back by loadHfModel() to the same
// config, the same weights (bit for bit in F32, rounded as hand-computed in F16 and BF16) and the
// same logits; shards with their index; the source's config fields and tokenizer files kept; bad
// parameters refused in one line. An independent reader in PyTorch (torch_safetensors.py) parses
// the saved files by hand and checks the F16/BF16 bits against PyTorch's own rounding; it is
// skipped, saying why, where Debian's python3 cannot import torch, unless GIFTWRAP_REQUIRE_TORCH=1.

import assert from "node:assert/strict";
import { type KernelSet, tf, useBackend } from "../../../../runtime/engine/backend.ts";
import { readJsonFile, weightsToTensors } from "../../../../runtime/engine/model/checkpoint.ts";
import {
  hfParamShapes,
  loadHfModel,
  parseHfConfig,
  readHfConfig,
} from "../../../../runtime/engine/model/hf.ts";
import {
  saveHfModel,
  type SaveHfModelOptions,
  shardTensors,
} from "../../../../runtime/engine/model/hf_save.ts";
import {
  encodeSafetensors,
  readSafetensorsHeader,
  type TensorData,
  toBf16Bits,
  toF16Bits,
} from "../../../../runtime/engine/model/safetensors.ts";
import { forward, type ModelConfig } from "../../../../runtime/engine/model/transformer.ts";
import { withTempDir } from "../../../_helpers.ts";
import { randomTensors } from "../../_hf.ts";
import { needsTorch, PYTHON } from "../../../_requires.ts";

const STORIES = new URL("../../../../models/stories260K", import.meta.url).pathname;

const SCRIPT = new URL("./torch_safetensors.py", import.meta.url).pathname;

/** The float32 values of 16-bit patterns stored as `dtype`, widened as a reader widens them. */
function widen(bits: Uint16Array, dtype: "F16" | "BF16"): Float32Array {
  if (dtype === "BF16") {
    return new Float32Array(Uint32Array.from(bits, (b) => b << 16).buffer);
  }
  return Float32Array.from(bits, (h) => {
    const sign = h & 0x8000 ? -1 : 1;
    const e = (h >> 10) & 0x1f;
    const m = h & 0x3ff;
    if (e === 31) return m === 0 ? sign * Infinity : NaN;
    return e === 0 ? sign * m * 2 ** -24 : sign * (1 + m / 1024) * 2 ** (e - 15);
  });
}

/** forward()'s logits of a few fixed rows of ids. */
async function logitsOf(
  kernels: KernelSet,
  params: Record<string, tf.Tensor>,
  config: ModelConfig,
): Promise<Float32Array> {
  const time = Math.min(6, config.contextLength);
  const ids = Int32Array.from({ length: 2 * time }, (_, i) => (7 * i + 1) % config.vocab);
  const logits = tf.tidy(() =>
    forward(kernels, params, config, tf.tensor2d(ids, [2, time], "int32")).logits
  );
  try {
    return Float32Array.from(await logits.data());
  } finally {
    logits.dispose();
  }
}

/** The bytes of a file. */
const bytesOf = (path: string) => Deno.readFile(path);

Deno.test("toF16Bits() and toBf16Bits() round to the nearest, ties to even, as hand-computed", () => {
  const x = Float32Array.of(
    1 / 3, // f32 0x3eaaaaab
    65504, // the largest half
    65519, // below the tie: 65504
    65520, // halfway to 2^16: the tie goes to the even 2^16, inf
    -1e6, // overflow: -inf
    2 ** -20, // a half subnormal, exact
    3 * 2 ** -26, // 0.75 of the smallest subnormal: rounds up to it
    2 ** -25, // half of it: a tie, to the even 0
    1.5 * 2 ** -24, // a tie between 1 and 2 units: to 2
    1 + 2 ** -11, // a tie at 1: to 1
    2047.5, // the mantissa carries into the exponent: 2048
    NaN,
    -0,
    Infinity,
    1e-40, // a float32 subnormal
  );
  assert.deepEqual(
    Array.from(toF16Bits(x)),
    [
      0x3555,
      0x7bff,
      0x7bff,
      0x7c00,
      0xfc00,
      0x0010,
      0x0001,
      0x0000,
      0x0002,
      0x3c00,
      0x6800,
      0x7e00,
      0x8000,
      0x7c00,
      0x0000,
    ],
  );
  assert.deepEqual(
    Array.from(toBf16Bits(x)),
    [
      0x3eab, // 0.333984375: the 0xaaab below the top half rounds up
      0x4780, // 65536
      0x4780,
      0x4780,
      0xc974, // -1e6 = 0xc9742400: rounds down to -999424
      0x3580,
      0x3340,
      0x3300,
      0x33c0,
      0x3f80,
      0x4500,
      0x7fc0,
      0x8000,
      0x7f80,
      0x0001,
    ],
  );
  // NaN with only low payload bits stays NaN (truncation alone would give inf); the largest
  // float32 rounds past the largest bfloat16 to inf.
  const odd = new Float32Array(Uint32Array.of(0x7f800001, 0xff800001, 0x7f7fffff).buffer);
  assert.deepEqual(Array.from(toBf16Bits(odd)), [0x7fc0, 0xffc0, 0x7f80]);
  assert.deepEqual(Array.from(toF16Bits(odd)), [0x7e00, 0xfe00, 0x7c00]);
  // encodeSafetensors() stores them so: 8 + 64-byte header + 2 bytes a value
  const file = encodeSafetensors({ x: { dtype: "F32", shape: [1], data: Float32Array.of(1) } }, {
    format: "pt",
  }, "BF16");
  assert.deepEqual(Array.from(file.subarray(file.length - 2)), [0x80, 0x3f]);
});

Deno.test("shardTensors() fills each shard up to the limit, and gives a larger tensor its own", () => {
  const t = (name: string, n: number) => ({ name, dtype: "F32" as const, shape: [n] });
  const names = (shards: { name: string }[][]) => shards.map((s) => s.map((t) => t.name));
  // 4-byte values: 12, 8, 20, 4, 4 bytes against 16
  assert.deepEqual(
    names(shardTensors([t("a", 3), t("b", 2), t("c", 5), t("d", 1), t("e", 1)], 16)),
    [["a"], ["b"], ["c"], ["d", "e"]],
  );
  assert.deepEqual(names(shardTensors([t("a", 3), t("b", 1)], 16)), [["a", "b"]]);
});

Deno.test("saveHfModel() writes stories260K back bit for bit: config, weights, logits, tokenizer files", async () => {
  const { kernels } = await useBackend("cpu");
  const source = await loadHfModel(STORIES, kernels.layout);
  const params = weightsToTensors(source.weights, true);
  await withTempDir(async (dir) => {
    const out = `${dir}/saved`;
    const saved = await saveHfModel(out, params, STORIES, { layout: kernels.layout });
    assert.deepEqual(saved.files.sort(), [
      "config.json",
      "model.safetensors",
      "special_tokens_map.json",
      "tokenizer.json",
      "tokenizer_config.json",
    ]);
    // The same config.json, field for field (stories260K's is F32 and states everything).
    assert.deepEqual(
      await readJsonFile(`${out}/config.json`),
      await readJsonFile(`${STORIES}/config.json`),
    );
    for (const name of ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]) {
      assert.deepEqual(await bytesOf(`${out}/${name}`), await bytesOf(`${STORIES}/${name}`), name);
    }
    // The same bytes as the source file, which is as transformers wrote it (header order aside).
    const again = await loadHfModel(out, kernels.layout);
    assert.equal(again.dtype, "F32");
    assert.deepEqual(again.config, source.config);
    assert.deepEqual(again.weights, source.weights);
    const header = await readSafetensorsHeader(`${out}/model.safetensors`);
    assert.deepEqual(header.metadata, { format: "pt" });
    assert.equal(saved.totalSize, 4 * 260_032);
    // Both layouts write the same file.
    const inOut = await loadHfModel(STORIES, "[in, out]");
    const p2 = weightsToTensors(inOut.weights, false);
    await saveHfModel(`${dir}/in_out`, p2, STORIES, { layout: "[in, out]" });
    assert.deepEqual(
      await bytesOf(`${dir}/in_out/model.safetensors`),
      await bytesOf(`${out}/model.safetensors`),
    );
    const reloaded = weightsToTensors(again.weights, false);
    assert.deepEqual(
      await logitsOf(kernels, reloaded, again.config),
      await logitsOf(kernels, params, source.config),
    );
    tf.dispose([...Object.values(p2), ...Object.values(reloaded)]);
  });
  tf.dispose(Object.values(params));
});

Deno.test("saveHfModel() stores F16 and BF16 as asked, rounded, and they read back to the rounded values", async () => {
  const { kernels } = await useBackend("cpu");
  const source = await loadHfModel(STORIES, kernels.layout);
  // Special values in the final norm's gain: each dtype's rounding of them, by hand above.
  const norm = source.weights["model.norm.weight"]!.data;
  norm.set([1 / 3, 65520, 2 ** -20, NaN, -0, 3 * 2 ** -26]);
  const params = weightsToTensors(source.weights, false);
  await withTempDir(async (dir) => {
    for (const dtype of ["F16", "BF16"] as const) {
      const out = `${dir}/${dtype}`;
      const saved = await saveHfModel(out, params, STORIES, { layout: kernels.layout, dtype });
      assert.equal(saved.totalSize, 2 * 260_032);
      assert.equal(
        (await readJsonFile(`${out}/config.json`) as { torch_dtype: string }).torch_dtype,
        dtype === "F16" ? "float16" : "bfloat16",
      );
      const again = await loadHfModel(out, kernels.layout);
      assert.equal(again.dtype, dtype);
      const gain = again.weights["model.norm.weight"]!.data;
      if (dtype === "F16") {
        assert.deepEqual(Array.from(gain.subarray(0, 6)), [
          0.333251953125,
          Infinity,
          2 ** -20,
          NaN,
          -0,
          2 ** -24,
        ]);
      } else {
        assert.deepEqual(Array.from(gain.subarray(0, 6)), [
          0.333984375,
          65536,
          2 ** -20,
          NaN,
          -0,
          3 * 2 ** -26,
        ]);
      }
      for (const [name, { data }] of Object.entries(source.weights)) {
        const round = dtype === "F16" ? toF16Bits : toBf16Bits;
        assert.deepEqual(again.weights[name]!.data, widen(round(data), dtype), name);
      }
    }
  });
  tf.dispose(Object.values(params));
});

Deno.test("saveHfModel() splits the weights into shards above maxShardBytes, with transformers' index", async () => {
  const { kernels } = await useBackend("cpu");
  const source = await loadHfModel(STORIES, kernels.layout);
  const params = weightsToTensors(source.weights, false);
  await withTempDir(async (dir) => {
    const out = `${dir}/sharded`;
    // The embedding (512 × 64 × 4 = 131072 bytes) is over the limit: a shard of its own.
    const saved = await saveHfModel(out, params, STORIES, {
      layout: kernels.layout,
      maxShardBytes: 100_000,
    });
    const shards = saved.files.filter((f) => f.endsWith(".safetensors")).sort();
    assert.ok(shards.length > 3, `${shards.length} shards`);
    shards.forEach((name, i) => {
      assert.equal(
        name,
        `model-${String(i + 1).padStart(5, "0")}-of-${
          String(shards.length).padStart(5, "0")
        }.safetensors`,
      );
    });
    const index = await readJsonFile(`${out}/model.safetensors.index.json`) as {
      metadata: { total_size: number };
      weight_map: Record<string, string>;
    };
    assert.equal(index.metadata.total_size, 4 * 260_032);
    assert.deepEqual(
      Object.keys(index.weight_map),
      Object.keys(hfParamShapes(source.config)).sort(),
    );
    let total = 0;
    for (const shard of shards) {
      const { tensors, metadata } = await readSafetensorsHeader(`${out}/${shard}`);
      assert.deepEqual(metadata, { format: "pt" });
      const bytes = tensors.map((t) => 4 * t.shape.reduce((a, b) => a * b, 1));
      const sum = bytes.reduce((a, b) => a + b, 0);
      assert.ok(sum <= 100_000 || tensors.length === 1, `${shard}: ${sum} bytes`);
      for (const t of tensors) assert.equal(index.weight_map[t.name], shard, t.name);
      total += sum;
    }
    assert.equal(total, index.metadata.total_size);
    await assert.rejects(Deno.stat(`${out}/model.safetensors`), Deno.errors.NotFound);
    const again = await loadHfModel(out, kernels.layout);
    assert.deepEqual(again.weights, source.weights);
  });
  tf.dispose(Object.values(params));
});

/** A source of each architecture: its config.json, with fields giftwrap does not know. */
const SOURCES: Record<string, Record<string, unknown>> = {
  "qwen2 (q/k/v biases, tied)": {
    architectures: ["Qwen2ForCausalLM"],
    model_type: "qwen2",
    vocab_size: 40,
    hidden_size: 16,
    intermediate_size: 24,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    max_position_embeddings: 32,
    hidden_act: "silu",
    max_window_layers: 21,
    rms_norm_eps: 1e-6,
    rope_theta: 1_000_000,
    sliding_window: 32_768,
    use_sliding_window: false,
    tie_word_embeddings: true,
    torch_dtype: "bfloat16",
    bos_token_id: 151643,
    transformers_version: "4.43.1",
  },
  "qwen3 (q/k norms, head_dim 8 ≠ 16 / 4, untied)": {
    architectures: ["Qwen3ForCausalLM"],
    model_type: "qwen3",
    vocab_size: 40,
    hidden_size: 16,
    intermediate_size: 24,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    head_dim: 8,
    max_position_embeddings: 32,
    attention_bias: false,
    attention_dropout: 0.0,
    hidden_act: "silu",
    rms_norm_eps: 1e-6,
    rope_scaling: null,
    rope_theta: 1_000_000,
    sliding_window: null,
    use_sliding_window: false,
    tie_word_embeddings: false,
    torch_dtype: "bfloat16",
    initializer_range: 0.02,
  },
  "llama (llama3 rope scaling, untied)": {
    architectures: ["LlamaForCausalLM"],
    model_type: "llama",
    vocab_size: 40,
    hidden_size: 16,
    intermediate_size: 24,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 1,
    max_position_embeddings: 32,
    hidden_act: "silu",
    mlp_bias: false,
    rms_norm_eps: 1e-5,
    rope_theta: 500_000,
    rope_scaling: {
      factor: 32,
      high_freq_factor: 4,
      low_freq_factor: 1,
      original_max_position_embeddings: 8,
      rope_type: "llama3",
    },
    tie_word_embeddings: false,
    torch_dtype: "float32",
    eos_token_id: [128001, 128008, 128009],
  },
};

/** Random float32 weights, [out, in], for every parameter of `config`'s architecture, norms near 1. */
function randomWeights(config: ModelConfig, seed: number): Record<string, TensorData> {
  const weights = randomTensors(hfParamShapes(config), seed);
  for (const [name, { data }] of Object.entries(weights)) {
    if (name.endsWith("norm.weight")) {
      for (let i = 0; i < data.length; i++) data[i] = 1 + data[i]!;
    }
  }
  return weights;
}

Deno.test("saveHfModel() writes qwen2, qwen3 and llama3-scaled models as their own architecture, read back to the same config and logits", async () => {
  const { kernels } = await useBackend("cpu");
  await withTempDir(async (dir) => {
    let seed = 1;
    for (const [what, raw] of Object.entries(SOURCES)) {
      const src = `${dir}/src-${seed}`;
      await Deno.mkdir(src);
      const { config } = parseHfConfig(raw, "config.json");
      const weights = randomWeights(config, seed++);
      // The source in the dtype its config.json names; extra files copied byte for byte.
      const stored = raw.torch_dtype === "bfloat16" ? "BF16" : "F32";
      await Deno.writeFile(
        `${src}/model.safetensors`,
        encodeSafetensors(weights, { format: "pt" }, stored),
      );
      await Deno.writeTextFile(`${src}/config.json`, JSON.stringify(raw, null, 2));
      const extra = {
        "generation_config.json": '{"eos_token_id": [1, 2], "temperature": 0.7}\n',
        "chat_template.jinja":
          "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}",
        "tokenizer_config.json": '{"add_bos_token": false, "pad_token": "é"}',
      };
      for (const [name, text] of Object.entries(extra)) {
        await Deno.writeTextFile(`${src}/${name}`, text);
      }
      const source = await loadHfModel(src, kernels.layout);
      const params = weightsToTensors(source.weights, false);
      const out = `${dir}/out-${seed}`;
      const saved = await saveHfModel(out, params, src, { layout: kernels.layout });
      assert.deepEqual(
        saved.files.sort(),
        ["config.json", "model.safetensors", ...Object.keys(extra)].sort(),
        what,
      );
      for (const name of Object.keys(extra)) {
        assert.deepEqual(await bytesOf(`${out}/${name}`), await bytesOf(`${src}/${name}`), name);
      }
      // Every field of the source kept, its values too (the dtype stays the source's).
      assert.deepEqual(await readJsonFile(`${out}/config.json`), raw, what);
      assert.deepEqual(await readHfConfig(out), await readHfConfig(src), what);
      const again = await loadHfModel(out, kernels.layout);
      assert.equal(again.dtype, stored, what);
      assert.deepEqual(again.weights, source.weights, what);
      const reloaded = weightsToTensors(again.weights, false);
      assert.deepEqual(
        await logitsOf(kernels, reloaded, again.config),
        await logitsOf(kernels, params, source.config),
        what,
      );
      tf.dispose([...Object.values(params), ...Object.values(reloaded)]);
    }
  });
});

Deno.test("saveHfModel() writes what giftwrap knows over the source's config.json, and the dtype asked for", async () => {
  await useBackend("cpu");
  await withTempDir(async (dir) => {
    // A qwen3 file of the newer form: `dtype` for torch_dtype, max_position_embeddings and
    // head_dim stated. A llama one with the old `type` key of rope_scaling and no architectures.
    const qwen3 = { ...SOURCES["qwen3 (q/k norms, head_dim 8 ≠ 16 / 4, untied)"]! };
    delete qwen3.torch_dtype;
    qwen3.dtype = "bfloat16";
    const llama: Record<string, unknown> = {
      ...SOURCES["llama (llama3 rope scaling, untied)"]!,
      rope_scaling: {
        type: "llama3",
        factor: 32,
        high_freq_factor: 4,
        low_freq_factor: 1,
        original_max_position_embeddings: 8,
      },
    };
    delete llama.architectures;
    delete llama.max_position_embeddings;
    for (
      const [raw, expected] of [
        [qwen3, { ...qwen3, dtype: "float16" }],
        [llama, {
          ...llama,
          architectures: ["LlamaForCausalLM"],
          max_position_embeddings: 2048,
          torch_dtype: "float16",
        }],
      ] as const
    ) {
      const src = `${dir}/src`;
      await Deno.mkdir(src);
      const { config } = parseHfConfig(raw, "config.json");
      await Deno.writeTextFile(`${src}/config.json`, JSON.stringify(raw));
      await Deno.writeFile(`${src}/model.safetensors`, encodeSafetensors(randomWeights(config, 9)));
      const params = weightsToTensors((await loadHfModel(src, "[in, out]")).weights, false);
      await saveHfModel(`${dir}/out`, params, src, { dtype: "F16" });
      assert.deepEqual(await readJsonFile(`${dir}/out/config.json`), expected);
      assert.deepEqual((await readHfConfig(`${dir}/out`)).config, config);
      tf.dispose(Object.values(params));
      await Deno.remove(src, { recursive: true });
      await Deno.remove(`${dir}/out`, { recursive: true });
    }
  });
});

Deno.test("saveHfModel() refuses parameters the architecture lacks, misses or shapes otherwise, and an existing directory", async () => {
  const { kernels } = await useBackend("cpu");
  const source = await loadHfModel(STORIES, "[in, out]");
  const params = weightsToTensors(source.weights, false);
  await withTempDir(async (dir) => {
    const out = `${dir}/out`;
    const save = (p: Record<string, tf.Tensor>, options: SaveHfModelOptions = {}) =>
      saveHfModel(out, p, STORIES, { layout: "[in, out]", ...options });
    const lm = tf.zeros([64, 512]);
    await assert.rejects(save({ ...params, "lm_head.weight": lm }), {
      message:
        `Cannot save the Hugging Face model '${out}' as parameter 'lm_head.weight' is not one of ` +
        `a llama model of ${STORIES}/config.json`,
    });
    const { ["model.norm.weight"]: _, ...lacking } = params;
    await assert.rejects(save(lacking), {
      message:
        `Cannot save the Hugging Face model '${out}' as parameter 'model.norm.weight' is missing`,
    });
    // q_proj is square, so the first to differ between the layouts is k_proj
    await assert.rejects(save(params, { layout: "[out, in]" }), {
      message: `Cannot save the Hugging Face model '${out}' as parameter ` +
        `'model.layers.0.self_attn.k_proj.weight' has shape [64, 32], expected [32, 64] (layout [out, in])`,
    });
    await assert.rejects(save(params, { maxShardBytes: 0 }), {
      message: `Cannot save the Hugging Face model '${out}' as 'maxShardBytes' must be an ` +
        `integer >= 1: current value is 0`,
    });
    await assert.rejects(save(params, { dtype: "F64" as "F32" }), {
      message: `Cannot save the Hugging Face model '${out}' as 'dtype' must be one of F32, F16, ` +
        `BF16: current value is "F64"`,
    });
    // Nothing was left behind by the refusals.
    assert.deepEqual([...Deno.readDirSync(dir)], []);
    await Deno.mkdir(out);
    await assert.rejects(save(params), {
      message: `Cannot save the Hugging Face model '${out}' as it exists (pass overwrite: true ` +
        `to replace it)`,
    });
    await Deno.writeTextFile(`${out}/stale.txt`, "x");
    await save(params, { overwrite: true });
    await assert.rejects(Deno.stat(`${out}/stale.txt`), Deno.errors.NotFound);
    assert.deepEqual((await loadHfModel(out, kernels.layout)).config, source.config);
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["out"]);
    lm.dispose();
  });
  tf.dispose(Object.values(params));
});

Deno.test({
  ...needsTorch(
    "PyTorch reads the saved files by hand to the names, shapes and values written, F16/BF16 rounded as PyTorch rounds",
  ),
  async fn() {
    await useBackend("cpu");
    const source = await loadHfModel(STORIES, "[in, out]");
    const norm = source.weights["model.norm.weight"]!.data;
    norm.set([1 / 3, 65520, 2 ** -20, NaN, -0, 3 * 2 ** -26, 1e-40, -1e6]);
    const params = weightsToTensors(source.weights, false);
    await withTempDir(async (dir) => {
      const dirs = {
        f32: `${dir}/f32`,
        f16: `${dir}/f16`,
        bf16: `${dir}/bf16`,
        sharded: `${dir}/sharded`,
      };
      await saveHfModel(dirs.f32, params, STORIES);
      await saveHfModel(dirs.f16, params, STORIES, { dtype: "F16" });
      await saveHfModel(dirs.bf16, params, STORIES, { dtype: "BF16" });
      await saveHfModel(dirs.sharded, params, STORIES, { dtype: "BF16", maxShardBytes: 60_000 });
      const out = await new Deno.Command(PYTHON, {
        args: [SCRIPT, ...Object.values(dirs)],
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.ok(out.success, new TextDecoder().decode(out.stderr));
      const text = new TextDecoder().decode(out.stdout);
      const read = JSON.parse(text) as Record<string, {
        dtypes: Record<string, string>;
        shapes: Record<string, number[]>;
        total_size: number | null;
        shards: string[];
        first: Record<string, (number | string)[]>;
        differ_from_torch_rounding: string[];
      }>;
      const shapes = hfParamShapes(source.config);
      for (const [kind, path] of Object.entries(dirs)) {
        const r = read[path]!;
        assert.deepEqual(r.shapes, shapes, kind);
        const dtype = kind === "f32" ? "F32" : kind === "f16" ? "F16" : "BF16";
        assert.deepEqual(new Set(Object.values(r.dtypes)), new Set([dtype]), kind);
        assert.deepEqual(r.differ_from_torch_rounding, [], kind);
      }
      // The values PyTorch read: F32 as written, the halves as rounded by hand above.
      const first = (kind: keyof typeof dirs) => read[dirs[kind]]!.first["model.norm.weight"];
      assert.deepEqual(first("f32"), [Math.fround(1 / 3), 65520, 2 ** -20, "NaN"]);
      assert.deepEqual(first("f16"), [0.333251953125, "Infinity", 2 ** -20, "NaN"]);
      assert.deepEqual(first("bf16"), [0.333984375, 65536, 2 ** -20, "NaN"]);
      const embed = source.weights["model.embed_tokens.weight"]!.data;
      assert.deepEqual(
        read[dirs.f32]!.first["model.embed_tokens.weight"],
        Array.from(embed.subarray(0, 4)),
      );
      const sharded = read[dirs.sharded]!;
      assert.ok(sharded.shards.length > 3);
      assert.equal(sharded.total_size, 2 * 260_032);
      assert.equal(read[dirs.bf16]!.total_size, null);
    });
    tf.dispose(Object.values(params));
  },
});
