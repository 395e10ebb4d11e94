/**
 * The resolve step before `compile()`: reads what a recipe's Hugging Face model directory holds
 * (`config.json`, the safetensors headers, the tokenizer files) and hashes it, so that the pure
 * compiler can lower the recipe and the plan records what was read. Free of TensorFlow.js: the
 * CLI's `plan` and `validate` stay light.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { fileURLToPath } from "node:url";
import type { AdapterFacts, HfModelFacts } from "../dsl/plan.ts";
import type { Issue } from "../dsl/issues.ts";
import { MODEL_FILES } from "../dsl/inputs.ts";
import { readHfConfig, weightShards } from "./engine/model/hf_config.ts";
import { type HfTokenizer, loadHfTokenizer } from "./engine/model/hf_tokenizer.ts";
import { completionStopIds } from "./engine/model/tokenizer.ts";
import { readSafetensorsHeader } from "./engine/model/safetensors.ts";
import { openRegularFile, readJsonFile } from "./engine/model/_regular_file.ts";
import { parsePeftConfig } from "./engine/model/lora_config.ts";
import { promptIds, renderPrompt } from "./data/prompt.ts";

/**
 * The outcome of {@linkcode resolveModels}: the facts by path, or every problem as an issue.
 *
 * @example
 * ```ts
 * const resolved: ResolvedModels = await resolveModels(recipe, import.meta.url);
 * if (resolved.ok) compile(recipe, { models: resolved.models });
 * ```
 */
export type ResolvedModels =
  | { ok: true; models: Record<string, HfModelFacts> }
  | { ok: false; issues: Issue[] };

/** A recipe's `policy` and `data` as far as resolving reads them (it is not validated yet). */
interface RecipeLike {
  policy?: {
    kind?: unknown;
    path?: unknown;
    chat?: { template?: unknown; system?: unknown; args?: unknown };
    lora?: { adapter?: unknown };
  };
  data?: { kind?: unknown; path?: unknown; prompt?: unknown; template?: unknown };
}

/**
 * The directory `path` names, relative to `base` (the recipe's URL or directory).
 *
 * @example
 * ```ts
 * modelDir("../models/stories260K", "file:///work/recipes/stories_gift.ts"); // "/work/models/stories260K"
 * ```
 */
export function modelDir(path: string, base: string | URL): string {
  const url = new URL(path, base);
  if (url.protocol !== "file:") {
    throw new Error(`expected a local directory, got '${url.href}' (models are read from disk)`);
  }
  return fileURLToPath(url).replace(/\/+$/, "") || "/";
}

/**
 * Reads the Hugging Face model directory of `recipe.policy` (when it is an `hfModel`), relative
 * to `base`: the architecture of its `config.json`, the dtype and parameter count of its
 * safetensors headers, its tokenizer's ids and chat template, a SHA-256 over its files, and the
 * first data row's prompt as the model will read it. A recipe without one resolves to no facts.
 * Problems are issues at `policy.path` (one line each), as `compile()` reports its own.
 *
 * @example
 * ```ts
 * const loaded = await loadRecipe("recipes/stories_gift.ts");
 * const resolved = await resolveModels(loaded.input, loaded.url);
 * const plan = resolved.ok ? compile(loaded.input as Recipe, { models: resolved.models }) : null;
 * ```
 */
export async function resolveModels(recipe: unknown, base: string | URL): Promise<ResolvedModels> {
  const r = (typeof recipe === "object" && recipe !== null ? recipe : {}) as RecipeLike;
  const policy = r.policy;
  if (policy?.kind !== "hfModel" || typeof policy.path !== "string" || policy.path === "") {
    return { ok: true, models: {} };
  }
  try {
    const dir = modelDir(policy.path, base);
    const { facts, tokenizer } = await readFacts(dir);
    try {
      facts.example = await example(r, tokenizer, base);
    } catch (e) {
      // The plan goes without its rendered prompt; the run names the row's file:line.
      facts.exampleError = (e instanceof Error ? e.message : String(e)).split("\n")[0]!;
    }
    const adapter = policy.lora?.adapter;
    if (typeof adapter === "string" && adapter !== "") {
      try {
        facts.adapter = await readAdapterFacts(adapter, base);
      } catch (e) {
        const message = (e instanceof Error ? e.message : String(e)).split("\n")[0]!;
        return { ok: false, issues: [{ path: "policy.lora.adapter", message }] };
      }
    }
    return { ok: true, models: { [policy.path]: facts } };
  } catch (e) {
    const message = (e instanceof Error ? e.message : String(e)).split("\n")[0]!;
    return { ok: false, issues: [{ path: "policy.path", message }] };
  }
}

/** The files of a PEFT adapter directory, as hashed into the plan. */
export const ADAPTER_FILES = ["adapter_config.json", "adapter_model.safetensors"] as const;

/**
 * What `compile()` needs of the PEFT adapter directory `path` (relative to `base`): its
 * `adapter_config.json`'s rank, alpha, dropout and targets, and a SHA-256 over its files.
 */
async function readAdapterFacts(path: string, base: string | URL): Promise<AdapterFacts> {
  const dir = modelDir(path, base);
  const where = `${dir}/adapter_config.json`;
  const { lora } = parsePeftConfig(await readJsonFile(where), where);
  await Deno.stat(`${dir}/adapter_model.safetensors`).catch(() => {
    throw new Error(`expected a PEFT adapter in '${dir}': it has no adapter_model.safetensors`);
  });
  return {
    path,
    rank: lora.rank,
    alpha: lora.alpha,
    dropout: lora.dropout,
    targets: [...lora.targets],
    sha256: await adapterSha256(dir),
  };
}

/**
 * SHA-256 over a PEFT adapter directory's files ({@linkcode ADAPTER_FILES}), as a plan records it
 * (`plan.model.lora.adapter.sha256`).
 *
 * @example
 * ```ts
 * const changed = (await adapterSha256(dir)) !== plan.model.lora?.adapter?.sha256;
 * ```
 */
export async function adapterSha256(dir: string): Promise<string> {
  return await hashFiles(dir, ADAPTER_FILES);
}

/** What `compile()` needs of the model directory `dir`. */
async function readFacts(
  dir: string,
): Promise<{ facts: HfModelFacts; tokenizer: HfTokenizer }> {
  const hf = await readHfConfig(dir);
  // The head a tied model's file stores anyway is not a parameter (transformers ties it).
  const tiedHead = hf.config.tiedEmbeddings;
  const weights = [...(await weightShards(dir)).keys()];
  const counts = new Map<string, number>();
  let parameters = 0;
  for (const file of weights) {
    const { tensors } = await readSafetensorsHeader(`${dir}/${file}`);
    for (const t of tensors) {
      if (t.name.endsWith("rotary_emb.inv_freq")) continue;
      if (tiedHead && t.name === "lm_head.weight") continue;
      counts.set(t.dtype, (counts.get(t.dtype) ?? 0) + 1);
      parameters += t.shape.reduce((a, b) => a * b, 1);
    }
  }
  const dtype = [...counts].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
    .map(([d]) => d).join("+");
  const tokenizer = await loadHfTokenizer(dir);
  const c = hf.config;
  const facts: HfModelFacts = {
    modelType: hf.modelType,
    architectures: hf.architectures,
    dtype,
    sha256: await hashFiles(dir, [...MODEL_FILES, ...weights]),
    parameters,
    maxPositions: c.contextLength,
    shape: {
      layers: c.layers,
      dModel: c.dModel,
      heads: c.heads,
      kvHeads: c.kvHeads,
      headDim: c.headDim,
      ffnDim: c.ffnDim,
      vocab: c.vocab,
      tiedEmbeddings: c.tiedEmbeddings,
      ropeTheta: c.ropeTheta,
      normEps: c.normEps,
    },
    attentionBias: c.attentionBias ?? false,
    qkNorm: c.qkNorm ?? false,
    ropeScaling: c.ropeScaling ?? null,
    tokenizer: {
      kind: "hf",
      vocab: tokenizer.vocabSize,
      bosId: tokenizer.bosId,
      eosId: tokenizer.eosId,
      padId: tokenizer.padId,
      padSource: tokenizer.padSource,
      stopIds: completionStopIds(tokenizer),
      addBos: tokenizer.addBos,
      hasChatTemplate: tokenizer.chatTemplate !== null,
    },
    example: null,
  };
  return { facts, tokenizer };
}

/**
 * The SHA-256 a plan records of the Hugging Face model directory `dir` (`model.sha256`): over its
 * config, tokenizer and weight files.
 *
 * @example
 * ```ts
 * const sha = await modelSha256("models/stories260K"); // 64 hex digits
 * ```
 */
export async function modelSha256(dir: string): Promise<string> {
  return await hashFiles(dir, [...MODEL_FILES, ...(await weightShards(dir)).keys()]);
}

/** SHA-256 over each present file of `files` in `dir`: its name, its size, its bytes. */
async function hashFiles(dir: string, files: readonly string[]): Promise<string> {
  const hash = createHash("sha256");
  for (const name of files) {
    let opened: { file: Deno.FsFile; size: number };
    try {
      opened = await openRegularFile(`${dir}/${name}`);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) continue;
      throw e;
    }
    const { file, size } = opened;
    try {
      hash.update(`${name}\0${size}\0`);
      const buffer = new Uint8Array(1 << 20);
      for (;;) {
        const n = await file.read(buffer);
        if (n === null) break;
        hash.update(buffer.subarray(0, n));
      }
    } finally {
      file.close();
    }
  }
  return hash.digest("hex");
}

/** The first row of the recipe's JSON Lines data, rendered as the model reads it. */
async function example(
  r: RecipeLike,
  tokenizer: HfTokenizer,
  base: string | URL,
): Promise<{ text: string; tokens: number } | null> {
  const data = r.data;
  if (data?.kind !== "jsonl" || typeof data.path !== "string") return null;
  const url = new URL(data.path, base);
  if (url.protocol !== "file:") return null;
  const { file } = await openRegularFile(fileURLToPath(url));
  let line: string | undefined;
  try {
    const buffer = new Uint8Array(1 << 20);
    const n = await file.read(buffer);
    if (n === null) return null;
    // Whole lines only: the read may end inside a later line's multi-byte character.
    const bytes = buffer.subarray(0, n);
    const end = bytes.lastIndexOf(0x0a);
    const text = new TextDecoder("utf-8", { fatal: true }).decode(
      end < 0 ? bytes : bytes.subarray(0, end),
    );
    line = text.split("\n").find((l) => l.trim() !== "");
  } finally {
    file.close();
  }
  if (line === undefined) return null;
  const row = JSON.parse(line) as Record<string, unknown>;
  const field = typeof data.prompt === "string" ? data.prompt : "prompt";
  const value = !Object.hasOwn(row, field) && field === "prompt" ? row["messages"] : row[field];
  const template = typeof data.template === "string" ? data.template : "{prompt}";
  const prompt = typeof value === "string"
    ? template.split("{prompt}").join(value)
    : { messages: value as { role: string; content: string }[] };
  const chat = r.policy?.chat ?? {};
  const format = {
    chatTemplate: chat.template !== false,
    system: typeof chat.system === "string" ? chat.system : null,
    templateArgs: (typeof chat.args === "object" && chat.args !== null ? chat.args : {}) as Record<
      string,
      string | number | boolean | null
    >,
  };
  return {
    text: renderPrompt(tokenizer, format, prompt),
    tokens: promptIds(tokenizer, format, prompt).length,
  };
}
