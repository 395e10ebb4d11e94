// The verl data files read by a second, independent reader: Apache Arrow's own Parquet reader
// (arrow-rs, through npm parquet-wasm), decoded with Apache Arrow's JavaScript library. A file
// without Arrow metadata is typed from its Parquet schema alone, as pyarrow types it (which is
// what Hugging Face `datasets` hands verl): the exact Arrow schema of each column, list item
// and struct field is checked, and every row's values, nested and unicode included, across
// several row groups and several data pages per column (a list's levels split between pages).

import assert from "node:assert/strict";
import { parquetMetadata } from "hyparquet";
import { DataType, type Field, type Table, tableFromIPC } from "apache-arrow";
import { readParquet } from "parquet-wasm";
import { parquetBytes } from "../../../runtime/export/parquet.ts";
import {
  VERL_SCHEMA,
  type VerlRow,
  verlRows,
  writeVerlData,
} from "../../../runtime/export/verl_data.ts";
import { withTempDir } from "../../_helpers.ts";
import { tinyPlan } from "../_tiny.ts";

/** The Arrow table arrow-rs reads from the Parquet bytes. */
function arrowTable(bytes: Uint8Array): Table {
  return tableFromIPC(readParquet(bytes).intoIPCStream());
}

/** `field` as pyarrow prints it: `name: type`, children named, `not null` where it is so. */
function described(field: Field): string {
  const children = field.type.children as Field[] | null;
  const nullable = field.nullable ? "" : " not null";
  if (DataType.isList(field.type)) {
    return `${field.name}: list<${described(children![0]!)}>${nullable}`;
  }
  if (DataType.isStruct(field.type)) {
    return `${field.name}: struct<${children!.map(described).join(", ")}>${nullable}`;
  }
  return `${field.name}: ${field.type}${nullable}`;
}

/** The rows of `table` as plain objects: lists as arrays, structs as objects, int64 as bigint. */
function rowsOf(table: Table): unknown[] {
  return table.toArray().map((row) => plain(row));
}

/** An Arrow value (a struct row, a list vector, a leaf) as plain data. */
function plain(value: unknown): unknown {
  if (value === null || typeof value !== "object") return value;
  if (Symbol.iterator in value && typeof (value as { toArray?: unknown }).toArray === "function") {
    return [...(value as Iterable<unknown>)].map(plain);
  }
  const json = (value as { toJSON(): Record<string, unknown> }).toJSON();
  return Object.fromEntries(Object.entries(json).map(([k, v]) => [k, plain(v)]));
}

/** `rows` as a reader gives them back: `extra_info.index` an int64 (bigint). */
function asRead(rows: VerlRow[]): unknown[] {
  return rows.map((row) => ({
    ...row,
    extra_info: { ...row.extra_info, index: BigInt(row.extra_info.index) },
  }));
}

/**
 * What pyarrow reads for verl's columns: every field nullable (Parquet OPTIONAL), strings utf8
 * (Arrow's `Utf8`), the three-level list's item named `element`, `extra_info.index` an int64.
 */
const VERL_ARROW = [
  "data_source: Utf8",
  "prompt: list<element: struct<role: Utf8, content: Utf8>>",
  "ability: Utf8",
  "reward_model: struct<style: Utf8, ground_truth: Utf8>",
  "extra_info: struct<split: Utf8, index: Int64, prompt: Utf8, answer: Utf8, row: Utf8>",
];

/** Rows of every shape verl's data takes: no messages, several, unicode, empty and long text. */
function rowsAt(count: number, split: "train" | "eval"): VerlRow[] {
  const texts = ["", "Dis bonjour 👋 — ça va ?", '数学\n\t"quoted" \\ back', "x".repeat(6_000)];
  return Array.from({ length: count }, (_, i) => ({
    data_source: `giftwrap/arrow-${i % 2}`,
    prompt: Array.from({ length: i % 4 }, (_, j) => ({
      role: j === 0 ? "system" : "user",
      content: `${texts[(i + j) % texts.length]}#${i}.${j}`,
    })),
    ability: i % 5 === 0 ? "" : "jsonl",
    reward_model: { style: "rule", ground_truth: texts[i % texts.length]! },
    extra_info: {
      split,
      index: i === 7 ? Number.MAX_SAFE_INTEGER : i === 8 ? -1 : i,
      prompt: `Ünïcödé ${i}`,
      answer: String(i * 3),
      row: JSON.stringify({ question: `q${i} 🧮`, answer: i }),
    },
  }));
}

Deno.test("arrow-rs reads verl's columns with the Arrow types pyarrow gives them", () => {
  const table = arrowTable(parquetBytes(VERL_SCHEMA, rowsAt(4, "train")));
  assert.deepEqual(table.schema.fields.map(described), VERL_ARROW);
  // The same, by Arrow type ids, leaf by leaf.
  const [source, prompt, ability, reward, extra] = table.schema.fields;
  assert.ok(DataType.isUtf8(source!.type) && DataType.isUtf8(ability!.type));
  assert.ok(DataType.isList(prompt!.type));
  const message = prompt!.type.children[0]!.type;
  assert.ok(DataType.isStruct(message));
  assert.ok(message.children.every((f) => DataType.isUtf8(f.type)));
  assert.ok(DataType.isStruct(reward!.type));
  assert.ok(reward!.type.children.every((f) => DataType.isUtf8(f.type)));
  assert.ok(DataType.isStruct(extra!.type));
  const index = extra!.type.children[1]!;
  assert.ok(DataType.isInt(index.type) && index.type.bitWidth === 64 && index.type.isSigned);
  assert.equal(table.numRows, 4);
});

Deno.test("arrow-rs reads writeVerlData()'s files back as the rows, across row groups and pages", async () => {
  // 1,000 rows a row group, then more; about 1 MiB a data page: several of each.
  const rows = { train: rowsAt(2_600, "train"), eval: rowsAt(9, "eval") };
  await withTempDir(async (dir) => {
    const files = await writeVerlData(rows, dir);
    for (const [split, path] of [["train", files.train], ["eval", files.eval!]] as const) {
      const table = arrowTable(await Deno.readFile(path));
      assert.deepEqual(table.schema.fields.map(described), VERL_ARROW);
      assert.equal(table.numRows, rows[split].length);
      assert.deepEqual(rowsOf(table), asRead(rows[split]));
    }
    // Several row groups, and over 2 MiB of message text in each (pages end at 1 MiB, on a row).
    const train = await Deno.readFile(files.train);
    const groups = parquetMetadata(train.buffer as ArrayBuffer).row_groups;
    assert.equal(groups.length, 2);
    for (const group of groups) {
      const content = group.columns.find((c) =>
        c.meta_data!.path_in_schema.join(".") === "prompt.list.element.content"
      );
      assert.ok(content!.meta_data!.total_uncompressed_size > 2n * 1024n * 1024n);
    }
  });
});

Deno.test("arrow-rs reads a synthetic task's verl rows", async () => {
  const rows = await verlRows(tinyPlan(), "file:///");
  for (const split of [rows.train, rows.eval]) {
    const table = arrowTable(parquetBytes(VERL_SCHEMA, split));
    assert.deepEqual(table.schema.fields.map(described), VERL_ARROW);
    assert.deepEqual(rowsOf(table), asRead(split));
  }
});
