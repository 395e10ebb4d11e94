/**
 * Checkpoints: a directory with `model.safetensors` (Hugging Face names and layout, linear weights
 * [out, in], turned to and from the kernel set's `layout` here) and a `config.json` in the shape of a Hugging Face `LlamaConfig`, plus giftwrap's own
 * fields (the tokenizer) under `"giftwrap"`. A directory is written beside its final name and
 * renamed into place, so a crash never leaves a half-written checkpoint under that name.
 *
 * @module
 */

import { tf } from "../tf.ts";
import type { LinearLayout } from "../kernels/types.ts";
import type { ModelConfig } from "./config.ts";
import { encodeSafetensors, readSafetensorsFile, type TensorData } from "./safetensors.ts";
import { readJsonFile } from "./_regular_file.ts";
import { isLinear, paramShapes } from "./transformer.ts";
import { parseHfConfig } from "./hf_config.ts";

export { MAX_JSON_BYTES, readJsonFile } from "./_regular_file.ts";

/** `config.json`: Hugging Face's Llama fields, and giftwrap's own. */
export interface CheckpointConfig {
  architectures: ["LlamaForCausalLM"];
  model_type: "llama";
  vocab_size: number;
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads: number;
  head_dim: number;
  max_position_embeddings: number;
  rope_theta: number;
  rms_norm_eps: number;
  tie_word_embeddings: boolean;
  torch_dtype: "float32";
  giftwrap: {
    format: "giftwrap.checkpoint/1";
    /** The character tokenizer's alphabet; a Hugging Face policy's tokenizer is its source's. */
    tokenizer: { kind: "char"; alphabet: string } | { kind: "hf" };
    /** What a Hugging Face source's architecture adds to Llama's (absent for Llama's own). */
    model?: Pick<ModelConfig, "attentionBias" | "qkNorm" | "ropeScaling">;
  };
}

/**
 * The `config.json` of a model: `alphabet` is the character tokenizer's, null for a Hugging Face
 * policy (whose tokenizer files are its source's).
 */
export function checkpointConfig(config: ModelConfig, alphabet: string | null): CheckpointConfig {
  const variants = {
    ...(config.attentionBias ? { attentionBias: true } : {}),
    ...(config.qkNorm ? { qkNorm: true } : {}),
    ...(config.ropeScaling ? { ropeScaling: { ...config.ropeScaling } } : {}),
  };
  return {
    architectures: ["LlamaForCausalLM"],
    model_type: "llama",
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
    torch_dtype: "float32",
    giftwrap: {
      format: "giftwrap.checkpoint/1",
      tokenizer: alphabet === null ? { kind: "hf" } : { kind: "char", alphabet },
      ...(Object.keys(variants).length === 0 ? {} : { model: variants }),
    },
  };
}

/**
 * The model config stored in a `config.json`. A Hugging Face policy's checkpoint holds its
 * source's `config.json`, read as `transformers` reads it: a field it may leave out (Qwen2's
 * `head_dim`, a newer file's `rope_theta` inside `rope_parameters`) takes the library's default.
 */
export function configFromCheckpoint(c: CheckpointConfig): ModelConfig {
  if (c.giftwrap?.tokenizer?.kind === "hf") return parseHfConfig(c, "config.json").config;
  return {
    vocab: c.vocab_size,
    dModel: c.hidden_size,
    ffnDim: c.intermediate_size,
    layers: c.num_hidden_layers,
    heads: c.num_attention_heads,
    kvHeads: c.num_key_value_heads,
    headDim: c.head_dim,
    contextLength: c.max_position_embeddings,
    ropeTheta: c.rope_theta,
    normEps: c.rms_norm_eps,
    tiedEmbeddings: c.tie_word_embeddings,
    ...c.giftwrap?.model,
  };
}

/** [rows, cols] → [cols, rows] of a row-major matrix. */
function transpose2d(data: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(data.length);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) out[c * rows + r] = data[r * cols + c]!;
  }
  return out;
}

/**
 * Tensors as safetensors data, linear weights turned from `layout` (the kernel set's) to HF's
 * [out, in]; with `layout` false every tensor is written as it is (an optimiser's moments).
 */
export async function toTensorData(
  params: Record<string, tf.Tensor>,
  layout: LinearLayout | false = "[in, out]",
): Promise<Record<string, TensorData>> {
  const out: Record<string, TensorData> = {};
  for (const [name, t] of Object.entries(params)) {
    const data = (await t.data()) as Float32Array;
    if (layout === "[in, out]" && isLinear(name) && t.rank === 2) {
      const [rows, cols] = t.shape as [number, number];
      out[name] = { dtype: "F32", shape: [cols, rows], data: transpose2d(data, rows, cols) };
    } else {
      out[name] = { dtype: "F32", shape: [...t.shape], data: Float32Array.from(data) };
    }
  }
  return out;
}

/**
 * Writes `files` (name → bytes or text) as directory `dir`, atomically: into a sibling temporary
 * directory first, then renamed over `dir` (a previous `dir` is removed only after that).
 */
export async function writeDirAtomic(
  dir: string,
  files: Record<string, Uint8Array | string>,
): Promise<void> {
  const tmp = `${dir}.tmp-${crypto.randomUUID().slice(0, 8)}`;
  await Deno.mkdir(tmp, { recursive: true });
  for (const [name, content] of Object.entries(files)) {
    if (typeof content === "string") await Deno.writeTextFile(`${tmp}/${name}`, content);
    else await Deno.writeFile(`${tmp}/${name}`, content);
  }
  let old: string | null = null;
  try {
    await Deno.stat(dir);
    old = `${dir}.old-${crypto.randomUUID().slice(0, 8)}`;
    await Deno.rename(dir, old);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  await Deno.rename(tmp, dir);
  if (old) await Deno.remove(old, { recursive: true });
}

/** A model's checkpoint files: `model.safetensors` and `config.json`. */
export async function checkpointFiles(
  params: Record<string, tf.Tensor>,
  config: ModelConfig,
  alphabet: string | null,
  layout: LinearLayout = "[in, out]",
): Promise<Record<string, Uint8Array | string>> {
  const tensors = await toTensorData(params, layout);
  return {
    "model.safetensors": encodeSafetensors(tensors, { format: "pt" }),
    "config.json": JSON.stringify(checkpointConfig(config, alphabet), null, 2) + "\n",
  };
}

/** Options of `saveCheckpoint()`. */
export interface SaveCheckpointOptions {
  /** The layout of the linear weights in `params` (`KernelSet.layout`). @default "[in, out]" */
  layout?: LinearLayout;
  /** Files written alongside, name → bytes or text. @default {} */
  extra?: Record<string, Uint8Array | string>;
}

/**
 * Saves a model as a checkpoint directory.
 *
 * @example
 * ```ts
 * await saveCheckpoint("out/model", params, config, tokenizer.alphabet, { layout: kernels.layout });
 * ```
 */
export async function saveCheckpoint(
  dir: string,
  params: Record<string, tf.Tensor>,
  config: ModelConfig,
  alphabet: string | null,
  options: SaveCheckpointOptions = {},
): Promise<void> {
  const files = await checkpointFiles(params, config, alphabet, options.layout);
  await writeDirAtomic(dir, { ...files, ...options.extra });
}

/**
 * A checkpoint read back: its config, tokenizer alphabet and weights (in the layout asked for).
 *
 * @example
 * ```ts
 * const { config, alphabet, weights }: LoadedCheckpoint = await loadCheckpoint(dir);
 * const tokenizer = charTokenizer(alphabet);
 * ```
 */
export interface LoadedCheckpoint {
  config: ModelConfig;
  alphabet: string;
  /** Weights by name, shaped as `paramShapes(config, layout)`. */
  weights: Record<string, TensorData>;
}

/**
 * Reads a checkpoint directory written by `saveCheckpoint` (a run's are under
 * `<run dir>/checkpoints/`), linear weights turned to `layout` (the kernel set's).
 *
 * @example
 * ```ts
 * const loaded = await loadCheckpoint("runs/addition-gift-…/checkpoints/final", kernels.layout);
 * const params = weightsToTensors(loaded.weights, false);
 * ```
 */
export async function loadCheckpoint(
  dir: string,
  layout: LinearLayout = "[in, out]",
): Promise<LoadedCheckpoint> {
  const raw = await readJsonFile(`${dir}/config.json`) as CheckpointConfig;
  const config = configFromCheckpoint(raw);
  const { tensors } = await readSafetensorsFile(`${dir}/model.safetensors`);
  const onDisk: Record<string, TensorData> = {};
  for (const [name, { shape }] of Object.entries(paramShapes(config, "[out, in]"))) {
    const t = tensors[name];
    if (!t) throw new Error(`Cannot load checkpoint ${dir}: model.safetensors lacks '${name}'`);
    if (t.shape.join(",") !== shape.join(",")) {
      throw new Error(
        `Cannot load checkpoint ${dir}: '${name}' has shape [${t.shape}], expected [${shape}]`,
      );
    }
    onDisk[name] = t;
  }
  const tokenizer = raw.giftwrap?.tokenizer;
  const alphabet = tokenizer?.kind === "char" ? tokenizer.alphabet ?? "" : "";
  return { config, alphabet, weights: inLayout(onDisk, layout) };
}

/**
 * Weights as a checkpoint stores them (Hugging Face's `[out, in]` linear weights) in `layout`, a
 * kernel set's: for `"[in, out]"` the linear weights are transposed, the rest kept as they are.
 *
 * @example
 * ```ts
 * const { weights } = await loadCheckpoint(dir, "[out, in]"); // as on disk
 * const params = weightsToTensors(inLayout(weights, kernels.layout), true);
 * ```
 */
export function inLayout(
  weights: Record<string, TensorData>,
  layout: LinearLayout,
): Record<string, TensorData> {
  if (layout === "[out, in]") return weights;
  return Object.fromEntries(
    Object.entries(weights).map(([name, t]) => {
      if (!isLinear(name) || t.shape.length !== 2) return [name, t];
      const [rows, cols] = t.shape as [number, number];
      return [name, { dtype: "F32", shape: [cols, rows], data: transpose2d(t.data, rows, cols) }];
    }),
  );
}

/**
 * Loaded weights as tensors: trainable variables or plain (frozen) tensors.
 *
 * @example
 * ```ts
 * const { weights } = await loadCheckpoint(dir);
 * const frozen = weightsToTensors(weights, false); // a reference policy
 * const trainable = weightsToTensors(weights, true); // a policy to train on
 * ```
 */
export function weightsToTensors(
  weights: Record<string, TensorData>,
  trainable: true,
): Record<string, tf.Variable>;
export function weightsToTensors(
  weights: Record<string, TensorData>,
  trainable: false,
): Record<string, tf.Tensor>;
export function weightsToTensors(
  weights: Record<string, TensorData>,
  trainable: boolean,
): Record<string, tf.Tensor> {
  return Object.fromEntries(
    Object.entries(weights).map(([name, { shape, data }]) => {
      const t = tf.tensor(data, shape, "float32");
      if (!trainable) return [name, t];
      const v = tf.variable(t, true);
      t.dispose();
      return [name, v];
    }),
  );
}
