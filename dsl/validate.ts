/**
 * `validateRecipe()`: checks any value against the recipe schema with ajv (draft 2020-12) and
 * returns the problems as data, one `{ path, message }` per problem, each naming the JSON path,
 * what was expected and what was given. Unknown keys get a "did you mean" suggestion; an option
 * given to the wrong objective names the objectives it belongs to.
 *
 * Cross-field checks (a group that a mini-batch would split, a KL coefficient without a
 * reference, …) belong to `compile()`.
 *
 * @module
 */

import { Ajv2020, type ErrorObject, type ValidateFunction } from "ajv/dist/2020";
import { closest } from "./_suggest.ts";
import {
  describe,
  jsonType,
  oneOf,
  type SchemaLike,
  unionKinds,
  variantKind,
} from "./_schema_walk.ts";
import { type Issue, joinPath, pointerToPath, showValue } from "./issues.ts";
import { type Recipe, recipeJsonSchema } from "./schema.ts";

/**
 * The outcome of `validateRecipe()`.
 *
 * @example
 * ```ts
 * const result: ValidationResult = validateRecipe(JSON.parse(text));
 * if (!result.ok) for (const issue of result.issues) console.error(formatIssue(issue));
 * ```
 */
export type ValidationResult =
  | { ok: true; recipe: Recipe }
  | { ok: false; issues: Issue[] };

const ROOT = recipeJsonSchema() as SchemaLike;
let compiled: ValidateFunction | undefined;

function validator(): ValidateFunction {
  compiled ??= new Ajv2020({ allErrors: true, verbose: true, discriminator: true, strict: true })
    .compile(ROOT);
  return compiled;
}

/** The object form of a kind given by name, where `{ kind }` and `kind()` alone are not it. */
const OBJECT_FORMS: Record<string, [json: string, ts: string]> = {
  custom: [
    '{ "kind": "custom", "module": "./my_objective.ts" }',
    'customObjective("./my_objective.ts")',
  ],
};

/**
 * Checks that `input` is a recipe. Returns the recipe (a plain-data copy) or every problem found.
 *
 * @example
 * ```ts
 * const result = validateRecipe({ ...recipe, group: { szie: 8, prompts: 16 } });
 * if (!result.ok) console.log(result.issues);
 * // [{ path: "group.szie", message: "unknown key (did you mean 'group.size'?)" }]
 * ```
 */
export function validateRecipe(input: unknown): ValidationResult {
  const validate = validator();
  if (validate(input)) {
    return { ok: true, recipe: JSON.parse(JSON.stringify(input)) as Recipe };
  }
  return { ok: false, issues: explain(validate.errors ?? []) };
}

/** Turns ajv's errors into one issue per problem. */
function explain(errors: readonly ErrorObject[]): Issue[] {
  const issues: Issue[] = [];
  const seen = new Set<string>();
  const add = (issue: Issue) => {
    if (seen.has(issue.path)) return;
    seen.add(issue.path);
    issues.push(issue);
  };
  for (const error of relevant(errors)) {
    const issue = explainOne(error);
    if (issue !== undefined) add(issue);
  }
  // A misspelt key is one mistake: "did you mean 'group.size'?" covers "group.size: missing".
  const suggested = new Set(
    issues.flatMap((i) => /^unknown key \(did you mean '([^']+)'\?\)$/.exec(i.message)?.[1] ?? []),
  );
  return issues.filter((i) => !(i.message.startsWith("missing") && suggested.has(i.path)));
}

/**
 * Drops the noise of `anyOf`: when the value's type matches exactly one branch, only that branch's
 * errors are kept; otherwise the branches' errors are replaced by the `anyOf` error itself, which
 * is then explained as "expected <every branch>".
 */
function relevant(errors: readonly ErrorObject[]): ErrorObject[] {
  let kept = [...errors];
  for (const any of errors.filter((e) => e.keyword === "anyOf")) {
    const branches = (any.schema as SchemaLike[]) ?? [];
    const matching = branches.flatMap((b, i) => b.type === jsonType(any.data) ? [i] : []);
    const prefix = `${any.schemaPath}/`;
    if (matching.length === 1) {
      const keep = `${prefix}${matching[0]}/`;
      kept = kept.filter((e) =>
        e !== any && (!e.schemaPath.startsWith(prefix) || e.schemaPath.startsWith(keep))
      );
    } else {
      kept = kept.filter((e) => !e.schemaPath.startsWith(prefix));
    }
  }
  return kept.filter((e) => e.keyword !== "oneOf");
}

function explainOne(error: ErrorObject): Issue | undefined {
  const path = pointerToPath(error.instancePath);
  const parent = error.parentSchema as SchemaLike | undefined;
  switch (error.keyword) {
    case "required": {
      const key = (error.params as { missingProperty: string }).missingProperty;
      const sub = parent?.properties?.[key];
      return {
        path: joinPath(path, key),
        message: `missing; expected ${sub === undefined ? "a value" : describe(sub)}`,
      };
    }
    case "additionalProperties": {
      const key = (error.params as { additionalProperty: string }).additionalProperty;
      return unknownKey(path, key, parent, error.schemaPath);
    }
    case "discriminator":
      return badKind(path, error);
    default: {
      if (parent === undefined) return { path, message: error.message ?? "invalid" };
      const given = showValue(error.data);
      const suggestion = parent.enum !== undefined && typeof error.data === "string"
        ? closest(error.data, parent.enum.map(String))
        : undefined;
      const more = suggestion === undefined ? "" : ` (did you mean '${suggestion}'?)`;
      const issue: Issue = { path, message: `expected ${describe(parent)}, got ${given}${more}` };
      if (typeof error.data === "string" && unionKinds(parent).includes(error.data)) {
        const [json, ts] = OBJECT_FORMS[error.data] ??
          [`{ "kind": "${error.data}" }`, `${error.data}()`];
        issue.hint = `write ${json}, or ${ts} in TypeScript`;
      }
      return issue;
    }
  }
}

function unknownKey(
  path: string,
  key: string,
  parent: SchemaLike | undefined,
  schemaPath: string,
): Issue {
  const known = Object.keys(parent?.properties ?? {});
  const suggestion = closest(key, known);
  if (suggestion !== undefined) {
    return {
      path: joinPath(path, key),
      message: `unknown key (did you mean '${joinPath(path, suggestion)}'?)`,
    };
  }
  const kind = parent === undefined ? undefined : variantKind(parent);
  const owners = kind === undefined ? [] : siblingsWithKey(schemaPath, key);
  const options = known.filter((k) => k !== "kind").map((k) => `'${k}'`);
  const accepts = options.length === 0 ? "it takes no options" : `it takes ${oneOf(options)}`;
  if (kind !== undefined && owners.length > 0) {
    return {
      path: joinPath(path, key),
      message: `'${key}' is not an option of ${kind} but of ${owners.join(", ")}; ${accepts}`,
    };
  }
  const expected = kind === undefined ? `expected ${oneOf(options)}` : accepts;
  return { path: joinPath(path, key), message: `unknown key; ${expected}` };
}

/** The other variants of the tagged union a variant sits in that do have `key`. */
function siblingsWithKey(schemaPath: string, key: string): string[] {
  // schemaPath looks like "#/properties/objective/oneOf/0/additionalProperties".
  const parts = schemaPath.replace(/^#\//, "").split("/");
  const unionParts = parts.slice(0, -3);
  const union = at(ROOT, unionParts);
  return (union?.oneOf ?? [])
    .filter((v) => v.properties?.[key] !== undefined)
    .map((v) => variantKind(v))
    .filter((k): k is string => k !== undefined);
}

function at(schema: SchemaLike, parts: readonly string[]): SchemaLike | undefined {
  let node: unknown = schema;
  for (const part of parts) {
    if (typeof node !== "object" || node === null) return undefined;
    node = (node as Record<string, unknown>)[part.replaceAll("~1", "/").replaceAll("~0", "~")];
  }
  return node as SchemaLike | undefined;
}

function badKind(path: string, error: ErrorObject): Issue {
  const kinds = unionKinds(error.parentSchema as SchemaLike);
  const expected = `expected ${oneOf(kinds.map((k) => `'${k}'`))}`;
  const data = error.data as Record<string, unknown>;
  const kindPath = joinPath(path, "kind");
  if (!("kind" in data) || data["kind"] === undefined) {
    return { path: kindPath, message: `missing; ${expected}` };
  }
  const given = data["kind"];
  const suggestion = typeof given === "string" ? closest(given, kinds) : undefined;
  const more = suggestion === undefined ? "" : ` (did you mean '${suggestion}'?)`;
  return { path: kindPath, message: `${expected}, got ${showValue(given)}${more}` };
}
