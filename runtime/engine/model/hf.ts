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
import { inLayout, loadCheckpoint, readJsonFile } from "./checkpoint.ts";
import { type HfConfig, readHfConfig, weightShards } from "./hf_config.ts";
import {
  readSafetensorsFile,
  type SafetensorsDtype,
  type TensorData,
  type TensorInfo,
} from "./safetensors.ts";
import { paramShapes } from "./transformer.ts";

export {
  HF_MODEL_TYPES,
  type HfConfig,
  type HfModelType,
  parseHfConfig,
  readHfConfig,
} from "./hf_config.ts";

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

/** The scalar head of a reward model, as transformers' `*ForSequenceClassification` names it. */
export const SCORE_HEAD = "score.weight";

/** Options of {@linkcode loadHfModel}. */
export interface LoadHfModelOptions {
  /**
   * The model's output: `"lm"`, a causal LM's (`lm_head.weight`, or the embedding when tied), or
   * `"score"`, a one-label sequence classifier's (`score.weight` [1, d] and no `lm_head`, as
   * transformers' `LlamaForSequenceClassification` and `Qwen2ForSequenceClassification` save a
   * reward model).
   *
   * @default {"lm"}
   */
  head?: "lm" | "score";
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
  options: LoadHfModelOptions = {},
): Promise<LoadedHfModel> {
  const hf = await readHfConfig(dir);
  const expected = hfParamShapes(hf.config);
  if (options.head === "score") {
    // transformers' *ForSequenceClassification: the base model and a bias-free score head.
    delete expected["lm_head.weight"];
    expected[SCORE_HEAD] = [1, hf.config.dModel];
  }
  const shards = await weightShards(dir);
  const weights: Record<string, TensorData> = {};
  const dtypes: Record<string, SafetensorsDtype> = {};
  const tied = hf.config.tiedEmbeddings;
  // A tied model's file may store the head anyway (Qwen3-0.6B's does): transformers ties it to
  // the embedding and never reads it, and so does giftwrap, once its shape is the embedding's.
  const tiedHead = tied && options.head !== "score";
  const skipped = (name: string) => isBuffer(name) || (tiedHead && name === "lm_head.weight");
  const why = (name: string) =>
    name === "lm_head.weight" && options.head === "score"
      ? "a sequence classifier (a reward model) has a score head, not an lm_head"
      : name === "lm_head.weight" && tied
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
      if (!Object.hasOwn(expected, name) && !skipped(name)) {
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
        if (tiedHead && name === "lm_head.weight") {
          const embedding = [hf.config.vocab, hf.config.dModel];
          if (shape.length !== 2 || shape.some((n, i) => n !== embedding[i])) {
            throw new Error(
              `${path}: tensor '${name}' has shape [${shape.join(", ")}], expected [${
                embedding.join(", ")
              }] (the embedding it is tied to)`,
            );
          }
        }
        if (skipped(name)) continue;
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
      if (skipped(name)) continue;
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
    parameters: Object.values(expected).reduce(
      (sum, shape) => sum + shape.reduce((a, b) => a * b, 1),
      0,
    ),
  };
}

/**
 * A model directory of either kind read in: a giftwrap checkpoint (its `config.json` has a
 * `giftwrap` section) or a Hugging Face one ({@linkcode loadHfModel}).
 *
 * @example
 * ```ts
 * const { config, weights } = await loadModelDir("runs/x/checkpoints/final", kernels.layout);
 * ```
 */
export async function loadModelDir(
  dir: string,
  layout: LinearLayout = "[in, out]",
): Promise<{ config: ModelConfig; weights: Record<string, TensorData> }> {
  const raw = await readJsonFile(`${dir}/config.json`) as { giftwrap?: unknown } | null;
  if (typeof raw === "object" && raw !== null && raw.giftwrap !== undefined) {
    const { config, weights } = await loadCheckpoint(dir, layout);
    return { config, weights };
  }
  const { config, weights } = await loadHfModel(dir, layout);
  return { config, weights };
}
