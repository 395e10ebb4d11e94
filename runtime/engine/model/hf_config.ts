/**
 * A Hugging Face `config.json` read and checked: the architectures giftwrap runs (`llama`,
 * `mistral`, `qwen2`, `qwen3`) and their fields as a {@linkcode ModelConfig}. Anything the
 * transformer would compute differently is refused in one line naming the field and its value.
 * Free of TensorFlow.js, so resolving a recipe's model before `compile()` stays light.
 *
 * @module
 */

import type { ModelConfig } from "./model_config.ts";
import { readJsonFile } from "./_regular_file.ts";

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
 * The weight files of `dir` and the tensors each holds: `model.safetensors` (its tensors unknown
 * until read) when there is one, else the shards of `model.safetensors.index.json`'s `weight_map`,
 * in name order. A shard that would lead out of the directory is refused in one line.
 *
 * @example
 * ```ts
 * [...(await weightShards("models/stories260K")).keys()]; // ["model.safetensors"]
 * ```
 */
export async function weightShards(dir: string): Promise<Map<string, Set<string> | null>> {
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
