/**
 * Hugging Face checkpoints out: a model giftwrap ran (its parameters, in the kernel set's layout)
 * written as a Hugging Face model directory of the architecture it was loaded from, so that
 * `transformers`, vLLM and llama.cpp's converter read it as they read the source.
 *
 * `config.json` is the source's own, every field kept (what giftwrap does not know, too), with
 * what giftwrap knows set again from the model (dimensions, RoPE, tied embeddings, the dtype). The
 * weights are safetensors in the dtype each had in the source unless asked otherwise (F32, F16 or
 * BF16, rounded to the nearest, ties to even), linear weights `[out, in]`, split into shards above
 * a size as `transformers`' `save_pretrained` splits them. The tokenizer's files and
 * `generation_config.json` are copied byte for byte. The directory is written beside its final name,
 * each file synced, and renamed into place.
 *
 * @module
 */

import type { tf } from "../tf.ts";
import type { LinearLayout } from "../kernels/types.ts";
import { readJsonFile, toTensorData } from "./checkpoint.ts";
import { type HfConfig, hfParamShapes, parseHfConfig } from "./hf.ts";
import {
  readSafetensorsHeader,
  type SafetensorsDtype,
  safetensorsHeader,
  tensorBytes,
  type TensorInfo,
} from "./safetensors.ts";
import { isLinear } from "./transformer.ts";
import { readRegularFile } from "./_regular_file.ts";

/**
 * The files of a source directory copied byte for byte when present: the tokenizer (fast and
 * slow forms, its chat template) and the generation settings.
 */
export const HF_COPIED_FILES = [
  "tokenizer.json",
  "tokenizer_config.json",
  "special_tokens_map.json",
  "chat_template.jinja",
  "chat_template.json",
  "added_tokens.json",
  "tokenizer.model",
  "vocab.json",
  "merges.txt",
  "generation_config.json",
] as const;

/** The largest file copied (a tokenizer.json of a 256k vocabulary is about 35 MB). */
export const MAX_COPIED_FILE_BYTES = 268_435_456;

/** `transformers`' default `max_shard_size`, "5GB": 5·10⁹ bytes of tensor data per shard. */
export const DEFAULT_MAX_SHARD_BYTES = 5_000_000_000;

/**
 * Options of {@linkcode saveHfModel}.
 *
 * @example
 * ```ts
 * const options: SaveHfModelOptions = { layout: kernels.layout, dtype: "BF16", maxShardBytes: 2e9 };
 * await saveHfModel("out/model", params, "models/stories260K", options);
 * ```
 */
export interface SaveHfModelOptions {
  /** The layout of the linear weights in `params` (`KernelSet.layout`). @default "[in, out]" */
  layout?: LinearLayout;
  /**
   * The dtype every tensor is stored as. @default each tensor's dtype in the source (BF16 stays
   * BF16), F32 for a tensor the source lacks
   */
  dtype?: SafetensorsDtype;
  /**
   * The most tensor bytes in one file; above it the weights are split into
   * `model-0000i-of-0000n.safetensors` with `model.safetensors.index.json`. A tensor larger than
   * this has a shard of its own. @default 5e9 (transformers' "5GB")
   */
  maxShardBytes?: number;
  /** Replace `dir` when it exists (after the new one is complete). @default false */
  overwrite?: boolean;
}

/**
 * What {@linkcode saveHfModel} wrote.
 *
 * @example
 * ```ts
 * const saved: SavedHfModel = await saveHfModel("out/model", params, "models/stories260K");
 * saved.files; // ["model.safetensors", "config.json", "tokenizer.json", …]
 * saved.totalSize; // 1_040_128: 260,032 float32 values
 * ```
 */
export interface SavedHfModel {
  /** The files written, by name (config.json, weights, index, copied files). */
  files: string[];
  /** The dtype each tensor was stored as. */
  dtypes: Record<string, SafetensorsDtype>;
  /** The bytes of tensor data (the index's `metadata.total_size`). */
  totalSize: number;
}

/** `torch_dtype` of each stored dtype. */
const TORCH_DTYPES: Record<SafetensorsDtype, string> = {
  F32: "float32",
  F16: "float16",
  BF16: "bfloat16",
};

/** The class `transformers` builds for each model type, when the source names none. */
const DEFAULT_ARCHITECTURES: Record<HfConfig["modelType"], string> = {
  llama: "LlamaForCausalLM",
  mistral: "MistralForCausalLM",
  qwen2: "Qwen2ForCausalLM",
  qwen3: "Qwen3ForCausalLM",
};

const BYTES: Record<SafetensorsDtype, number> = { F32: 4, F16: 2, BF16: 2 };

/**
 * The source's `config.json` (`raw`) with what giftwrap knows of the model set from `hf`, and the
 * stored dtype: every other field as the source had it.
 *
 * @example
 * ```ts
 * const raw = await readJsonFile("models/stories260K/config.json");
 * const out = hfConfigJson(raw, parseHfConfig(raw, "config.json"), "BF16");
 * out.torch_dtype; // "bfloat16"
 * ```
 */
export function hfConfigJson(
  raw: Record<string, unknown>,
  hf: HfConfig,
  dtype: SafetensorsDtype,
): Record<string, unknown> {
  const { config } = hf;
  const out: Record<string, unknown> = { ...raw };
  out.architectures = hf.architectures.length > 0
    ? [...hf.architectures]
    : [DEFAULT_ARCHITECTURES[hf.modelType]];
  out.model_type = hf.modelType;
  out.vocab_size = config.vocab;
  out.hidden_size = config.dModel;
  out.intermediate_size = config.ffnDim;
  out.num_hidden_layers = config.layers;
  out.num_attention_heads = config.heads;
  out.num_key_value_heads = config.kvHeads;
  // head_dim as the source gave it; a width other than hidden / heads must be stated
  if (Object.hasOwn(raw, "head_dim") || config.headDim * config.heads !== config.dModel) {
    out.head_dim = config.headDim;
  }
  out.max_position_embeddings = config.contextLength;
  out.rms_norm_eps = config.normEps;
  out.tie_word_embeddings = config.tiedEmbeddings;
  const scaling = config.ropeScaling;
  const params = raw.rope_parameters;
  if (typeof params === "object" && params !== null && !Array.isArray(params)) {
    // newer files: RoPE's θ and scaling together
    const p: Record<string, unknown> = { ...params, rope_theta: config.ropeTheta };
    if (scaling) Object.assign(p, ropeScalingJson(p, scaling));
    out.rope_parameters = p;
  } else {
    out.rope_theta = config.ropeTheta;
    if (scaling) {
      const given = raw.rope_scaling;
      const old = typeof given === "object" && given !== null && !Array.isArray(given)
        ? given as Record<string, unknown>
        : {};
      out.rope_scaling = { ...old, ...ropeScalingJson(old, scaling) };
    }
  }
  // transformers ≥ 4.56 writes `dtype`, older ones `torch_dtype`: the field the source used
  if (Object.hasOwn(raw, "dtype") && !Object.hasOwn(raw, "torch_dtype")) {
    out.dtype = TORCH_DTYPES[dtype];
  } else {
    out.torch_dtype = TORCH_DTYPES[dtype];
  }
  return out;
}

/** Llama 3's rope scaling fields, its kind under the key the source used (`rope_type` or `type`). */
function ropeScalingJson(
  old: Record<string, unknown>,
  scaling: NonNullable<HfConfig["config"]["ropeScaling"]>,
): Record<string, unknown> {
  const kindKey = old.rope_type === undefined && old.type !== undefined ? "type" : "rope_type";
  return {
    [kindKey]: "llama3",
    factor: scaling.factor,
    low_freq_factor: scaling.lowFreqFactor,
    high_freq_factor: scaling.highFreqFactor,
    original_max_position_embeddings: scaling.originalMaxPositions,
  };
}

/**
 * Splits tensors (in the model's order) into shards as `transformers` does: each tensor joins the
 * current shard unless that would take it over `maxBytes`, which then starts a new one; a tensor
 * over `maxBytes` alone makes a shard of its own.
 *
 * @example
 * ```ts
 * shardTensors([{ name: "a", dtype: "F32", shape: [3] }, { name: "b", dtype: "F32", shape: [3] }], 16);
 * // [[a], [b]]
 * ```
 */
export function shardTensors(tensors: readonly TensorInfo[], maxBytes: number): TensorInfo[][] {
  const shards: TensorInfo[][] = [];
  let current: TensorInfo[] = [];
  let size = 0;
  for (const t of tensors) {
    const bytes = t.shape.reduce((a, b) => a * b, 1) * BYTES[t.dtype];
    if (current.length > 0 && size + bytes > maxBytes) {
      shards.push(current);
      current = [];
      size = 0;
    }
    current.push(t);
    size += bytes;
  }
  if (current.length > 0) shards.push(current);
  return shards;
}

/**
 * The dtype each tensor of the source directory `source` is stored in, read from the safetensors
 * headers alone (`model.safetensors`, else the shards its index names).
 */
async function sourceDtypes(source: string): Promise<Record<string, SafetensorsDtype>> {
  const files: string[] = [];
  try {
    await Deno.stat(`${source}/model.safetensors`);
    files.push("model.safetensors");
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
    const index = await readJsonFile(`${source}/model.safetensors.index.json`) as {
      weight_map?: Record<string, unknown>;
    };
    const map = index?.weight_map ?? {};
    for (const file of new Set(Object.values(map))) {
      if (
        typeof file !== "string" || !/^[^/\\]+\.safetensors$/.test(file) || file.startsWith(".")
      ) {
        throw new Error(
          `${source}/model.safetensors.index.json: weight_map: expected .safetensors files of ` +
            `the directory, got ${JSON.stringify(file)}`,
        );
      }
      files.push(file);
    }
  }
  const dtypes: Record<string, SafetensorsDtype> = {};
  for (const file of files) {
    for (const { name, dtype } of (await readSafetensorsHeader(`${source}/${file}`)).tensors) {
      dtypes[name] = dtype;
    }
  }
  return dtypes;
}

/** The dtype most tensors have (ties: the first in F32, BF16, F16 order), F32 for none. */
function mostCommon(dtypes: Record<string, SafetensorsDtype>): SafetensorsDtype {
  const counts: Record<SafetensorsDtype, number> = { F32: 0, BF16: 0, F16: 0 };
  for (const d of Object.values(dtypes)) counts[d]++;
  return (Object.keys(counts) as SafetensorsDtype[]).reduce((a, b) =>
    counts[b] > counts[a] ? b : a
  );
}

/** Writes all of `bytes` to an open file (a single `write` may write less). */
async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let done = 0;
  while (done < bytes.length) done += await file.write(bytes.subarray(done));
}

/**
 * Saves a model as a Hugging Face model directory `dir` of the architecture of `source`, the
 * Hugging Face directory it was loaded from (`loadHfModel(source, layout)`): `config.json` (the
 * source's, see {@linkcode hfConfigJson}), `model.safetensors` or its shards with
 * `model.safetensors.index.json` (`metadata.total_size` and `weight_map`, as `transformers`
 * writes them; each file's metadata `{format: "pt"}`), and the source's tokenizer files and
 * `generation_config.json` ({@linkcode HF_COPIED_FILES}) byte for byte. `params` must be exactly
 * the parameters of the source's architecture, shaped for `options.layout`; anything else is
 * refused in one line naming the tensor. Tensors are written one at a time, so no more than one
 * is held beside `params`. The directory is complete or absent: written as a sibling, each file
 * synced, then renamed to `dir`.
 *
 * @example
 * ```ts
 * const { kernels } = await useBackend("cpu");
 * const model = await loadHfModel("models/stories260K", kernels.layout);
 * const params = weightsToTensors(model.weights, true);
 * // … train params …
 * await saveHfModel("out/stories-tuned", params, "models/stories260K", { layout: kernels.layout });
 * // BF16 weights in shards of at most 2 GB:
 * await saveHfModel("out/bf16", params, "models/stories260K", {
 *   layout: kernels.layout,
 *   dtype: "BF16",
 *   maxShardBytes: 2e9,
 * });
 * ```
 */
export async function saveHfModel(
  dir: string,
  params: Record<string, tf.Tensor>,
  source: string,
  options: SaveHfModelOptions = {},
): Promise<SavedHfModel> {
  const layout = options.layout ?? "[in, out]";
  const maxShardBytes = options.maxShardBytes ?? DEFAULT_MAX_SHARD_BYTES;
  if (!Number.isSafeInteger(maxShardBytes) || maxShardBytes < 1) {
    throw new Error(
      `Cannot save the Hugging Face model '${dir}' as 'maxShardBytes' must be an integer >= 1: ` +
        `current value is ${JSON.stringify(maxShardBytes)}`,
    );
  }
  if (options.dtype !== undefined && !Object.hasOwn(BYTES, options.dtype)) {
    throw new Error(
      `Cannot save the Hugging Face model '${dir}' as 'dtype' must be one of F32, F16, BF16: ` +
        `current value is ${JSON.stringify(options.dtype)}`,
    );
  }
  const configPath = `${source}/config.json`;
  const raw = await readJsonFile(configPath);
  const hf = parseHfConfig(raw, configPath);

  // The parameters: exactly the architecture's, in its order, each of its shape.
  const expected = hfParamShapes(hf.config);
  for (const name of Object.keys(params)) {
    if (!Object.hasOwn(expected, name)) {
      throw new Error(
        `Cannot save the Hugging Face model '${dir}' as parameter '${name}' is not one of a ` +
          `${hf.modelType} model of ${configPath}`,
      );
    }
  }
  const fromSource = options.dtype === undefined ? await sourceDtypes(source) : {};
  const infos: TensorInfo[] = [];
  const dtypes: Record<string, SafetensorsDtype> = {};
  for (const [name, shape] of Object.entries(expected)) {
    const p = params[name];
    if (p === undefined) {
      throw new Error(
        `Cannot save the Hugging Face model '${dir}' as parameter '${name}' is missing`,
      );
    }
    const want = isLinear(name) && layout === "[in, out]" ? [shape[1]!, shape[0]!] : shape;
    if (p.shape.length !== want.length || p.shape.some((n, i) => n !== want[i])) {
      throw new Error(
        `Cannot save the Hugging Face model '${dir}' as parameter '${name}' has shape ` +
          `[${p.shape.join(", ")}], expected [${want.join(", ")}] (layout ${layout})`,
      );
    }
    if (p.dtype !== "float32") {
      throw new Error(
        `Cannot save the Hugging Face model '${dir}' as parameter '${name}' is ${p.dtype}, ` +
          `expected float32`,
      );
    }
    const dtype = options.dtype ?? fromSource[name] ?? "F32";
    dtypes[name] = dtype;
    infos.push({ name, dtype, shape });
  }
  const configJson = hfConfigJson(raw as Record<string, unknown>, hf, mostCommon(dtypes));

  // The copied files, read before anything is written (`dir` may be `source` itself).
  const copied: Record<string, Uint8Array> = {};
  for (const name of HF_COPIED_FILES) {
    try {
      copied[name] = await readRegularFile(`${source}/${name}`, MAX_COPIED_FILE_BYTES);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
  }

  if (!options.overwrite) {
    try {
      await Deno.lstat(dir);
      throw new Error(
        `Cannot save the Hugging Face model '${dir}' as it exists (pass overwrite: true to replace it)`,
      );
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
  }

  const shards = shardTensors(infos, maxShardBytes);
  const names = shards.length === 1
    ? ["model.safetensors"]
    : shards.map((_, i) =>
      `model-${String(i + 1).padStart(5, "0")}-of-${
        String(shards.length).padStart(5, "0")
      }.safetensors`
    );
  const tmp = `${dir}.tmp-${crypto.randomUUID().slice(0, 8)}`;
  const written: string[] = [];
  let totalSize = 0;
  const writeFile = async (
    name: string,
    write: (file: Deno.FsFile) => Promise<void>,
  ): Promise<void> => {
    const file = await Deno.open(`${tmp}/${name}`, { write: true, createNew: true });
    try {
      await write(file);
      await file.syncData();
    } finally {
      file.close();
    }
    written.push(name);
  };
  const text = (value: unknown) => new TextEncoder().encode(JSON.stringify(value, null, 2) + "\n");
  try {
    await Deno.mkdir(tmp, { recursive: true });
    const weightMap: Record<string, string> = {};
    for (const [i, shard] of shards.entries()) {
      const { header, order, dataBytes } = safetensorsHeader(shard, { format: "pt" });
      totalSize += dataBytes;
      await writeFile(names[i]!, async (file) => {
        await writeAll(file, header);
        for (const { name, dtype } of order) {
          weightMap[name] = names[i]!;
          // One tensor at a time, turned to HF's [out, in] as giftwrap's checkpoints are.
          const { [name]: tensor } = await toTensorData({ [name]: params[name]! }, layout);
          await writeAll(file, tensorBytes(tensor!.data, dtype));
        }
      });
    }
    if (shards.length > 1) {
      const sorted = Object.fromEntries(
        Object.keys(weightMap).sort().map((name) => [name, weightMap[name]!]),
      );
      const index = { metadata: { total_size: totalSize }, weight_map: sorted };
      await writeFile("model.safetensors.index.json", (file) => writeAll(file, text(index)));
    }
    await writeFile("config.json", (file) => writeAll(file, text(configJson)));
    for (const [name, bytes] of Object.entries(copied)) {
      await writeFile(name, (file) => writeAll(file, bytes));
    }
    let old: string | null = null;
    if (options.overwrite) {
      try {
        await Deno.lstat(dir);
        old = `${dir}.old-${crypto.randomUUID().slice(0, 8)}`;
        await Deno.rename(dir, old);
      } catch (e) {
        if (!(e instanceof Deno.errors.NotFound)) throw e;
      }
    }
    await Deno.rename(tmp, dir);
    if (old !== null) await Deno.remove(old, { recursive: true });
  } catch (e) {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    throw e;
  }
  return { files: written, dtypes, totalSize };
}
