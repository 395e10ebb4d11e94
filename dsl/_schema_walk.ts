/**
 * Walks the recipe schema for two things that must not be written twice: filling in the
 * `default` annotations, and describing a schema in words for error messages.
 *
 * @module
 */

/** The subset of JSON Schema this project's schema uses. */
export interface SchemaLike {
  type?: string;
  enum?: readonly unknown[];
  const?: unknown;
  default?: unknown;
  properties?: Record<string, SchemaLike>;
  required?: readonly string[];
  items?: SchemaLike;
  prefixItems?: readonly SchemaLike[];
  oneOf?: readonly SchemaLike[];
  anyOf?: readonly SchemaLike[];
  discriminator?: { propertyName: string };
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  exclusiveMaximum?: number;
  minLength?: number;
  maxLength?: number;
  minItems?: number;
  maxItems?: number;
  pattern?: string;
  description?: string;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** The kind a variant of a tagged union stands for. */
export function variantKind(schema: SchemaLike): string | undefined {
  const tag = schema.properties?.["kind"]?.const;
  return typeof tag === "string" ? tag : undefined;
}

/** The kinds a tagged union accepts, in schema order. */
export function unionKinds(schema: SchemaLike): string[] {
  return (schema.oneOf ?? []).map(variantKind).filter((k): k is string => k !== undefined);
}

/**
 * Returns a copy of a valid `value` with every `default` of `schema` filled in, in the schema's key
 * order. An absent optional section whose fields are all optional is filled as if it were `{}`,
 * so `sampling` absent resolves to `{ temperature: 1, topP: 1, topK: 0 }`.
 */
export function fillDefaults(schema: SchemaLike, value: unknown): unknown {
  if (schema.discriminator !== undefined && isRecord(value)) {
    const branch = schema.oneOf?.find((v) => variantKind(v) === value["kind"]);
    return branch === undefined ? value : fillDefaults(branch, value);
  }
  if (schema.anyOf !== undefined) {
    const branch = schema.anyOf.find((b) => jsonType(value) === b.type);
    return branch === undefined ? value : fillDefaults(branch, value);
  }
  if (schema.properties !== undefined && isRecord(value)) {
    const out: Record<string, unknown> = {};
    for (const [key, sub] of Object.entries(schema.properties)) {
      if (value[key] !== undefined) out[key] = fillDefaults(sub, value[key]);
      else if (sub.default !== undefined) out[key] = structuredClone(sub.default);
      else if (isOptionalSection(sub)) out[key] = fillDefaults(sub, {});
    }
    return out;
  }
  if (schema.items !== undefined && Array.isArray(value)) {
    return value.map((item) => fillDefaults(schema.items!, item));
  }
  return structuredClone(value);
}

/**
 * Whether an absent `schema` is filled as `{}`: an object of optional fields some of which have
 * defaults. One without defaults (`policy.lora`) is a choice the recipe makes by writing it.
 */
function isOptionalSection(schema: SchemaLike): boolean {
  return schema.type === "object" && schema.properties !== undefined &&
    schema.discriminator === undefined && (schema.required ?? []).length === 0 &&
    Object.values(schema.properties).some((p) => p.default !== undefined || isOptionalSection(p));
}

/** The JSON type of a value: "null", "array", or its `typeof` ("object", "string", …). */
export function jsonType(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  return typeof value;
}

/**
 * Describes what a schema accepts, for "expected …" messages.
 *
 * @example
 * ```ts
 * describe({ type: "integer", minimum: 1 }); // "an integer >= 1"
 * ```
 */
export function describe(schema: SchemaLike): string {
  if (schema.enum !== undefined) return oneOf(schema.enum.map(show));
  if (schema.const !== undefined) return show(schema.const);
  if (schema.discriminator !== undefined) {
    return `an object with kind ${oneOf(unionKinds(schema).map(show))}`;
  }
  if (schema.anyOf !== undefined) return schema.anyOf.map(describe).join(", or ");
  switch (schema.type) {
    case "integer":
      return `an integer${bounds(schema)}`;
    case "number":
      return `a number${bounds(schema)}`;
    case "boolean":
      return "true or false";
    case "string":
      return describeString(schema);
    case "array":
      return describeArray(schema);
    case "object": {
      // Name the keys of small objects only ("an object { checkpoint }"), up to a reward entry's.
      const keys = Object.keys(schema.properties ?? {});
      const required = schema.required ?? [];
      if (keys.length > 0 && keys.length <= 5) return `an object { ${keys.join(", ")} }`;
      return required.length > 0 ? `an object with ${required.join(", ")}` : "an object";
    }
    default:
      return "a value";
  }
}

function describeString(schema: SchemaLike): string {
  const base = (schema.minLength ?? 0) >= 1 ? "a non-empty string" : "a string";
  const parts = [base];
  if (schema.pattern !== undefined) parts.push(`matching /${schema.pattern}/`);
  if (schema.maxLength !== undefined) parts.push(`of at most ${schema.maxLength} characters`);
  return parts.join(" ");
}

function describeArray(schema: SchemaLike): string {
  if (schema.prefixItems !== undefined) {
    return `a pair [${schema.prefixItems.map((s) => s.type ?? "value").join(", ")}]`;
  }
  const item = schema.items === undefined ? "a value" : describe(schema.items);
  const min = schema.minItems ?? 0;
  const max = schema.maxItems;
  const count = max === undefined
    ? (min > 0 ? `at least ${min} ` : "")
    : (min > 0 ? `${min} to ${max} ` : `at most ${max} `);
  return `a list of ${count}items, each ${item}`;
}

function bounds(schema: SchemaLike): string {
  const lo = schema.minimum ?? schema.exclusiveMinimum;
  const hi = schema.maximum ?? schema.exclusiveMaximum;
  const loOpen = schema.minimum === undefined && schema.exclusiveMinimum !== undefined;
  const hiOpen = schema.maximum === undefined && schema.exclusiveMaximum !== undefined;
  if (lo !== undefined && hi !== undefined) {
    if (!loOpen && !hiOpen) return ` between ${lo} and ${hi}`;
    return ` in ${loOpen ? "(" : "["}${lo}, ${hi}${hiOpen ? ")" : "]"}`;
  }
  if (lo !== undefined) return loOpen ? ` > ${lo}` : ` >= ${lo}`;
  if (hi !== undefined) return hiOpen ? ` < ${hi}` : ` <= ${hi}`;
  return "";
}

function show(value: unknown): string {
  return typeof value === "string" ? `'${value}'` : String(value);
}

/** "'a'", "'a' or 'b'", "one of 'a', 'b', 'c'". */
export function oneOf(items: readonly string[]): string {
  if (items.length === 1) return items[0]!;
  if (items.length === 2) return `${items[0]} or ${items[1]}`;
  return `one of ${items.join(", ")}`;
}
