/**
 * Hugging Face checkpoints in: a model directory's `config.json` read into a `ModelConfig` and the
 * architecture it describes, and its weights (`model.safetensors`, or the shards that
 * `model.safetensors.index.json` lists; F32, F16 or BF16, computed in float32) read into the form
 * `loadCheckpoint` gives, so the transformer (`transformer.ts`) runs them.
 *
 * The architectures are the Llama family the transformer implements: `llama` (SmolLM2 is one),
 * `mistral`, `qwen2` (biases on the q, k and v projections) and `qwen3` (RMSNorm over each head of
 * q and k), with RoPE's θ, Llama 3's `llama3` rope scaling, tied or untied embeddings and grouped
 * queries. Whatever would make the model compute something else (another `model_type`, experts, a
 * sliding window in use, another rope scaling, another activation, biases elsewhere) is refused in
 * one line naming the `config.json` field and its value, never ignored.
 *
 * @module
 */

import type { LinearLayout } from "../kernels/types.ts";
import type { ModelConfig } from "./config.ts";
import { inLayout, readJsonFile } from "./checkpoint.ts";
import {
  readSafetensorsFile,
  type SafetensorsDtype,
  type TensorData,
  type TensorInfo,
} from "./safetensors.ts";
import { paramShapes } from "./transformer.ts";

/** The `model_type`s giftwrap runs. */
export const HF_MODEL_TYPES = ["llama", "mistral", "qwen2", "qwen3"] as const;

/** A `model_type` giftwrap runs. */
export type HfModelType = typeof HF_MODEL_TYPES[number];

/**
 * A Hugging Face model's architecture, as its `config.json` describes it.
 *
 * @example
 * ```ts
 * const { modelType, config } = await readHfConfig("models/stories260K");
 * modelType; // "llama"
 * config.kvHeads; // 4
 * ```
 */
export interface HfConfig {
  /** `model_type`. */
  modelType: HfModelType;
  /** `architectures`, e.g. `["LlamaForCausalLM"]` (what a saved copy names again). */
  architectures: string[];
  /** The dimensions and variants the transformer runs. */
  config: ModelConfig;
  /** `torch_dtype` (or `dtype`), when the file names one: what the weights were saved as. */
  torchDtype?: string;
}

/** `max_position_embeddings` when a config leaves it out: each `transformers` class's default. */
const DEFAULT_MAX_POSITIONS: Record<HfModelType, number> = {
  llama: 2048,
  mistral: 131_072,
  qwen2: 32_768,
  qwen3: 32_768,
};

/** Fields that give a model experts (a mixture of experts), which the transformer does not have. */
const EXPERT_FIELDS = [
  "num_experts",
  "num_local_experts",
  "n_routed_experts",
  "num_experts_per_tok",
  "moe_intermediate_size",
];

/** A value as a refusal quotes it: strings in single quotes, the rest as JSON. */
function quote(value: unknown): string {
  if (value === undefined) return "nothing";
  if (typeof value === "string") return `'${value}'`;
  return JSON.stringify(value);
}

/**
 * The architecture that `raw`, the parsed `config.json` at `where`, describes; anything the
 * transformer cannot run is refused in one line: `<where>: <field>: expected …, got …`.
 *
 * @example
 * ```ts
 * const { config } = parseHfConfig(
 *   { model_type: "qwen2", vocab_size: 32, hidden_size: 16, intermediate_size: 32,
 *     num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1 },
 *   "x/config.json",
 * );
 * config.attentionBias; // true
 * ```
 */
export function parseHfConfig(raw: unknown, where: string): HfConfig {
  const refuse = (field: string, expected: string, value: unknown): never => {
    throw new Error(`${where}: ${field}: expected ${expected}, got ${quote(value)}`);
  };
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new Error(`${where}: expected a JSON object, got ${quote(raw)}`);
  }
  const c = raw as Record<string, unknown>;
  const field = (name: string): unknown => Object.hasOwn(c, name) ? c[name] : undefined;
  const given = (name: string): boolean => field(name) !== undefined && field(name) !== null;

  const modelType = field("model_type");
  if (!(HF_MODEL_TYPES as readonly unknown[]).includes(modelType)) {
    refuse("model_type", `one of ${HF_MODEL_TYPES.join(", ")}`, modelType);
  }
  const type = modelType as HfModelType;

  const integer = (name: string, fallback?: number): number => {
    const value = field(name) ?? fallback;
    if (!Number.isSafeInteger(value) || (value as number) < 1) {
      refuse(name, "an integer >= 1", field(name));
    }
    return value as number;
  };
  const positive = (name: string, value: unknown, fallback: number): number => {
    const v = value ?? fallback;
    if (typeof v !== "number" || !Number.isFinite(v) || v <= 0) {
      refuse(name, "a number > 0", value);
    }
    return v as number;
  };
  const flag = (name: string, fallback: boolean): boolean => {
    const value = field(name) ?? fallback;
    if (typeof value !== "boolean") refuse(name, "true or false", field(name));
    return value as boolean;
  };

  // What the transformer computes differently from these architectures is refused, not ignored.
  for (const name of EXPERT_FIELDS) {
    const value = field(name);
    if (value !== undefined && value !== null && value !== 0) {
      refuse(name, "no experts (a dense model)", value);
    }
  }
  const act = field("hidden_act") ?? field("hidden_activation");
  if (act !== undefined && act !== "silu") {
    refuse(given("hidden_act") ? "hidden_act" : "hidden_activation", "'silu'", act);
  }
  // Llama's, Mistral's and Qwen3's attention_bias puts biases on all four projections (o too);
  // Qwen2's q, k and v biases are its architecture, not a field.
  if (type !== "qwen2" && flag("attention_bias", false)) {
    refuse("attention_bias", "false", true);
  }
  if (flag("mlp_bias", false)) refuse("mlp_bias", "false", true);

  const heads = integer("num_attention_heads");
  const kvHeads = integer("num_key_value_heads", heads);
  if (heads % kvHeads !== 0) {
    refuse(
      "num_key_value_heads",
      `a divisor of num_attention_heads (${heads})`,
      kvHeads,
    );
  }
  const dModel = integer("hidden_size");
  if (type === "qwen3" && !given("head_dim")) {
    refuse("head_dim", "an integer >= 1 (Qwen3 states it)", field("head_dim"));
  }
  if (!given("head_dim") && dModel % heads !== 0) {
    refuse(
      "hidden_size",
      `a multiple of num_attention_heads (${heads}) when head_dim is not given`,
      dModel,
    );
  }
  const headDim = integer("head_dim", dModel / heads);
  if (headDim % 2 !== 0) refuse("head_dim", "an even number (RoPE rotates pairs)", headDim);
  const contextLength = integer("max_position_embeddings", DEFAULT_MAX_POSITIONS[type]);

  // A sliding window that never slides (null, off, or wider than the context) computes the same.
  // Mistral's is on unless the file says otherwise: transformers' MistralConfig defaults it to 4096.
  if (type === "qwen2" || type === "qwen3") {
    if (flag("use_sliding_window", false)) refuse("use_sliding_window", "false", true);
  } else if (field("sliding_window") !== null && (type === "mistral" || given("sliding_window"))) {
    const window = field("sliding_window") ?? 4096;
    if (!Number.isSafeInteger(window) || (window as number) < contextLength) {
      const got = given("sliding_window")
        ? quote(window)
        : "nothing, which transformers takes as 4096";
      throw new Error(
        `${where}: sliding_window: expected null or at least max_position_embeddings ` +
          `(${contextLength}), got ${got}`,
      );
    }
  }
  const layerTypes = field("layer_types");
  if (layerTypes !== undefined && layerTypes !== null) {
    const other = Array.isArray(layerTypes)
      ? layerTypes.findIndex((t) => t !== "full_attention")
      : 0;
    if (other >= 0) {
      refuse(
        Array.isArray(layerTypes) ? `layer_types[${other}]` : "layer_types",
        "'full_attention'",
        Array.isArray(layerTypes) ? layerTypes[other] : layerTypes,
      );
    }
  }

  // RoPE: `rope_theta` and `rope_scaling`, or newer files' `rope_parameters` holding both.
  const ropeParameters = field("rope_parameters");
  const params = typeof ropeParameters === "object" && ropeParameters !== null &&
      !Array.isArray(ropeParameters)
    ? ropeParameters as Record<string, unknown>
    : undefined;
  if (ropeParameters !== undefined && ropeParameters !== null && params === undefined) {
    refuse("rope_parameters", "an object", ropeParameters);
  }
  const ropeTheta = params !== undefined && params["rope_theta"] !== undefined
    ? positive("rope_parameters.rope_theta", params["rope_theta"], 10_000)
    : positive("rope_theta", field("rope_theta"), 10_000);
  const scalingField = params !== undefined ? "rope_parameters" : "rope_scaling";
  const scaling = params ?? field("rope_scaling");
  let ropeScaling: ModelConfig["ropeScaling"];
  if (scaling !== undefined && scaling !== null) {
    if (typeof scaling !== "object" || Array.isArray(scaling)) {
      refuse(scalingField, "null or an object", scaling);
    }
    const s = scaling as Record<string, unknown>;
    const kindField = s["rope_type"] !== undefined ? "rope_type" : "type";
    const kind = s[kindField];
    if (kind === "llama3") {
      const number = (name: string): number => {
        const value = s[name];
        if (typeof value !== "number" || !Number.isFinite(value) || value <= 0) {
          refuse(`${scalingField}.${name}`, "a number > 0", value);
        }
        return value as number;
      };
      ropeScaling = {
        type: "llama3",
        factor: number("factor"),
        lowFreqFactor: number("low_freq_factor"),
        highFreqFactor: number("high_freq_factor"),
        originalMaxPositions: number("original_max_position_embeddings"),
      };
      if (ropeScaling.highFreqFactor <= ropeScaling.lowFreqFactor) {
        refuse(
          `${scalingField}.high_freq_factor`,
          `a number > low_freq_factor (${ropeScaling.lowFreqFactor})`,
          ropeScaling.highFreqFactor,
        );
      }
    } else if (kind !== "default") {
      refuse(`${scalingField}.${kindField}`, "'llama3' (or no rope scaling)", kind);
    }
  }

  const architectures = field("architectures");
  if (
    architectures !== undefined && architectures !== null &&
    !(Array.isArray(architectures) && architectures.every((a) => typeof a === "string"))
  ) {
    refuse("architectures", "a list of class names", architectures);
  }
  const torchDtype = field("torch_dtype") ?? field("dtype");

  const config: ModelConfig = {
    vocab: integer("vocab_size"),
    dModel,
    layers: integer("num_hidden_layers"),
    heads,
    kvHeads,
    headDim,
    ffnDim: integer("intermediate_size"),
    contextLength,
    tiedEmbeddings: flag("tie_word_embeddings", false),
    ropeTheta,
    normEps: positive("rms_norm_eps", field("rms_norm_eps"), 1e-6),
  };
  if (type === "qwen2") config.attentionBias = true;
  if (type === "qwen3") config.qkNorm = true;
  if (ropeScaling) config.ropeScaling = ropeScaling;
  return {
    modelType: type,
    architectures: (architectures as string[] | undefined | null) ?? [],
    config,
    ...(typeof torchDtype === "string" ? { torchDtype } : {}),
  };
}

/**
 * Reads the `config.json` of the Hugging Face model directory `dir` (see {@linkcode parseHfConfig}).
 *
 * @example
 * ```ts
 * const { modelType, config } = await readHfConfig("models/stories260K");
 * ```
 */
export async function readHfConfig(dir: string): Promise<HfConfig> {
  const path = `${dir}/config.json`;
  let raw: unknown;
  try {
    raw = await readJsonFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new Error(`Cannot load the Hugging Face model '${dir}' as it has no config.json`);
    }
    throw e;
  }
  return parseHfConfig(raw, path);
}

/**
 * Every parameter of a model of `config` by its Hugging Face name, shaped as a Hugging Face
 * checkpoint stores it (linear weights `[out, in]`): the Llama parameters, plus Qwen2's q, k and
 * v biases and Qwen3's q and k norms, as the forward pass reads them.
 *
 * @example
 * ```ts
 * hfParamShapes({ ...config, qkNorm: true })["model.layers.0.self_attn.q_norm.weight"]; // [headDim]
 * ```
 */
export function hfParamShapes(config: ModelConfig): Record<string, number[]> {
  // paramShapes() lists the architecture's own parameters (architecture.ts) with Llama's.
  return Object.fromEntries(
    Object.entries(paramShapes(config, "[out, in]")).map(([name, { shape }]) => [name, shape]),
  );
}

/**
 * The number of parameters of a model of `config`.
 *
 * @example
 * ```ts
 * hfParameterCount((await readHfConfig("models/stories260K")).config); // 260_032
 * ```
 */
export function hfParameterCount(config: ModelConfig): number {
  return Object.values(hfParamShapes(config)).reduce(
    (sum, shape) => sum + shape.reduce((a, b) => a * b, 1),
    0,
  );
}

/**
 * A Hugging Face model read in: its architecture, the dtype its weights were stored in, and its
 * weights in float32 as `loadCheckpoint` gives them (`LoadedCheckpoint.weights`), in the layout
 * asked for.
 *
 * @example
 * ```ts
 * const model: LoadedHfModel = await loadHfModel("models/stories260K", "[out, in]");
 * model.dtype; // "F32"
 * model.parameters; // 260_032
 * ```
 */
export interface LoadedHfModel extends HfConfig {
  /** Weights by name, shaped as {@linkcode hfParamShapes} with linear weights in the layout asked for. */
  weights: Record<string, TensorData>;
  /** The dtype each weight was stored in, by name. */
  dtypes: Record<string, SafetensorsDtype>;
  /** The stored dtypes, most tensors first and joined by "+" when mixed: "BF16", "F32". */
  dtype: string;
  /** The number of parameters. */
  parameters: number;
}

/** Buffers a checkpoint may hold that are not parameters (older `transformers` saved them). */
function isBuffer(name: string): boolean {
  return name.endsWith("rotary_emb.inv_freq");
}

/**
 * The weight files of `dir` and the tensors each holds: `model.safetensors` (its tensors unknown
 * until read) when there is one, else the shards of `model.safetensors.index.json`'s `weight_map`.
 */
async function shardsOf(dir: string): Promise<Map<string, Set<string> | null>> {
  // transformers' order: one model.safetensors first, else the index of its shards.
  try {
    await Deno.stat(`${dir}/model.safetensors`);
    return new Map([["model.safetensors", null]]);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  const indexPath = `${dir}/model.safetensors.index.json`;
  let index: unknown;
  try {
    index = await readJsonFile(indexPath);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
    throw new Error(
      `Cannot load the Hugging Face model '${dir}' as it has neither model.safetensors nor ` +
        `model.safetensors.index.json`,
    );
  }
  const map = (index as { weight_map?: unknown } | null)?.weight_map;
  if (typeof map !== "object" || map === null || Array.isArray(map)) {
    throw new Error(
      `${indexPath}: weight_map: expected an object of tensor → file, got ${quote(map)}`,
    );
  }
  const shards = new Map<string, Set<string>>();
  for (const [name, file] of Object.entries(map as Record<string, unknown>)) {
    // A shard is a file of the directory: no path may lead out of it.
    if (
      typeof file !== "string" || !/^[^/\\]+\.safetensors$/.test(file) || file.startsWith(".")
    ) {
      throw new Error(
        `${indexPath}: weight_map['${name}']: expected a .safetensors file of the directory, got ${
          quote(file)
        }`,
      );
    }
    if (!shards.has(file)) shards.set(file, new Set());
    shards.get(file)!.add(name);
  }
  return new Map([...shards].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/**
 * Reads the Hugging Face model directory `dir`: its `config.json` ({@linkcode readHfConfig}) and
 * its weights, from `model.safetensors` or, when `model.safetensors.index.json` is there, from the
 * shards it lists (when there is no `model.safetensors`), one shard at a time. Each shard's header is checked before its data is read:
 * a tensor the architecture lacks, one it needs that is missing, or one of another shape is
 * refused in one line naming the tensor and the file. Each tensor is read once, into its own
 * float32 array (F16 and BF16 widened exactly), and linear weights are turned to `layout` (the
 * kernel set's) one at a time.
 *
 * @example
 * ```ts
 * const { kernels } = await useBackend("cpu");
 * const model = await loadHfModel("models/stories260K", kernels.layout);
 * const params = weightsToTensors(model.weights, false);
 * const { logits } = tf.tidy(() => forward(kernels, params, model.config, ids));
 * ```
 */
export async function loadHfModel(
  dir: string,
  layout: LinearLayout = "[in, out]",
): Promise<LoadedHfModel> {
  const hf = await readHfConfig(dir);
  const expected = hfParamShapes(hf.config);
  const shards = await shardsOf(dir);
  const weights: Record<string, TensorData> = {};
  const dtypes: Record<string, SafetensorsDtype> = {};
  const tied = hf.config.tiedEmbeddings;
  const why = (name: string) =>
    name === "lm_head.weight" && tied
      ? "config.json ties the embeddings (tie_word_embeddings: true), so the model has no lm_head"
      : `a ${hf.modelType} model of this config.json has no such parameter`;

  // The index must name every parameter; which file holds what is known before anything is read.
  if ([...shards.values()].every((names) => names !== null)) {
    const listed = new Set([...shards.values()].flatMap((names) => [...names!]));
    for (const name of Object.keys(expected)) {
      if (!listed.has(name)) {
        throw new Error(
          `${dir}/model.safetensors.index.json: lacks tensor '${name}' in its weight_map`,
        );
      }
    }
    for (const name of listed) {
      if (!Object.hasOwn(expected, name) && !isBuffer(name)) {
        throw new Error(
          `${dir}/model.safetensors.index.json: tensor '${name}' is extra: ${why(name)}`,
        );
      }
    }
  }

  for (const [file, listed] of shards) {
    const path = `${dir}/${file}`;
    const inspect = (tensors: readonly TensorInfo[]) => {
      const here = new Set(tensors.map((t) => t.name));
      for (const { name, shape } of tensors) {
        if (isBuffer(name)) continue;
        const want = expected[name];
        if (want === undefined || (listed !== null && !listed.has(name))) {
          throw new Error(
            `${path}: tensor '${name}' is extra: ${
              want === undefined ? why(name) : "model.safetensors.index.json places it elsewhere"
            }`,
          );
        }
        if (Object.hasOwn(weights, name)) {
          throw new Error(`${path}: tensor '${name}' was already read from another shard`);
        }
        if (shape.length !== want.length || shape.some((n, i) => n !== want[i])) {
          throw new Error(
            `${path}: tensor '${name}' has shape [${shape.join(", ")}], expected [${
              want.join(", ")
            }]`,
          );
        }
      }
      const need = listed ?? new Set(Object.keys(expected));
      for (const name of need) {
        if (!here.has(name)) throw new Error(`${path}: lacks tensor '${name}'`);
      }
    };
    const { tensors, dtypes: stored } = await readSafetensorsFile(path, { inspect });
    for (const [name, tensor] of Object.entries(tensors)) {
      delete tensors[name]; // the stored layout goes as soon as the kernel set's is made
      if (isBuffer(name)) continue;
      weights[name] = inLayout({ [name]: tensor }, layout)[name]!;
      dtypes[name] = stored[name]!;
    }
  }

  const counts = new Map<string, number>();
  for (const d of Object.values(dtypes)) counts.set(d, (counts.get(d) ?? 0) + 1);
  const dtype = [...counts].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
    .map(([d]) => d).join("+");
  return {
    ...hf,
    weights,
    dtypes,
    dtype,
    parameters: hfParameterCount(hf.config),
  };
}
