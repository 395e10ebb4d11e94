/**
 * `loadRecipe()`: reads a recipe from a TypeScript or JavaScript module (its default export, or an
 * export named `recipe`), a JSON file, a plan written by `plan --json`, or a URL to any of them.
 * It only reads: validation and compilation come after. A file that cannot be read is a
 * `RecipeLoadError` whose message is one line naming the file and the problem.
 *
 * Nothing about the file is trusted: a local one must be a regular file (a FIFO would hang the
 * read, `/dev/zero` never end it), a URL must answer in full within `timeoutMs` (a server that
 * drips a byte a second is cut off), and either is read up to `maxBytes`. A module's export is
 * copied here as plain data, every field read once: a getter that throws is named
 * (`reading export default.name threw: …`) instead of throwing from inside validation.
 *
 * @module
 */

import { readBody } from "./_body.ts";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { jsonSyntaxError } from "./_json_error.ts";
import { PLAN_FORMAT, type PlanInput } from "./plan.ts";

/**
 * A recipe as read from its file, not yet validated.
 *
 * @example
 * ```ts
 * const { format, input } = await loadRecipe("recipes/addition_gift.json"); // format: "json"
 * const checked = validateRecipe(input);
 * ```
 */
export interface LoadedRecipe {
  /** The path or URL as given. */
  specifier: string;
  /** Where it was read from. */
  url: URL;
  /** A module's export, a JSON recipe, or the recipe inside a plan file. */
  format: "module" | "json" | "plan";
  /** The recipe, unvalidated. */
  input: unknown;
  /** For a plan file: the hash it recorded, to compare with a fresh compile. */
  planHash?: string;
  /** For a plan file: the files it recorded, to name the one that changed since. */
  planInputs?: PlanInput[];
}

/**
 * A recipe file that cannot be read. `message` is one line: `<file>: <problem>`.
 *
 * @example
 * ```ts
 * try {
 *   await loadRecipe("missing.json");
 * } catch (e) {
 *   if (e instanceof RecipeLoadError) console.error(e.message); // "missing.json: …"
 * }
 * ```
 */
export class RecipeLoadError extends Error {
  /** What went wrong, without the file name. */
  readonly problem: string;

  constructor(specifier: string, problem: string) {
    super(`${specifier}: ${problem}`);
    this.name = "RecipeLoadError";
    this.problem = problem;
  }
}

const MODULE = /\.(ts|mts|js|mjs)$/;

/** Options of `loadRecipe()`. */
export interface LoadRecipeOptions {
  /** A URL's whole response must arrive within this many milliseconds. @default {30000} */
  timeoutMs?: number;
  /** The most bytes of a recipe file or response read. @default {16777216} (16 MiB) */
  maxBytes?: number;
}

/** The most items of an array in a module's export: a recipe's lists are short. */
const MAX_ITEMS = 100_000;

/**
 * Reads a recipe from a path or URL.
 *
 * @example
 * ```ts
 * const loaded = await loadRecipe("recipes/addition_gift.ts");
 * const result = safeCompile(loaded.input);
 * ```
 */
export async function loadRecipe(
  specifier: string,
  options: LoadRecipeOptions = {},
): Promise<LoadedRecipe> {
  const url = /^(https?|file):\/\//.test(specifier)
    ? new URL(specifier)
    : pathToFileURL(resolve(specifier));
  const fail = (problem: string): never => {
    throw new RecipeLoadError(specifier, problem);
  };
  const limits = {
    timeoutMs: options.timeoutMs ?? 30_000,
    maxBytes: options.maxBytes ?? 16_777_216,
  };
  if (url.pathname.endsWith(".json")) {
    const parsed = parseJson(await readText(url, limits, fail), fail);
    if (isPlanFile(parsed)) {
      const hash = parsed["hash"];
      return {
        specifier,
        url,
        format: "plan",
        input: parsed["recipe"],
        ...(typeof hash === "string" ? { planHash: hash } : {}),
        ...(Array.isArray(parsed["inputs"]) ? { planInputs: planInputs(parsed["inputs"]) } : {}),
      };
    }
    return { specifier, url, format: "json", input: parsed };
  }
  if (MODULE.test(url.pathname)) {
    let module: Record<string, unknown>;
    try {
      module = await import(await moduleUrl(url, limits, fail));
    } catch (e) {
      if (e instanceof RecipeLoadError) throw e;
      return fail(`cannot load the module: ${firstLine(e)}`);
    }
    const name = "default" in module ? "default" : "recipe";
    const input = plainCopy(() => module[name], name, [], fail);
    if (input === undefined) {
      const names = Object.keys(module);
      const found = names.length === 0 ? "it exports nothing" : `it exports ${names.join(", ")}`;
      return fail(
        `no recipe exported: expected a default export or an export named 'recipe' (${found})`,
      );
    }
    return { specifier, url, format: "module", input };
  }
  return fail("expected a .ts, .js or .json recipe");
}

/**
 * What to import for a module recipe. A local file is imported from its path (after a read that
 * gives a clear error when it is missing). A remote one is fetched and imported from a `data:`
 * URL: always the current text, never written to Deno's cache or to the lock file. Its imports
 * must therefore be absolute URLs.
 */
async function moduleUrl(
  url: URL,
  limits: Required<LoadRecipeOptions>,
  fail: (problem: string) => never,
): Promise<string> {
  const text = await readText(url, limits, fail);
  if (url.protocol === "file:") return url.href;
  const type = /\.(ts|mts)$/.test(url.pathname) ? "application/typescript" : "text/javascript";
  let binary = "";
  for (const byte of new TextEncoder().encode(text)) binary += String.fromCharCode(byte);
  return `data:${type};base64,${btoa(binary)}`;
}

/** What a `stat` says a path is, when it is not a regular file. */
function kind(info: Deno.FileInfo): string {
  if (info.isFifo) return "a FIFO";
  if (info.isCharDevice) return "a character device";
  if (info.isBlockDevice) return "a block device";
  if (info.isSocket) return "a socket";
  return "not a file";
}

async function readText(
  url: URL,
  limits: Required<LoadRecipeOptions>,
  fail: (problem: string) => never,
): Promise<string> {
  if (url.protocol === "file:") {
    try {
      // Opened only once a stat (following links) says it is a regular file of a sane size.
      const info = await Deno.stat(url);
      if (info.isDirectory) return fail("cannot read: it is a directory");
      if (!info.isFile) return fail(`cannot read: it is ${kind(info)}, not a regular file`);
      if (info.size > limits.maxBytes) {
        return fail(
          `cannot read: it is ${info.size} bytes, over the ${limits.maxBytes}-byte limit`,
        );
      }
      return await Deno.readTextFile(url);
    } catch (e) {
      if (e instanceof RecipeLoadError) throw e;
      if (e instanceof Deno.errors.NotFound) return fail("cannot read: no such file");
      if (e instanceof Deno.errors.PermissionDenied) return fail("cannot read: permission denied");
      if (e instanceof Deno.errors.IsADirectory) return fail("cannot read: it is a directory");
      return fail(`cannot read: ${firstLine(e)}`);
    }
  }
  // One deadline for the whole response, body included: a server that drips is cut off.
  const signal = AbortSignal.timeout(limits.timeoutMs);
  const late = (e: unknown) =>
    e instanceof DOMException && e.name === "TimeoutError"
      ? fail(`cannot fetch: no complete response within ${limits.timeoutMs / 1000} s`)
      : fail(`cannot fetch: ${firstLine(e)}`);
  let response: Response;
  try {
    response = await fetch(url, { signal });
  } catch (e) {
    return late(e);
  }
  if (!response.ok) {
    await response.body?.cancel();
    return fail(`cannot fetch: HTTP ${response.status} ${response.statusText}`.trimEnd());
  }
  const tooLong = () => fail(`cannot fetch: the response is over ${limits.maxBytes} bytes`);
  if (Number(response.headers.get("content-length") ?? NaN) > limits.maxBytes) {
    await response.body?.cancel();
    return tooLong();
  }
  let text: string | null;
  try {
    text = await readBody(response, limits.maxBytes, false);
  } catch (e) {
    return late(e);
  }
  return text ?? tooLong();
}

/**
 * A module's export as plain data, each field read once, here: a getter (or a Proxy trap) that
 * throws is named by its path, `reading export default.policy.kind threw: …`, rather than
 * throwing from inside validation. Functions are kept as they are (validation names them); a
 * cycle, or an array too long to be a recipe's, is refused.
 */
function plainCopy(
  get: () => unknown,
  path: string,
  ancestors: object[],
  fail: (problem: string) => never,
): unknown {
  const read = <T>(what: string, getter: () => T): T => {
    try {
      return getter();
    } catch (e) {
      return fail(`reading export ${what} threw: ${firstLine(e)}`);
    }
  };
  const value = read(path, get);
  if (typeof value !== "object" || value === null) return value;
  if (ancestors.includes(value)) {
    return fail(`export ${path} refers back to one of its parents: a recipe is plain data`);
  }
  const inside = [...ancestors, value];
  if (read(path, () => Array.isArray(value))) {
    const items = value as unknown[];
    const length = read(`${path}.length`, () => items.length);
    if (length > MAX_ITEMS) {
      return fail(`export ${path} has ${length} items, more than a recipe's ${MAX_ITEMS}`);
    }
    return Array.from(
      { length },
      (_, i) => plainCopy(() => items[i], `${path}[${i}]`, inside, fail),
    );
  }
  const record = value as Record<string, unknown>;
  const copy: Record<string, unknown> = {};
  for (const key of read(path, () => Object.keys(record))) {
    const at = /^[A-Za-z_$][\w$]*$/.test(key)
      ? `${path}.${key}`
      : `${path}[${JSON.stringify(key)}]`;
    copy[key] = plainCopy(() => record[key], at, inside, fail);
  }
  return copy;
}

function parseJson(text: string, fail: (problem: string) => never): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    const at = jsonSyntaxError(text);
    if (at === undefined) return fail(`invalid JSON: ${firstLine(e)}`);
    return fail(`invalid JSON at line ${at.line}, column ${at.column}: ${at.message}`);
  }
}

/** The well-formed entries of a plan file's `inputs` (a hand-edited file may hold anything). */
function planInputs(entries: unknown[]): PlanInput[] {
  return entries.filter((entry): entry is PlanInput => {
    const e = entry as Record<string, unknown> | null;
    return typeof e === "object" && e !== null && typeof e["path"] === "string" &&
      typeof e["sha256"] === "string";
  });
}

function isPlanFile(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null &&
    (value as Record<string, unknown>)["format"] === PLAN_FORMAT;
}

function firstLine(error: unknown): string {
  let text: string;
  try {
    text = error instanceof Error ? error.message : String(error);
  } catch {
    text = "a value that cannot be printed";
  }
  return String(text).split("\n")[0]!.trim();
}
