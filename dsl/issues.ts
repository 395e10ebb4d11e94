/**
 * Problems with a recipe are data: `{ path, message, hint? }`, where `path` is the JSON path of the
 * field (`group.size`, `rewards[0].source.kind`; "" for the recipe itself), `message` says what was
 * expected and what was given, and `hint` suggests a fix.
 *
 * @module
 */

/**
 * One problem with a recipe, or one warning about it.
 *
 * @example
 * ```ts
 * const issue: Issue = {
 *   path: "group.size",
 *   message: "a group needs at least 2 completions to compare, got 1",
 *   hint: "set group.size to 2 or more (8 is common)",
 * };
 * ```
 */
export interface Issue {
  /** The field's JSON path, such as `group.size` or `rewards[1].weight`; "" is the whole recipe. */
  path: string;
  /** What was expected and what was given. */
  message: string;
  /** A suggested fix, when there is one. */
  hint?: string;
}

/**
 * Thrown by `compile()` when a recipe is invalid; `issues` holds every problem found.
 *
 * @example
 * ```ts
 * try {
 *   compile({ ...base, group: { size: 1, prompts: 16 } });
 * } catch (e) {
 *   if (e instanceof RecipeError) console.error(e.issues.map(formatIssue).join("\n"));
 * }
 * ```
 */
export class RecipeError extends Error {
  /** Every problem found. */
  readonly issues: readonly Issue[];

  constructor(issues: readonly Issue[]) {
    super(
      issues.length === 1
        ? `Invalid recipe: ${formatIssue(issues[0]!)}`
        : `Invalid recipe (${issues.length} issues):\n${issues.map(formatIssue).join("\n")}`,
    );
    this.name = "RecipeError";
    this.issues = issues;
  }
}

/**
 * One line for an issue: `path: message; fix: hint`.
 *
 * @example
 * ```ts
 * formatIssue({ path: "group.size", message: "expected an integer >= 1, got 0" });
 * // "group.size: expected an integer >= 1, got 0"
 * ```
 */
export function formatIssue(issue: Issue): string {
  const where = issue.path === "" ? "recipe" : issue.path;
  const fix = issue.hint === undefined ? "" : `; fix: ${issue.hint}`;
  return `${where}: ${issue.message}${fix}`;
}

/** Appends a key or an index to a JSON path: `join("rewards", 0)` is `rewards[0]`. */
export function joinPath(path: string, key: string | number): string {
  if (typeof key === "number") return `${path}[${key}]`;
  if (/^[A-Za-z_$][A-Za-z0-9_$]*$/.test(key)) return path === "" ? key : `${path}.${key}`;
  return `${path}[${JSON.stringify(key)}]`;
}

/** Turns a JSON pointer (`/rewards/0/weight`) into a JSON path (`rewards[0].weight`). */
export function pointerToPath(pointer: string): string {
  if (pointer === "") return "";
  return pointer.slice(1).split("/").reduce((path, raw) => {
    const key = raw.replaceAll("~1", "/").replaceAll("~0", "~");
    return /^(0|[1-9][0-9]*)$/.test(key) ? joinPath(path, Number(key)) : joinPath(path, key);
  }, "");
}

/** A short rendering of a given value for messages: `1`, `'ppo'`, `an object`, `NaN`. */
export function showValue(value: unknown): string {
  if (value === undefined) return "nothing";
  if (value === null) return "null";
  if (typeof value === "string") {
    const s = value.length > 40 ? `${value.slice(0, 37)}...` : value;
    return `'${s}'`;
  }
  if (typeof value === "number" || typeof value === "boolean" || typeof value === "bigint") {
    return String(value);
  }
  if (typeof value === "function") return "a function";
  if (Array.isArray(value)) {
    const json = safeJson(value);
    return json !== undefined && json.length <= 40 ? json : `an array of ${value.length} items`;
  }
  if (typeof value === "object") {
    const json = safeJson(value);
    return json !== undefined && json.length <= 40 ? json : "an object";
  }
  return typeof value;
}

function safeJson(value: unknown): string | undefined {
  try {
    return JSON.stringify(value);
  } catch {
    return undefined;
  }
}
