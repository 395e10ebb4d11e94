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
import { PLAN_FORMAT } from "./plan.ts";

/** A recipe as read from its file, not yet validated. */
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
}

/** A recipe file that cannot be read. `message` is one line: `<file>: <problem>`. */
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
      };
    }
    return { specifier, url, format: "json", input: parsed };
  }
  if (MODULE.test(url.pathname)) {
    if (url.protocol === "file:") await readText(url, fail); // a clear error for a missing file
    let module: Record<string, unknown>;
    try {
      module = await import(url.href);
    } catch (e) {
      return fail(`cannot load the module: ${firstLine(e)}`);
    }
    const input = module["default"] ?? module["recipe"];
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
    const message = firstLine(e);
    const position = /at position (\d+)/.exec(message);
    if (position === null) return fail(`invalid JSON: ${message}`);
    const offset = Number(position[1]);
    const before = text.slice(0, offset).split("\n");
    const line = before.length;
    const column = before[before.length - 1]!.length + 1;
    const what = message.replace(/ in JSON at position \d+.*$/, "").replace(
      / at position \d+.*$/,
      "",
    );
    return fail(`invalid JSON at line ${line}, column ${column}: ${what}`);
  }
}

function isPlanFile(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null &&
    (value as Record<string, unknown>)["format"] === PLAN_FORMAT;
}

function firstLine(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.split("\n")[0]!.trim();
}
