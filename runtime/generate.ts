/**
 * Generating text from a model directory, for a user to try a model before and after training
 * (`deno task generate`): a Hugging Face model directory (`config.json`, safetensors and
 * `tokenizer.json`), a giftwrap checkpoint (its character tokenizer stored in `config.json`), a
 * PEFT LoRA adapter directory (applied to the model directory its `adapter_config.json` names as
 * `base_model_name_or_path`), or a run directory, which means the model it saved to serve
 * (`model/`), else its LoRA adapter (`adapter/`), else its final checkpoint (`checkpoints/final`).
 *
 * Choices, where `transformers` and llama.cpp differ:
 * - temperature 0 (greedy, no random draw) is the default, so trying a model gives the same text
 *   every time; a temperature above 0 samples with top-k then top-p from a seeded generator (seed
 *   0 unless given), so a sampled generation is reproducible too;
 * - a plain prompt is encoded with the tokenizer's special tokens (`<s>` first where the tokenizer
 *   adds one, as `transformers`' `encode` does); a chat prompt is rendered by the model's chat
 *   template, which writes its own, and encoded without them (as `apply_chat_template` does);
 * - the completion ends at a stop id (the tokenizer's: `generation_config.json`'s `eos_token_id`
 *   and the end token) or at the begin token: a model that emits its begin token has started a
 *   new document (stories260K ends each story so, and llama2.c stops there). The stop id is kept
 *   in the completion's ids and left out of its text. Otherwise it ends after `maxNewTokens`, or
 *   when the model's context is full.
 *
 * @module
 */

import { tf, useBackend } from "./engine/backend.ts";
import { loadCheckpoint, readJsonFile, weightsToTensors } from "./engine/model/checkpoint.ts";
import { loadHfModel } from "./engine/model/hf.ts";
import { loadHfTokenizer } from "./engine/model/hf_tokenizer.ts";
import { renderChat } from "./engine/model/chat_template.ts";
import { charTokenizer, completionStopIds, type Tokenizer } from "./engine/model/tokenizer.ts";
import type { ModelConfig, Params } from "./engine/model/config.ts";
import type { ChatTemplate } from "./engine/model/chat_template.ts";
import type { TensorData } from "./engine/model/safetensors.ts";
import { Rng } from "./engine/random.ts";
import { disposeLoraAdapters, loadLoraAdapter, mergeLora } from "./engine/model/lora.ts";
import { sampleRow } from "./rl/sample_token.ts";

/**
 * Options of {@linkcode generate}.
 *
 * @example
 * ```ts
 * const options: GenerateOptions = { prompt: "Once upon a time", maxNewTokens: 60 };
 * ```
 */
export interface GenerateOptions {
  /** The prompt: plain text, or the user's message with `chat`. */
  prompt: string;
  /** Render the prompt through the model's chat template (refused for a model without one). */
  chat?: boolean;
  /** A system prompt for the chat template; needs `chat`. */
  system?: string;
  /** The most tokens to generate. @default 256 */
  maxNewTokens?: number;
  /** Divides the logits; 0 is greedy (argmax). @default 0 */
  temperature?: number;
  /** Keeps the smallest set of most likely tokens with probability >= topP; 1 turns it off. @default 1 */
  topP?: number;
  /** Keeps only the k most likely tokens; 0 turns it off. @default 0 */
  topK?: number;
  /** Seeds the sampler (unused when greedy). @default 0 */
  seed?: number;
}

/**
 * What {@linkcode generate} produced.
 *
 * @example
 * ```ts
 * const { completionIds, text, stopped }: Generation = await generate("models/stories260K", {
 *   prompt: "Once upon a time",
 * });
 * ```
 */
export interface Generation {
  /** The prompt's ids, as the model read them (`<s>` first where the tokenizer adds it). */
  promptIds: number[];
  /** The generated ids, the stop id last when it stopped at one. */
  completionIds: number[];
  /**
   * The text the generated ids (without the stop id) add to the prompt's: a word's leading
   * space is kept (`"Once upon a"` → `" time, …"`), as `transformers`' pipeline gives it.
   */
  text: string;
  /** `"stop-id"`: it emitted a stop id; `"length"`: it reached `maxNewTokens` or the context. */
  stopped: "stop-id" | "length";
}

/**
 * A mistake in what was asked (a path, a model, a tokenizer, a prompt, an option): one line, for
 * the user; the command line exits 2 with it.
 *
 * @example
 * ```ts
 * try {
 *   await generate("models/none", { prompt: "Hi" });
 * } catch (e) {
 *   if (e instanceof GenerateError) console.error(e.message); // "Cannot generate from 'models/none' as it does not exist"
 * }
 * ```
 */
export class GenerateError extends Error {
  /** An error with the one-line `message`. */
  constructor(message: string) {
    super(message);
    this.name = "GenerateError";
  }
}

/** A model ready to run: its weights as float32 data, its dimensions and its tokenizer. */
interface Model {
  dir: string;
  config: ModelConfig;
  weights: Record<string, TensorData>;
  tokenizer: Tokenizer;
  chatTemplate: ChatTemplate | null;
}

/** Whether `path` exists. */
async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

/** What `generate` reads: a model directory, and a LoRA adapter directory to apply to it. */
interface Source {
  dir: string;
  adapter: string | null;
}

/**
 * The model directory `path` names: itself when it holds a `config.json`; for a PEFT adapter
 * directory, the base model it names; for a run directory (one with `run.json`), the model it
 * saved to serve, its adapter, or its final checkpoint.
 */
async function modelDir(path: string): Promise<Source> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new GenerateError(`Cannot generate from '${path}' as it does not exist`);
    }
    throw e;
  }
  if (!info.isDirectory) {
    throw new GenerateError(
      `Cannot generate from '${path}' as it is not a directory: give a model directory or a run directory`,
    );
  }
  const dir = path.replace(/\/+$/, "") || "/";
  if (await exists(`${dir}/config.json`)) return { dir, adapter: null };
  if (await exists(`${dir}/adapter_config.json`)) return await adapterBase(dir);
  if (await exists(`${dir}/run.json`)) {
    // A Hugging Face policy's run saves its model to serve in model/ (with LoRA, when asked to
    // merge), a LoRA run its adapter in adapter/; any other run, its final weights.
    if (await exists(`${dir}/model/config.json`)) return { dir: `${dir}/model`, adapter: null };
    if (await exists(`${dir}/adapter/adapter_config.json`)) {
      return await adapterBase(`${dir}/adapter`);
    }
    const final = `${dir}/checkpoints/final`;
    if (await exists(`${final}/config.json`)) return { dir: final, adapter: null };
    throw new GenerateError(
      `Cannot generate from the run directory '${dir}' as it has no final checkpoint ` +
        `(${final}): the run has not finished`,
    );
  }
  throw new GenerateError(
    `Cannot generate from '${dir}' as it has no config.json: give a Hugging Face model ` +
      `directory, a checkpoint or a run directory`,
  );
}

/** The PEFT adapter directory `adapter` and the local model directory it names as its base. */
async function adapterBase(adapter: string): Promise<Source> {
  const raw = await readJsonFile(`${adapter}/adapter_config.json`) as
    | { base_model_name_or_path?: unknown }
    | null;
  const base = raw?.base_model_name_or_path;
  if (typeof base !== "string" || !(await exists(`${base}/config.json`))) {
    throw new GenerateError(
      `Cannot generate from the LoRA adapter '${adapter}' as its adapter_config.json's ` +
        `base_model_name_or_path must be a local model directory: current value is ` +
        JSON.stringify(base ?? null),
    );
  }
  return { dir: base.replace(/\/+$/, "") || "/", adapter };
}

/**
 * The model of `dir`: a giftwrap checkpoint of the character tokenizer when its `config.json`
 * says so (`giftwrap.tokenizer.kind`), else a Hugging Face directory with its `tokenizer.json`.
 */
async function loadModel(dir: string, layout: "[in, out]" | "[out, in]"): Promise<Model> {
  const raw = await readJsonFile(`${dir}/config.json`) as
    | { giftwrap?: { tokenizer?: { kind?: unknown } } }
    | null;
  if (raw?.giftwrap?.tokenizer?.kind === "char") {
    const { config, alphabet, weights } = await loadCheckpoint(dir, layout);
    return { dir, config, weights, tokenizer: charTokenizer(alphabet), chatTemplate: null };
  }
  const { config, weights } = await loadHfModel(dir, layout);
  const tokenizer = await loadHfTokenizer(dir);
  if (tokenizer.vocabSize > config.vocab) {
    throw new GenerateError(
      `Cannot generate from '${dir}' as its tokenizer has ${tokenizer.vocabSize} ids but ` +
        `config.json's vocab_size is ${config.vocab}`,
    );
  }
  return { dir, config, weights, tokenizer, chatTemplate: tokenizer.chatTemplate };
}

/** `value` checked against `ok`, or a one-line error naming the option. */
function checked(name: string, value: number, ok: (v: number) => boolean, want: string): number {
  if (!ok(value)) {
    throw new GenerateError(
      `Cannot generate as '${name}' must be ${want}: current value is ${value}`,
    );
  }
  return value;
}

/** The options with their defaults, each checked. */
function settings(options: GenerateOptions) {
  const whole = (min: number) => (v: number) => Number.isSafeInteger(v) && v >= min;
  return {
    maxNewTokens: checked(
      "maxNewTokens",
      options.maxNewTokens ?? 256,
      whole(1),
      "a whole number >= 1",
    ),
    temperature: checked(
      "temperature",
      options.temperature ?? 0,
      (v) => Number.isFinite(v) && v >= 0,
      "a number >= 0",
    ),
    topP: checked("topP", options.topP ?? 1, (v) => v > 0 && v <= 1, "a number in (0, 1]"),
    topK: checked("topK", options.topK ?? 0, whole(0), "a whole number >= 0"),
    seed: checked("seed", options.seed ?? 0, Number.isSafeInteger, "a safe integer"),
  };
}

/** The prompt's ids: rendered by the chat template with `chat`, else the plain text. */
function promptIds(model: Model, options: GenerateOptions): number[] {
  const { tokenizer } = model;
  let ids: number[];
  if (options.chat) {
    if (model.chatTemplate === null) {
      throw new GenerateError(
        `Cannot use --chat with '${model.dir}' as it has no chat template (a base model): ` +
          `give the prompt as plain text`,
      );
    }
    const text = renderChat(model.chatTemplate, options.prompt, {
      ...(options.system === undefined ? {} : { system: options.system }),
    });
    ids = tokenizer.encode(text);
  } else {
    if (options.system !== undefined) {
      throw new GenerateError("Cannot use a system prompt without --chat");
    }
    ids = tokenizer.encode(options.prompt, { addSpecialTokens: true });
  }
  if (ids.length === 0) {
    throw new GenerateError(
      `Cannot generate from an empty prompt with '${model.dir}' as its tokenizer adds no begin ` +
        `token: give a prompt`,
    );
  }
  if (ids.length >= model.config.contextLength) {
    throw new GenerateError(
      `Cannot generate as the prompt's ${ids.length} tokens leave no room in the model's ` +
        `context of ${model.config.contextLength}`,
    );
  }
  return ids;
}

/**
 * Generates a completion of `options.prompt` with the model at `path` (a Hugging Face model
 * directory, a giftwrap checkpoint, or a run directory's final checkpoint) on the `cpu` backend,
 * whose kernel set runs the decoder through OpenBLAS where it loads. Greedy unless
 * `options.temperature` is above 0; see the module doc for how a prompt is encoded and where a
 * completion stops.
 *
 * @throws {GenerateError} for a path, model, tokenizer, prompt or option that cannot be used (one
 * line).
 * @example
 * ```ts
 * const out = await generate("models/stories260K", { prompt: "Once upon a time", maxNewTokens: 60 });
 * out.text; // ", there was a little girl named Lily. She loved to play outside in the park. …"
 * const sampled = await generate("models/stories260K", { prompt: "", temperature: 0.8, seed: 1 });
 * ```
 */
export async function generate(path: string, options: GenerateOptions): Promise<Generation> {
  const { maxNewTokens, temperature, topP, topK, seed } = settings(options);
  const { dir, adapter } = await modelDir(path);
  const { kernels } = await useBackend("cpu");
  let model: Model;
  let prompt: number[];
  let lora: Awaited<ReturnType<typeof loadLoraAdapter>> | null = null;
  try {
    model = await loadModel(dir, kernels.layout);
    prompt = promptIds(model, options);
    if (adapter !== null) {
      lora = await loadLoraAdapter(adapter, model.config, { layout: kernels.layout });
    }
  } catch (e) {
    if (e instanceof GenerateError) throw e;
    throw new GenerateError((e as Error).message.split("\n")[0]!);
  }
  const { config, tokenizer } = model;
  const stopIds = new Set(completionStopIds(tokenizer));
  if (tokenizer.bosId !== null) stopIds.add(tokenizer.bosId);
  const steps = Math.min(maxNewTokens, config.contextLength - prompt.length);
  const sampling = { temperature, topK, topP };
  const rng = new Rng(seed).fork("generate");

  const base: Params = weightsToTensors(model.weights, false);
  // A LoRA adapter is merged into the base's weights (W + s·A·B) for the decoder.
  const params: Params = lora === null ? base : mergeLora(base, lora);
  if (lora !== null) disposeLoraAdapters(lora);
  const completion: number[] = [];
  let stopped: Generation["stopped"] = "length";
  try {
    // The last token generated is never fed back, so the cache needs one position less.
    const decoder = await kernels.decoder(params, config, 1, [0], prompt.length + steps - 1);
    try {
      let logits = await decoder.next(Int32Array.from(prompt), prompt.length);
      for (let t = 0; t < steps; t++) {
        const { token } = sampleRow(logits, 0, config.vocab, sampling, rng);
        completion.push(token);
        if (stopIds.has(token)) {
          stopped = "stop-id";
          break;
        }
        if (t < steps - 1) logits = await decoder.next(Int32Array.of(token), 1);
      }
    } finally {
      decoder.dispose();
    }
  } finally {
    tf.dispose([...new Set([...Object.values(params), ...Object.values(base)])]);
  }
  const shown = stopped === "stop-id" ? completion.slice(0, -1) : completion;
  return {
    promptIds: prompt,
    completionIds: completion,
    text: completionText(tokenizer, prompt, shown),
    stopped,
  };
}

/**
 * The text `completion` adds to `prompt`: the text of both less the prompt's, as `transformers`'
 * text-generation pipeline cuts it, so a word's leading space survives (a sentencepiece decoder
 * drops the space of the first token it decodes: " time" alone is "time"). Where the prompt's
 * text is not a prefix of the whole, the completion's own text.
 */
function completionText(tokenizer: Tokenizer, prompt: number[], completion: number[]): string {
  const before = tokenizer.decode(prompt);
  const whole = tokenizer.decode([...prompt, ...completion]);
  return whole.startsWith(before) ? whole.slice(before.length) : tokenizer.decode(completion);
}
