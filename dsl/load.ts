/**
 * `loadRecipe()`: reads a recipe from a TypeScript or JavaScript module (its default export, or an
 * export named `recipe`), a JSON file, a plan written by `plan --json`, or a URL to any of them.
 * It only reads: validation and compilation come after. A file that cannot be read is a
 * `RecipeLoadError` whose message is one line naming the file and the problem.
 *
 * @module
 */

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

/**
 * Reads a recipe from a path or URL.
 *
 * @example
 * ```ts
 * const loaded = await loadRecipe("recipes/addition_gift.ts");
 * const result = safeCompile(loaded.input);
 * ```
 */
export async function loadRecipe(specifier: string): Promise<LoadedRecipe> {
  const url = /^(https?|file):\/\//.test(specifier)
    ? new URL(specifier)
    : pathToFileURL(resolve(specifier));
  const fail = (problem: string): never => {
    throw new RecipeLoadError(specifier, problem);
  };
  if (url.pathname.endsWith(".json")) {
    const parsed = parseJson(await readText(url, fail), fail);
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
      module = await import(await moduleUrl(url, fail));
    } catch (e) {
      if (e instanceof RecipeLoadError) throw e;
      return fail(`cannot load the module: ${firstLine(e)}`);
    }
    const input = "default" in module ? module["default"] : module["recipe"];
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
async function moduleUrl(url: URL, fail: (problem: string) => never): Promise<string> {
  const text = await readText(url, fail);
  if (url.protocol === "file:") return url.href;
  const type = /\.(ts|mts)$/.test(url.pathname) ? "application/typescript" : "text/javascript";
  let binary = "";
  for (const byte of new TextEncoder().encode(text)) binary += String.fromCharCode(byte);
  return `data:${type};base64,${btoa(binary)}`;
}

async function readText(url: URL, fail: (problem: string) => never): Promise<string> {
  if (url.protocol === "file:") {
    try {
      return await Deno.readTextFile(url);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return fail("cannot read: no such file");
      if (e instanceof Deno.errors.PermissionDenied) return fail("cannot read: permission denied");
      if (e instanceof Deno.errors.IsADirectory) return fail("cannot read: it is a directory");
      return fail(`cannot read: ${firstLine(e)}`);
    }
  }
  let response: Response;
  try {
    response = await fetch(url, { signal: AbortSignal.timeout(30_000) });
  } catch (e) {
    return fail(`cannot fetch: ${firstLine(e)}`);
  }
  if (!response.ok) {
    await response.body?.cancel();
    return fail(`cannot fetch: HTTP ${response.status} ${response.statusText}`.trimEnd());
  }
  return await response.text();
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
  const text = error instanceof Error ? error.message : String(error);
  return text.split("\n")[0]!.trim();
}
