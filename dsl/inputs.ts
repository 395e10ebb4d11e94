/**
 * The files a plan names, and what is in them: its JSON Lines data file, each `fn` reward's
 * module and a custom objective's module, with the relative imports of those modules that stay
 * under the recipe's directory (the files a sandboxed module may load). Their SHA-256 hashes are
 * part of the plan (`plan.inputs`), so that the plan hash names the data and code a run trains
 * with: an edited file is another plan, a resume refuses a run whose files changed, and the
 * warm-start cache is keyed by the data it trained on.
 *
 * `compile()` is pure and reads no file; {@linkcode withInputs} reads them and records their
 * hashes in the plan. The command line (`plan`, `validate`, `run`) records them in every plan it
 * compiles, and `execute()` in a plan that does not have them, so all of them agree on one hash.
 * A plan that names no file has no `inputs`, and its hash is the compiler's.
 *
 * A checkpoint directory the plan names (a `reference: { checkpoint }`, a reward model's) counts
 * by the files that make its model: `config.json`, the tokenizer and generation files, and the
 * weights (`*.safetensors` but a run checkpoint's optimiser state), each an input of its own.
 *
 * Only local files are inputs: a module fetched from a URL and a file that cannot be read (the
 * run says so when it loads it) are not.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { relative } from "node:path";
import type { Plan, PlanInput } from "./plan.ts";

export type { PlanInput } from "./plan.ts";

/** How an input differs between two plans: its hash then and now (null: not an input). */
export interface InputChange {
  path: string;
  then: string | null;
  now: string | null;
}

/** Files followed through a module's imports, at most: a bound on what a plan reads. */
const MAX_MODULE_FILES = 256;
/** A module larger than this is hashed but not searched for imports. */
const MAX_MODULE_SCAN_BYTES = 4 * 1024 * 1024;
/**
 * A relative specifier after `from`, `import` or `import(`: static imports and re-exports (with
 * or without attributes), side-effect imports and literal dynamic imports. A match in a comment
 * or a string is harmless: a file that is not there is no input.
 */
const RELATIVE_IMPORT = /(?:\bfrom|\bimport)\s*\(?\s*(["'])(\.{1,2}\/[^"'\n]+)\1/g;

/**
 * The files `plan` names and their hashes, read now; `baseUrl` is where relative paths start
 * (the recipe's location). Data first, then each reward's module and its imports, then the
 * objective's; a file named twice is listed once.
 *
 * @example
 * ```ts
 * const inputs = await readInputs(compile(recipe), new URL("file:///work/recipe.ts"));
 * inputs.map((i) => `${i.path} ${i.sha256}`);
 * ```
 */
export async function readInputs(plan: Plan, baseUrl: string | URL): Promise<PlanInput[]> {
  const base = new URL(baseUrl);
  const seen = new Set<string>();
  const inputs: PlanInput[] = [];
  for (const { field, path, module, directory } of namedFiles(plan)) {
    let url: URL;
    try {
      url = new URL(path, base);
    } catch {
      continue; // The run names a specifier that does not resolve, when it loads it.
    }
    if (url.protocol !== "file:") continue;
    const queue: { url: URL; path: string }[] = directory
      ? await modelFiles(url, path)
      : [{ url, path }];
    for (let i = 0; i < queue.length && i < MAX_MODULE_FILES; i++) {
      const file = queue[i]!;
      if (seen.has(file.url.href)) continue;
      seen.add(file.url.href);
      const read = await hashFile(file.url, module);
      if (read === null) continue;
      inputs.push({ field, path: file.path, bytes: read.bytes, sha256: read.sha256 });
      if (read.text === null) continue;
      for (const imported of relativeImports(read.text, file.url, base)) queue.push(imported);
    }
  }
  return inputs;
}

/**
 * `plan` with the hashes of the files it names, read now (see {@linkcode readInputs}), in
 * `plan.inputs`; a plan that names no file that can be read is returned as it is. This is the
 * plan the command line prints and runs: its {@linkcode planHash} is the run's.
 *
 * @example
 * ```ts
 * const plan = await withInputs(compile(recipe), new URL("file:///work/recipes/mine.ts"));
 * planHash(plan); // what `deno task plan recipes/mine.ts` prints
 * ```
 */
export async function withInputs(plan: Plan, baseUrl: string | URL): Promise<Plan> {
  const inputs = await readInputs(plan, baseUrl);
  const { inputs: _old, ...rest } = plan;
  if (inputs.length === 0) return rest;
  // After `data`, where a reader of plan.json looks for the files (the hash ignores the order).
  return Object.fromEntries(
    Object.entries(rest).flatMap(([key, value]) =>
      key === "data" ? [[key, value], ["inputs", inputs]] : [[key, value]]
    ),
  ) as unknown as Plan;
}

/**
 * The first input whose content differs between `then` and `now`, matched by path, or null
 * when they agree.
 *
 * @example
 * ```ts
 * const change = inputChange(recorded.inputs, plan.inputs);
 * if (change) console.error(describeChange(change, "the run started"));
 * ```
 */
export function inputChange(
  then: readonly PlanInput[] | undefined,
  now: readonly PlanInput[] | undefined,
): InputChange | null {
  // A plan read back from a file may hold anything: what is not an input is none.
  const hashes = (inputs: readonly PlanInput[] | undefined) =>
    new Map(
      (Array.isArray(inputs) ? inputs : [])
        .filter((i) => typeof i?.path === "string" && typeof i?.sha256 === "string")
        .map((i) => [i.path, i.sha256]),
    );
  const before = hashes(then);
  const after = hashes(now);
  for (const [path, sha] of before) {
    if (after.get(path) !== sha) return { path, then: sha, now: after.get(path) ?? null };
  }
  for (const [path, sha] of after) {
    if (!before.has(path)) return { path, then: null, now: sha };
  }
  return null;
}

/**
 * A change in words: `data/train.jsonl changed since the run started (sha256 ab12cd34ef56… then,
 * 0123456789ab… now)`.
 *
 * @example
 * ```ts
 * describeChange({ path: "d.jsonl", then: "ab".repeat(32), now: null }, "the run started");
 * // "d.jsonl changed since the run started (sha256 abababababab… then, unreadable now)"
 * ```
 */
export function describeChange(change: InputChange, since: string): string {
  const then = change.then === null ? "no file then" : `sha256 ${shortHash(change.then)} then`;
  const now = change.now === null
    ? "unreadable now"
    : `${change.then === null ? "sha256 " : ""}${shortHash(change.now)} now`;
  return `${change.path} changed since ${since} (${then}, ${now})`;
}

/** The first 12 hex digits of a SHA-256 and an ellipsis: enough to tell two files apart. */
export function shortHash(sha256: string): string {
  return `${sha256.slice(0, 12)}…`;
}

/** The files a plan names, by the field that names them, in plan order. */
function namedFiles(
  plan: Plan,
): { field: string; path: string; module: boolean; directory: boolean }[] {
  const files: { field: string; path: string; module: boolean; directory: boolean }[] = [];
  const add = (field: string, path: string, kind: "data" | "module" | "directory") =>
    files.push({ field, path, module: kind === "module", directory: kind === "directory" });
  const data = plan.recipe.data;
  if (data.kind === "jsonl") add("data.path", data.path, "data");
  if (plan.reference.kind === "checkpoint" && plan.reference.checkpoint !== null) {
    add("reference.checkpoint", plan.reference.checkpoint, "directory");
  }
  plan.rewards.forEach((spec, i) => {
    const source = spec.source as { kind: string; module?: string; checkpoint?: string };
    if (source.kind === "fn" && source.module !== undefined) {
      add(`rewards[${i}].source.module`, source.module, "module");
    }
    if (source.kind === "rewardModel" && source.checkpoint !== undefined) {
      add(`rewards[${i}].source.checkpoint`, source.checkpoint, "directory");
    }
  });
  const objective = plan.objective.options as { kind: string; module?: string };
  if (objective.kind === "custom" && objective.module !== undefined) {
    add("objective.module", objective.module, "module");
  }
  return files;
}

/**
 * The files of a model directory that make its model besides its weights (`*.safetensors`), in
 * the order a plan hashes them: what a checkpoint input and a Hugging Face policy's
 * `model.sha256` cover (its optimiser state and other files are not the model).
 *
 * @example
 * ```ts
 * MODEL_FILES.includes("tokenizer.json"); // true
 * ```
 */
export const MODEL_FILES: readonly string[] = [
  "config.json",
  "generation_config.json",
  "tokenizer.json",
  "tokenizer_config.json",
  "special_tokens_map.json",
  "chat_template.jinja",
  "model.safetensors.index.json",
];

/**
 * The model files of the checkpoint directory at `url` (`path` as the plan names it), in name
 * order; none when it cannot be listed (the run says so when it loads it).
 */
async function modelFiles(url: URL, path: string): Promise<{ url: URL; path: string }[]> {
  const dir = url.href.endsWith("/") ? url : new URL(`${url.href}/`);
  const names: string[] = [];
  try {
    for await (const entry of Deno.readDir(dir)) {
      const weights = entry.name.endsWith(".safetensors") && entry.name !== "optimizer.safetensors";
      if (entry.isFile && (MODEL_FILES.includes(entry.name) || weights)) names.push(entry.name);
    }
  } catch {
    return [];
  }
  const prefix = path.replace(/\/+$/, "");
  return names.sort().map((name) => ({ url: new URL(name, dir), path: `${prefix}/${name}` }));
}

/**
 * A regular file's size and SHA-256, read in pieces; a module's text too, to find its imports.
 * Null when it is not a regular file or cannot be read.
 */
async function hashFile(
  url: URL,
  module: boolean,
): Promise<{ bytes: number; sha256: string; text: string | null } | null> {
  let file: Deno.FsFile;
  try {
    // Not a FIFO or a device: opening one could wait forever, or read forever.
    if (!(await Deno.stat(url)).isFile) return null;
    file = await Deno.open(url);
  } catch {
    return null;
  }
  try {
    const hash = createHash("sha256");
    const buffer = new Uint8Array(1 << 20);
    const kept: Uint8Array[] = [];
    let bytes = 0;
    for (;;) {
      const n = await file.read(buffer);
      if (n === null) break;
      const chunk = buffer.subarray(0, n);
      hash.update(chunk);
      bytes += n;
      if (module && bytes <= MAX_MODULE_SCAN_BYTES) kept.push(chunk.slice());
    }
    const scan = module && bytes <= MAX_MODULE_SCAN_BYTES;
    return {
      bytes,
      sha256: hash.digest("hex"),
      text: scan ? new TextDecoder().decode(concat(kept, bytes)) : null,
    };
  } catch {
    return null;
  } finally {
    file.close();
  }
}

/**
 * The local files `text` (the module at `url`) imports by relative specifier and that lie under
 * the recipe's directory, each with its path relative to that directory.
 */
function relativeImports(text: string, url: URL, base: URL): { url: URL; path: string }[] {
  const root = decodeURIComponent(new URL(".", base).pathname);
  const found: { url: URL; path: string }[] = [];
  for (const match of text.matchAll(RELATIVE_IMPORT)) {
    const target = new URL(match[2]!, url);
    target.search = "";
    target.hash = "";
    const path = decodeURIComponent(target.pathname);
    if (!path.startsWith(root)) continue;
    found.push({ url: target, path: relative(root, path) });
  }
  return found;
}

function concat(parts: readonly Uint8Array[], length: number): Uint8Array {
  const out = new Uint8Array(length);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}
