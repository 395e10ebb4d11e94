// parquetBytes() read back by an independent reader (npm hyparquet, not the writer's package):
// the same rows, nested lists and structs included, under the schema pyarrow writes for them;
// the same bytes for the same rows; one line naming the value that does not fit.

import assert from "node:assert/strict";
import { parquetMetadata, parquetReadObjects, parquetSchema, type SchemaTree } from "hyparquet";
import {
  CREATED_BY,
  parquetBytes,
  ParquetError,
  type ParquetField,
  writeParquet,
} from "../../../runtime/export/parquet.ts";
import { withTempDir } from "../../_helpers.ts";

/** A list of chat messages, a struct, and a struct holding an int64: verl's shapes. */
const SCHEMA: ParquetField[] = [
  { name: "source", type: "string" },
  {
    name: "messages",
    type: {
      list: { struct: [{ name: "role", type: "string" }, { name: "content", type: "string" }] },
    },
  },
  {
    name: "info",
    type: { struct: [{ name: "index", type: "int64" }, { name: "note", type: "string" }] },
  },
];

const ROWS = [
  {
    source: "a",
    messages: [{ role: "system", content: "Be brief." }, {
      role: "user",
      content: "Dis bonjour 👋",
    }],
    info: { index: 0, note: '{"x":[1,2]}' },
  },
  { source: "", messages: [], info: { index: 9_007_199_254_740_991, note: "" } },
  { source: "ü", messages: [{ role: "user", content: "" }], info: { index: -3, note: "\n" } },
];

/** The rows hyparquet reads from `bytes`, int64 as bigint. */
async function readBack(bytes: Uint8Array): Promise<Record<string, unknown>[]> {
  const file = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
  return await parquetReadObjects({ file: file as ArrayBuffer });
}

/** `rows` with each `info.index` a bigint, as a reader gives an int64. */
function withBigints(rows: typeof ROWS): unknown[] {
  return rows.map((row) => ({ ...row, info: { ...row.info, index: BigInt(row.info.index) } }));
}

/** A schema tree as `name(children)`, with each leaf's type and annotation. */
function shape(tree: SchemaTree): string {
  const { name, type, converted_type, repetition_type } = tree.element;
  const label = [name, repetition_type, type, converted_type].filter((s) => s !== undefined)
    .join(" ");
  return tree.children.length === 0 ? label : `${label}(${tree.children.map(shape).join(", ")})`;
}

Deno.test("parquetBytes() writes rows that hyparquet reads back, nested lists and structs included", async () => {
  const bytes = parquetBytes(SCHEMA, ROWS);
  assert.deepEqual(await readBack(bytes), withBigints(ROWS));
});

Deno.test("parquetBytes() lays the schema out as pyarrow does: three-level lists, optional UTF8 strings", () => {
  const bytes = parquetBytes(SCHEMA, ROWS);
  const metadata = parquetMetadata(bytes.buffer as ArrayBuffer);
  assert.equal(metadata.created_by, CREATED_BY);
  assert.equal(metadata.num_rows, 3n);
  assert.equal(
    shape(parquetSchema(metadata)),
    "schema(" +
      "source OPTIONAL BYTE_ARRAY UTF8, " +
      "messages OPTIONAL LIST(list REPEATED(element OPTIONAL(" +
      "role OPTIONAL BYTE_ARRAY UTF8, content OPTIONAL BYTE_ARRAY UTF8))), " +
      "info OPTIONAL(index OPTIONAL INT64, note OPTIONAL BYTE_ARRAY UTF8))",
  );
  // One leaf column per string or integer, named by its path.
  assert.deepEqual(
    metadata.row_groups[0]!.columns.map((c) => c.meta_data!.path_in_schema.join(".")),
    [
      "source",
      "messages.list.element.role",
      "messages.list.element.content",
      "info.index",
      "info.note",
    ],
  );
  assert.ok(metadata.row_groups[0]!.columns.every((c) => c.meta_data!.codec === "SNAPPY"));
});

Deno.test("parquetBytes() gives the same bytes for the same rows, other bytes for other rows", () => {
  const first = parquetBytes(SCHEMA, ROWS);
  const second = parquetBytes(SCHEMA, structuredClone(ROWS));
  assert.deepEqual(first, second);
  const changed = structuredClone(ROWS);
  changed[2]!.messages[0]!.content = "?";
  assert.notDeepEqual(parquetBytes(SCHEMA, changed), first);
});

Deno.test("parquetBytes() writes many rows (several row groups) and none", async () => {
  const many = Array.from({ length: 2_500 }, (_, i) => ({
    source: `s${i}`,
    messages: Array.from({ length: i % 3 }, (_, j) => ({ role: "user", content: `${i}.${j}` })),
    info: { index: i, note: "" },
  }));
  const bytes = parquetBytes(SCHEMA, many);
  assert.ok(parquetMetadata(bytes.buffer as ArrayBuffer).row_groups.length > 1);
  assert.deepEqual(await readBack(bytes), withBigints(many));
  // No rows: refused (the writer's footer would have an invalid type that arrow-rs rejects).
  assert.throws(() => parquetBytes(SCHEMA, []), /Cannot write a Parquet file of no rows/);
});

Deno.test("parquetBytes() refuses a value that does not fit, naming the row and the field", () => {
  const bad: [unknown, string][] = [
    [{ ...ROWS[0], source: 1 }, "row 1: source: expected a string, got number"],
    [
      { ...ROWS[0], messages: [{ role: "user" }] },
      "row 1: messages[0].content: expected a value, got none",
    ],
    [
      { ...ROWS[0], messages: [{ role: null, content: "" }] },
      "row 1: messages[0].role: expected a string, got null",
    ],
    [{ ...ROWS[0], messages: "hi" }, "row 1: messages: expected an array, got string"],
    [
      { ...ROWS[0], info: { index: 0.5, note: "" } },
      "row 1: info.index: expected an integer, got 0.5",
    ],
    [
      { ...ROWS[0], info: { index: 0, note: "", more: 1 } },
      "row 1: info.more: expected only the fields index, note, got 'more' too",
    ],
    [{ source: "a", messages: [] }, "row 1: info: expected a value, got none"],
  ];
  for (const [row, message] of bad) {
    assert.throws(
      () => parquetBytes(SCHEMA, [ROWS[1]!, row as object]),
      (e: unknown) => e instanceof ParquetError && e.message === message,
      message,
    );
  }
  assert.throws(
    () => parquetBytes(SCHEMA, [null as unknown as object]),
    { name: "ParquetError", message: "row 0: expected an object, got null" },
  );
});

Deno.test("writeParquet() writes parquetBytes() to a file", async () => {
  await withTempDir(async (dir) => {
    await writeParquet(`${dir}/rows.parquet`, SCHEMA, ROWS);
    assert.deepEqual(await Deno.readFile(`${dir}/rows.parquet`), parquetBytes(SCHEMA, ROWS));
  });
});
