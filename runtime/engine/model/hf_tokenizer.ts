/**
 * A Hugging Face tokenizer directory as a {@linkcode Tokenizer}: `tokenizer.json` tokenizes
 * (through `@huggingface/tokenizers`), `tokenizer_config.json` names the special tokens (else
 * an older checkpoint's `special_tokens_map.json`), says
 * whether `<bos>`/`<eos>` are added (`add_bos_token`, `add_eos_token`) and holds the chat
 * template, and `generation_config.json` adds the ids that end a generation.
 *
 * What follows `transformers`: a config's `added_tokens_decoder` decides which tokens are special
 * (skipped by `decode`); `add_bos_token`/`add_eos_token` override what `tokenizer.json`'s
 * post-processor adds, as `LlamaTokenizerFast` does, and without them the post-processor decides;
 * a tokenizer without a pad token pads with its end token, as TRL does; a `chat_template.jinja`
 * beside the config is the template, before the config's `chat_template`.
 *
 * Every file is read as a regular file within a size limit, and every bad field is refused in one
 * line naming the file and the field.
 *
 * @module
 */

import { Tokenizer as HfLibTokenizer } from "@huggingface/tokenizers";
import { type ChatTemplate, chatTemplate } from "./chat_template.ts";
import type { DecodeOptions, EncodeOptions, Tokenizer } from "./tokenizer.ts";
import { readRegularFile } from "./_regular_file.ts";

/** Largest `tokenizer.json` read: Gemma's, the largest in common use, is 33 MB. */
export const MAX_TOKENIZER_JSON_BYTES = 64 * 2 ** 20;
/** Largest `tokenizer_config.json`, `generation_config.json` or `chat_template.jinja` read. */
export const MAX_TOKENIZER_CONFIG_BYTES = 16 * 2 ** 20;

/**
 * A Hugging Face tokenizer directory, loaded by {@linkcode loadHfTokenizer}.
 *
 * @example
 * ```ts
 * const tok: HfTokenizer = await loadHfTokenizer("models/stories260K");
 * tok.bosToken; // "<s>"
 * ```
 */
export interface HfTokenizer extends Tokenizer {
  kind: "hf";
  /** The directory it was loaded from. */
  dir: string;
  /** The begin token's text (`<s>`), null when there is none. */
  bosToken: string | null;
  /** The end token's text (`</s>`, `<|im_end|>`), null when there is none. */
  eosToken: string | null;
  /** The pad token's text: the config's `pad_token`, or the end token's (see `padSource`). */
  padToken: string | null;
  /** The ids `decode` skips with `skipSpecialTokens`. */
  specialIds: ReadonlySet<number>;
  /** The model's chat template, null for a model without one (a base model). */
  chatTemplate: ChatTemplate | null;
  /** The id of the token written `token`, undefined when the vocabulary lacks it. */
  tokenToId(token: string): number | undefined;
}

/** `value` as a readable excerpt for an error message. */
function shown(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

/** True when `e` says a file does not exist. */
function isNotFound(e: unknown): boolean {
  return e instanceof Deno.errors.NotFound;
}

/** The text of the regular file at `path`, or null when there is none and `optional`. */
async function readText(path: string, maxBytes: number, optional: boolean): Promise<string | null> {
  let bytes: Uint8Array;
  try {
    bytes = await readRegularFile(path, maxBytes);
  } catch (e) {
    if (isNotFound(e)) {
      if (optional) return null;
      throw new Error(`Cannot load tokenizer as '${path}' does not exist`);
    }
    throw e;
  }
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new Error(`Cannot load tokenizer as '${path}' is not UTF-8 text`);
  }
}

/** The JSON object in the file at `path`, or null when there is none and `optional`. */
async function readJsonObject(
  path: string,
  maxBytes: number,
  optional: boolean,
): Promise<Record<string, unknown> | null> {
  const text = await readText(path, maxBytes, optional);
  if (text === null) return null;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new Error(`Cannot load tokenizer as '${path}' is not JSON: ${(e as Error).message}`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new Error(
      `Cannot load tokenizer as '${path}' must hold a JSON object: it holds ${
        Array.isArray(value) ? "a list" : shown(value)
      }`,
    );
  }
  return value as Record<string, unknown>;
}

/** A token field of `tokenizer_config.json` (`"<s>"`, `{ "content": "<s>", ... }` or null). */
function tokenText(config: Record<string, unknown>, field: string, path: string): string | null {
  const value = config[field];
  if (value === undefined || value === null) return null;
  if (typeof value === "string") return value;
  const content = typeof value === "object" ? (value as { content?: unknown }).content : undefined;
  if (typeof content === "string") return content;
  throw new Error(
    `Cannot load tokenizer as '${path}' field '${field}' must be a token (a string or ` +
      `{ "content": string }) or null: current value is ${shown(value)}`,
  );
}

/** A boolean field of `tokenizer_config.json`, undefined when absent. */
function flag(config: Record<string, unknown>, field: string, path: string): boolean | undefined {
  const value = config[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value === "boolean") return value;
  throw new Error(
    `Cannot load tokenizer as '${path}' field '${field}' must be true or false: current value ` +
      `is ${shown(value)}`,
  );
}

/** An `added_tokens` entry of `tokenizer.json`, as far as this loader reads it. */
interface AddedToken {
  id: number;
  content: string;
  special?: boolean;
  [other: string]: unknown;
}

/**
 * `tokenizer.json`'s added tokens, with the config's `added_tokens_decoder` applied: its
 * `special` flags win, and a token it adds that `tokenizer.json` lacks is added, as
 * `transformers` does; an id whose text the two files disagree on is refused.
 */
function addedTokens(
  json: Record<string, unknown>,
  config: Record<string, unknown>,
  paths: { json: string; config: string },
): AddedToken[] {
  const raw = json.added_tokens ?? [];
  if (!Array.isArray(raw)) {
    throw new Error(
      `Cannot load tokenizer as '${paths.json}' field 'added_tokens' must be a list: current ` +
        `value is ${shown(raw)}`,
    );
  }
  const tokens = raw.map((t: unknown, i) => {
    const { id, content } = (t ?? {}) as { id?: unknown; content?: unknown };
    if (!Number.isSafeInteger(id) || (id as number) < 0 || typeof content !== "string") {
      throw new Error(
        `Cannot load tokenizer as '${paths.json}' field 'added_tokens[${i}]' must be ` +
          `{ "id": integer >= 0, "content": string, ... }: current value is ${shown(t)}`,
      );
    }
    return { ...(t as AddedToken) };
  });
  const decoder = config.added_tokens_decoder ?? {};
  if (typeof decoder !== "object" || decoder === null || Array.isArray(decoder)) {
    throw new Error(
      `Cannot load tokenizer as '${paths.config}' field 'added_tokens_decoder' must be an ` +
        `object of id: token: current value is ${shown(decoder)}`,
    );
  }
  for (const [key, entry] of Object.entries(decoder)) {
    const field = `added_tokens_decoder.${key}`;
    const id = Number(key);
    const { content, special } = (entry ?? {}) as { content?: unknown; special?: unknown };
    if (
      !/^\d+$/.test(key) || !Number.isSafeInteger(id) || typeof content !== "string" ||
      (special !== undefined && typeof special !== "boolean")
    ) {
      throw new Error(
        `Cannot load tokenizer as '${paths.config}' field '${field}' must be an id with ` +
          `{ "content": string, "special": boolean }: current value is ${shown(entry)}`,
      );
    }
    const known = tokens.find((t) => t.id === id);
    if (known && known.content !== content) {
      throw new Error(
        `Cannot load tokenizer as '${paths.config}' field '${field}' is ${shown(content)} but ` +
          `'${paths.json}' gives id ${id} to ${shown(known.content)}`,
      );
    }
    if (known) known.special = special ?? known.special ?? false;
    else {
      tokens.push({
        id,
        content,
        special: special ?? false,
        single_word: false,
        lstrip: false,
        rstrip: false,
        normalized: !(special ?? false),
      });
    }
  }
  return tokens;
}

/** The ids in `generation_config.json`'s `eos_token_id` (a number or a list of them). */
function generationStopIds(
  generation: Record<string, unknown> | null,
  vocabSize: number,
  path: string,
): number[] {
  const value = generation?.eos_token_id;
  if (value === undefined || value === null) return [];
  const ids = Array.isArray(value) ? value : [value];
  for (const id of ids) {
    if (!Number.isSafeInteger(id) || id < 0 || id >= vocabSize) {
      throw new Error(
        `Cannot load tokenizer as '${path}' field 'eos_token_id' must be an id in 0..${
          vocabSize - 1
        } or a list of them: current value is ${shown(value)}`,
      );
    }
  }
  return ids as number[];
}

/** The chat template: `chat_template.jinja`, else the config's `chat_template`, else none. */
async function readChatTemplate(
  dir: string,
  config: Record<string, unknown>,
  configPath: string,
  specialTokens: Record<string, string>,
): Promise<ChatTemplate | null> {
  const jinjaPath = `${dir}/chat_template.jinja`;
  const jinja = await readText(jinjaPath, MAX_TOKENIZER_CONFIG_BYTES, true);
  if (jinja !== null) return chatTemplate(jinja, { specialTokens, origin: `'${jinjaPath}'` });
  const value = config.chat_template;
  if (value === undefined || value === null) return null;
  const origin = `'${configPath}' field 'chat_template'`;
  if (typeof value === "string") return chatTemplate(value, { specialTokens, origin });
  const named = Array.isArray(value)
    ? value.map((t: unknown) => t as { name?: unknown; template?: unknown })
    : null;
  if (named?.every((t) => typeof t?.name === "string" && typeof t.template === "string")) {
    const chosen = named.find((t) => t.name === "default");
    if (!chosen) {
      throw new Error(
        `Cannot load tokenizer as ${origin} has no template named "default": it has ${
          named.map((t) => shown(t.name)).join(", ") || "none"
        }`,
      );
    }
    return chatTemplate(chosen.template as string, {
      specialTokens,
      origin: `${origin} "default"`,
    });
  }
  throw new Error(
    `Cannot load tokenizer as ${origin} must be a template or a list of ` +
      `{ "name", "template" }: current value is ${shown(value)}`,
  );
}

/**
 * The tokenizer of the Hugging Face model directory `dir`: `tokenizer.json` is required;
 * `tokenizer_config.json`, `generation_config.json` and `chat_template.jinja` are read when
 * present. A missing or malformed file, or a field of the wrong kind, is refused in one line
 * naming the file and the field.
 *
 * @example
 * ```ts
 * const tok = await loadHfTokenizer("models/stories260K");
 * tok.encode("Once upon a time", { addSpecialTokens: true }); // [1, 403, 407, 261, 378]
 * tok.decode([1, 403, 407, 261, 378]); // "Once upon a time"
 * tok.padSource; // "eos_token": it has no pad token
 * ```
 */
export async function loadHfTokenizer(dir: string): Promise<HfTokenizer> {
  const paths = {
    json: `${dir}/tokenizer.json`,
    config: `${dir}/tokenizer_config.json`,
    map: `${dir}/special_tokens_map.json`,
    generation: `${dir}/generation_config.json`,
  };
  // 1) the files
  const json = (await readJsonObject(paths.json, MAX_TOKENIZER_JSON_BYTES, false))!;
  const config = (await readJsonObject(paths.config, MAX_TOKENIZER_CONFIG_BYTES, true)) ?? {};
  const map = await readJsonObject(paths.map, MAX_TOKENIZER_CONFIG_BYTES, true);
  const generation = await readJsonObject(paths.generation, MAX_TOKENIZER_CONFIG_BYTES, true);
  if (typeof json.model !== "object" || json.model === null) {
    throw new Error(
      `Cannot load tokenizer as '${paths.json}' field 'model' must be an object: current value ` +
        `is ${shown(json.model)}`,
    );
  }

  // 2) the library's tokenizer, with the config's added tokens
  let lib: HfLibTokenizer;
  try {
    lib = new HfLibTokenizer({ ...json, added_tokens: addedTokens(json, config, paths) }, config);
  } catch (e) {
    throw new Error(
      `Cannot load tokenizer from '${paths.json}': ${(e as Error).message.replace(/\s+/g, " ")}`,
    );
  }
  let vocabSize = 0;
  for (const id of lib.get_vocab(true).values()) vocabSize = Math.max(vocabSize, id + 1);
  const specialIds = new Set(
    [...lib.get_added_tokens_decoder()].filter(([, t]) => t.special).map(([id]) => id),
  );

  // 3) special tokens by name, each in the vocabulary: the config's, else (older checkpoints)
  // special_tokens_map.json's
  const textOf = (field: string): { token: string | null; path: string } => {
    const token = tokenText(config, field, paths.config);
    if (token !== null || map === null) return { token, path: paths.config };
    return { token: tokenText(map, field, paths.map), path: paths.map };
  };
  const idOf = (field: string): { token: string | null; id: number | null } => {
    const { token, path } = textOf(field);
    if (token === null) return { token, id: null };
    const id = lib.token_to_id(token);
    if (id === undefined) {
      throw new Error(
        `Cannot load tokenizer as '${path}' field '${field}' is ${shown(token)}, which ` +
          `'${paths.json}' does not know`,
      );
    }
    return { token, id };
  };
  const bos = idOf("bos_token");
  const eos = idOf("eos_token");
  const ownPad = idOf("pad_token");
  const pad = ownPad.id !== null ? ownPad : eos;
  const padSource = ownPad.id !== null ? "pad_token" : eos.id !== null ? "eos_token" : null;

  // 4) what encode adds: the config's flags, else what the post-processor adds
  const addBosFlag = flag(config, "add_bos_token", paths.config);
  const addEosFlag = flag(config, "add_eos_token", paths.config);
  for (
    const [field, on, id] of [
      ["add_bos_token", addBosFlag, bos.id],
      ["add_eos_token", addEosFlag, eos.id],
    ] as const
  ) {
    if (on && id === null) {
      throw new Error(
        `Cannot load tokenizer as '${paths.config}' field '${field}' is true but it names no ` +
          `${field === "add_bos_token" ? "bos_token" : "eos_token"}`,
      );
    }
  }
  const probe = {
    with: lib.encode("a").ids,
    without: lib.encode("a", { add_special_tokens: false }).ids,
  };
  const addBos = addBosFlag ??
    (bos.id !== null && probe.with[0] === bos.id && probe.without[0] !== bos.id);
  const addEos = addEosFlag ??
    (eos.id !== null && probe.with.at(-1) === eos.id && probe.without.at(-1) !== eos.id);

  // 5) stop ids: the generation config's, then the tokenizer's end token
  const stopIds = [...generationStopIds(generation, vocabSize, paths.generation)];
  if (eos.id !== null && !stopIds.includes(eos.id)) stopIds.push(eos.id);

  // 6) the chat template, with the special tokens by the names templates use
  const specialTokens: Record<string, string> = {};
  for (const field of ["bos_token", "eos_token", "unk_token", "pad_token"]) {
    const { token } = textOf(field);
    if (token !== null) specialTokens[field] = token;
  }
  const chat = await readChatTemplate(dir, config, paths.config, specialTokens);

  return {
    kind: "hf",
    dir,
    vocabSize,
    bosId: bos.id,
    eosId: eos.id,
    padId: pad.id,
    padSource,
    bosToken: bos.token,
    eosToken: eos.token,
    padToken: pad.token,
    stopIds,
    addBos,
    addEos,
    specialIds,
    chatTemplate: chat,
    tokenToId: (token) => lib.token_to_id(token),
    encode(text: string, options: EncodeOptions = {}): number[] {
      const ids = lib.encode(text, { add_special_tokens: false }).ids;
      if (!options.addSpecialTokens) return ids;
      return [...(addBos ? [bos.id!] : []), ...ids, ...(addEos ? [eos.id!] : [])];
    },
    decode(ids: ArrayLike<number>, options: DecodeOptions = {}): string {
      const list = Array.from(ids);
      if (list.length === 0) return ""; // the library refuses an empty list
      for (const id of list) {
        if (!Number.isInteger(id) || id < 0 || id >= vocabSize) {
          throw new Error(
            `Cannot decode id ${id} with the tokenizer of '${dir}': its ids are 0..${
              vocabSize - 1
            }`,
          );
        }
      }
      return lib.decode(list, { skip_special_tokens: options.skipSpecialTokens ?? true });
    },
  };
}
