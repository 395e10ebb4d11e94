/**
 * Parquet files from rows of plain data, byte for byte the same for the same rows: what the verl
 * export writes its train and eval data as, to be read by Hugging Face `datasets` (pyarrow).
 *
 * The columns are described by a small schema of plain data — `"string"`, `"int64"`, a `list` of
 * a type, a `struct` of named fields — lowered to Parquet's schema as pyarrow writes it: every
 * field OPTIONAL (pyarrow's nullable default), strings as `BYTE_ARRAY` annotated UTF8, lists in
 * the standard three levels (`<name>` LIST → repeated `list` → `element`), so that pyarrow reads
 * `list<element: struct<…>>` and `struct<…>` back. Every value is checked against the schema
 * first: a missing struct field would otherwise become a silent null.
 *
 * The writer is npm `hyparquet-writer` (pure JavaScript, one dependency, no WebAssembly): it
 * writes nested columns (Dremel levels) from an explicit schema, compresses with its own
 * deterministic Snappy, and writes no timestamp; its `created_by` is fixed here. Statistics are
 * off, as its string bounds are truncated to 16 bytes, which may cut a UTF-8 character; nothing
 * here filters on them.
 *
 * @module
 */

import { parquetWriteBuffer, type SchemaElement } from "hyparquet-writer";

/**
 * The type of a column or field: a UTF-8 string, a 64-bit integer, a list of one type, or a
 * struct of named fields (in order).
 *
 * @example
 * ```ts
 * const message: ParquetType = {
 *   struct: [{ name: "role", type: "string" }, { name: "content", type: "string" }],
 * };
 * const prompt: ParquetType = { list: message };
 * ```
 */
export type ParquetType =
  | "string"
  | "int64"
  | { list: ParquetType }
  | { struct: ParquetField[] };

/** A named column (or struct field) and its type. */
export interface ParquetField {
  name: string;
  type: ParquetType;
}

/** What `created_by` says in every file written here: no version, so the bytes never drift. */
export const CREATED_BY = "giftwrap";

/**
 * A value that does not fit its column's type; the message is one line naming where
 * (`row 3: prompt[0].role: expected a string, got number`).
 */
export class ParquetError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ParquetError";
  }
}

/** The Parquet schema elements of `field`, depth first, as pyarrow lays them out. */
function elementsOf(field: ParquetField): SchemaElement[] {
  const { name, type } = field;
  if (type === "string") {
    return [{ name, type: "BYTE_ARRAY", converted_type: "UTF8", repetition_type: "OPTIONAL" }];
  }
  if (type === "int64") return [{ name, type: "INT64", repetition_type: "OPTIONAL" }];
  if ("list" in type) {
    return [
      { name, repetition_type: "OPTIONAL", converted_type: "LIST", num_children: 1 },
      { name: "list", repetition_type: "REPEATED", num_children: 1 },
      ...elementsOf({ name: "element", type: type.list }),
    ];
  }
  if (type.struct.length === 0) {
    throw new ParquetError(`Cannot write struct '${name}' as it has no fields`);
  }
  return [
    { name, repetition_type: "OPTIONAL", num_children: type.struct.length },
    ...type.struct.flatMap(elementsOf),
  ];
}

/** What `value` is, for a message: `string`, `array`, `null`, … */
function kindOf(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  return typeof value;
}

/** `name` under the path `at` (`""` at a row's top). */
function under(at: string, name: string): string {
  return at === "" ? name : `${at}.${name}`;
}

/** `problem` as a message about the value at `at` (`""`: the row itself). */
function unfit(at: string, problem: string): ParquetError {
  return new ParquetError(at === "" ? problem : `${at}: ${problem}`);
}

/**
 * `value` as the writer takes it for `type` (int64 as a bigint), or a {@linkcode ParquetError}
 * naming `at` when it does not fit.
 */
function checked(value: unknown, type: ParquetType, at: string): unknown {
  if (type === "string") {
    if (typeof value !== "string") throw unfit(at, `expected a string, got ${kindOf(value)}`);
    return value;
  }
  if (type === "int64") {
    if (typeof value !== "number" || !Number.isSafeInteger(value)) {
      const got = typeof value === "number" ? String(value) : kindOf(value);
      throw unfit(at, `expected an integer, got ${got}`);
    }
    return BigInt(value);
  }
  if ("list" in type) {
    if (!Array.isArray(value)) throw unfit(at, `expected an array, got ${kindOf(value)}`);
    return value.map((item, i) => checked(item, type.list, `${at}[${i}]`));
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw unfit(at, `expected an object, got ${kindOf(value)}`);
  }
  const record = value as Record<string, unknown>;
  const names = type.struct.map((f) => f.name);
  const extra = Object.keys(record).find((key) => !names.includes(key));
  if (extra !== undefined) {
    throw unfit(
      under(at, extra),
      `expected only the fields ${names.join(", ")}, got '${extra}' too`,
    );
  }
  const out: Record<string, unknown> = {};
  for (const field of type.struct) {
    const path = under(at, field.name);
    if (!Object.hasOwn(record, field.name)) throw unfit(path, "expected a value, got none");
    out[field.name] = checked(record[field.name], field.type, path);
  }
  return out;
}

/**
 * The bytes of a Parquet file holding `rows` under `schema` (one column per field, in order):
 * Snappy-compressed, no statistics, `created_by` {@linkcode CREATED_BY}; the same rows give the
 * same bytes. Every value is checked against its type first.
 *
 * @throws {ParquetError} naming the first row and field whose value does not fit.
 *
 * @example
 * ```ts
 * const bytes = parquetBytes(
 *   [{ name: "id", type: "int64" }, { name: "tags", type: { list: "string" } }],
 *   [{ id: 1, tags: ["a", "b"] }, { id: 2, tags: [] }],
 * );
 * ```
 */
export function parquetBytes(
  schema: readonly ParquetField[],
  rows: readonly object[],
): Uint8Array {
  if (schema.length === 0) throw new ParquetError("Cannot write a Parquet file without columns");
  // hyparquet-writer marks a file's empty list of row groups with an invalid element type, which
  // arrow-rs (and so, likely, pyarrow) refuses to open: a file of no rows is never written.
  if (rows.length === 0) throw new ParquetError("Cannot write a Parquet file of no rows");
  const columns = schema.map((field) => ({ name: field.name, data: [] as unknown[] }));
  rows.forEach((row, r) => {
    let value: Record<string, unknown>;
    try {
      value = checked(row, { struct: [...schema] }, "") as Record<string, unknown>;
    } catch (e) {
      throw e instanceof ParquetError ? new ParquetError(`row ${r}: ${e.message}`) : e;
    }
    schema.forEach((field, c) => columns[c]!.data.push(value[field.name]));
  });
  const buffer = parquetWriteBuffer({
    columnData: columns,
    schema: [
      { name: "schema", num_children: schema.length },
      ...schema.flatMap(elementsOf),
    ],
    codec: "SNAPPY",
    statistics: false,
    createdBy: CREATED_BY,
  });
  return new Uint8Array(buffer);
}

/**
 * Writes `rows` under `schema` to the Parquet file `path` ({@linkcode parquetBytes}).
 *
 * @example
 * ```ts
 * await writeParquet("out/train.parquet", [{ name: "text", type: "string" }], [{ text: "hi" }]);
 * ```
 */
export async function writeParquet(
  path: string,
  schema: readonly ParquetField[],
  rows: readonly object[],
): Promise<void> {
  await Deno.writeFile(path, parquetBytes(schema, rows));
}
