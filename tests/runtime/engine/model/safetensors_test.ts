import assert from "node:assert/strict";
import {
  decodeSafetensors,
  encodeSafetensors,
  readSafetensorsFile,
  type TensorData,
  writeFileAtomic,
} from "../../../../runtime/engine/model/safetensors.ts";
import { withTempDir } from "../../../_helpers.ts";

const f32 = (shape: number[], values: number[]): TensorData => ({
  dtype: "F32",
  shape,
  data: new Float32Array(values),
});

/** A file from a header (as JSON text, padded here by hand) and the data bytes after it. */
function file(header: string, data: number[], pad = (8 - (header.length % 8)) % 8): Uint8Array {
  const json = new TextEncoder().encode(header + " ".repeat(pad));
  const n = json.length;
  return new Uint8Array([n & 0xff, n >> 8, 0, 0, 0, 0, 0, 0, ...json, ...data]);
}

/** The uint32 bit patterns of a Float32Array, to compare NaN and -0 exactly. */
function bits(data: Float32Array): number[] {
  return Array.from(new Uint32Array(data.buffer, data.byteOffset, data.length));
}

Deno.test("encodeSafetensors() and decodeSafetensors() round-trip bit for bit", () => {
  const weird = new Float32Array(new Uint32Array([0x7fc00001, 0xffc12345, 0x80000000, 0x1]).buffer);
  const tensors: Record<string, TensorData> = {
    "z.weight": f32([2, 3], [1, -2, 3.5, 1e-30, 3e38, -0]),
    "a": { dtype: "F32", shape: [4], data: weird },
    "scalar": f32([], [42]),
    "empty": f32([0, 5], []),
    "b.bias": f32([3], [Infinity, -Infinity, NaN]),
  };
  const metadata = { format: "pt", step: "10", "ünï": "cödé ✓" };
  const bytes = encodeSafetensors(tensors, metadata);
  const decoded = decodeSafetensors(bytes);
  assert.deepEqual(decoded.metadata, metadata);
  assert.deepEqual(Object.keys(decoded.tensors).sort(), Object.keys(tensors).sort());
  for (const [name, t] of Object.entries(tensors)) {
    const got = decoded.tensors[name]!;
    assert.equal(got.dtype, "F32");
    assert.deepEqual(got.shape, t.shape, name);
    assert.deepEqual(bits(got.data), bits(t.data), name);
  }
  // The header is padded to a multiple of 8, so the data starts 8-aligned.
  const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  assert.equal(n % 8, 0);
  // Without metadata there is no __metadata__ entry, and decoding gives {}.
  const plain = encodeSafetensors({ x: f32([1], [1]) });
  assert.ok(!new TextDecoder().decode(plain).includes("__metadata__"));
  assert.deepEqual(decodeSafetensors(plain).metadata, {});
  // Decoding copies: the tensors do not alias the file's bytes.
  decoded.tensors["z.weight"]!.data[0] = 99;
  assert.equal(decodeSafetensors(bytes).tensors["z.weight"]!.data[0], 1);
});

Deno.test("encodeSafetensors() writes the bytes the Python library writes", () => {
  // Recorded from `safetensors.numpy.save({"b": [[1, -2]], "a": [0.5]}, metadata={"format": "pt"})`
  // (safetensors 0.8.0): metadata first, tensors in name order, compact JSON, 3 spaces of padding.
  const header = '{"__metadata__":{"format":"pt"},' +
    '"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},' +
    '"b":{"dtype":"F32","shape":[1,2],"data_offsets":[4,12]}}   ';
  // deno-fmt-ignore
  const expected = [
    144, 0, 0, 0, 0, 0, 0, 0,
    ...new TextEncoder().encode(header),
    0x00, 0x00, 0x00, 0x3f, // 0.5
    0x00, 0x00, 0x80, 0x3f, // 1
    0x00, 0x00, 0x00, 0xc0, // -2
  ];
  const bytes = encodeSafetensors({ b: f32([1, 2], [1, -2]), a: f32([1], [0.5]) }, {
    format: "pt",
  });
  assert.deepEqual(Array.from(bytes), expected);
});

Deno.test("decodeSafetensors() reads a tiny hand-built file", () => {
  // Header: 190 bytes of JSON + 2 spaces = 192 = [192, 0, …]; data: 2 F32 tensors, 1 BF16.
  const header = '{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},' +
    '"__metadata__":{"k":"v"},"s":{"dtype":"F32","shape":[],"data_offsets":[8,12]},' +
    '"h":{"dtype":"BF16","shape":[1,1],"data_offsets":[12,14]}}';
  const bytes = file(header, [
    0x00,
    0x00,
    0x80,
    0x3f, // 1
    0x00,
    0x00,
    0x00,
    0xc0, // -2
    0x00,
    0x00,
    0x20,
    0x41, // 10
    0xc0,
    0x3f, // bf16 0x3fc0 = 1.5
  ]);
  const { tensors, metadata } = decodeSafetensors(bytes);
  assert.deepEqual(metadata, { k: "v" });
  assert.deepEqual(tensors, {
    w: { dtype: "F32", shape: [2], data: new Float32Array([1, -2]) },
    s: { dtype: "F32", shape: [], data: new Float32Array([10]) },
    h: { dtype: "F32", shape: [1, 1], data: new Float32Array([1.5]) },
  });
  // A decoder must not assume the file starts at byte 0 of its buffer.
  const shifted = new Uint8Array(bytes.length + 3);
  shifted.set(bytes, 3);
  assert.deepEqual(decodeSafetensors(shifted.subarray(3)).tensors, tensors);
});

Deno.test("decodeSafetensors() widens BF16 to hand-computed floats", () => {
  // bf16 is the top 16 bits of a float32, stored little-endian.
  const halves = [0x3f80, 0xc040, 0x4049, 0x0001, 0x7f80, 0xff80, 0x8000, 0x7fc0];
  // deno-fmt-ignore
  const expected = [1, -3, 3.140625, 2 ** -133, Infinity, -Infinity, -0, NaN];
  const bytes = file(
    `{"x":{"dtype":"BF16","shape":[8],"data_offsets":[0,16]}}`,
    halves.flatMap((h) => [h & 0xff, h >> 8]),
  );
  const { data } = decodeSafetensors(bytes).tensors["x"]!;
  assert.deepEqual(Array.from(data), expected); // deepEqual tells -0 from 0 and matches NaN
  assert.deepEqual(bits(data), halves.map((h) => (h << 16) >>> 0)); // exact, NaN bits included
});

Deno.test("decodeSafetensors() widens F16 to hand-computed floats", () => {
  const halves = [
    0x3c00, // 1
    0xc000, // -2
    0x3555, // 1 + 341/1024 times 2^-2 = 0.333251953125
    0x0001, // smallest subnormal, 2^-24
    0x03ff, // largest subnormal, 1023 · 2^-24
    0x0400, // smallest normal, 2^-14
    0x7bff, // largest finite, 65504
    0x7c00, // Infinity
    0xfc00, // -Infinity
    0x8000, // -0
    0x7e00, // NaN
  ];
  // deno-fmt-ignore
  const expected = [
    1,
    -2,
    0.333251953125,
    2 ** -24,
    1023 * 2 ** -24,
    2 ** -14,
    65504,
    Infinity,
    -Infinity,
    -0,
    NaN,
  ];
  const bytes = file(
    `{"x":{"dtype":"F16","shape":[11],"data_offsets":[0,22]}}`,
    halves.flatMap((h) => [h & 0xff, h >> 8]),
  );
  const { tensors } = decodeSafetensors(bytes);
  assert.deepEqual(tensors["x"]!.shape, [11]);
  assert.deepEqual(Array.from(tensors["x"]!.data), expected);
});

Deno.test("readSafetensorsFile() reads F32, F16 and BF16 tensor by tensor, reporting each dtype", async () => {
  // F16: 1, -2.5, 65504, 2^-24 (subnormal), -Infinity, NaN; BF16: 1 (0x3f80), -2.5 (0xc020).
  const f16 = [0x3c00, 0xc100, 0x7bff, 0x0001, 0xfc00, 0x7e00];
  const bf16 = [0x3f80, 0xc020];
  const header = '{"h":{"dtype":"F16","shape":[2,3],"data_offsets":[0,12]},' +
    '"b":{"dtype":"BF16","shape":[2],"data_offsets":[16,20]},' +
    '"f":{"dtype":"F32","shape":[1],"data_offsets":[12,16]}}';
  const bytes = file(header, [
    ...f16.flatMap((h) => [h & 0xff, h >> 8]),
    0x00,
    0x00,
    0x20,
    0xc0, // F32 -2.5
    ...bf16.flatMap((h) => [h & 0xff, h >> 8]),
  ]);
  await withTempDir(async (dir) => {
    await Deno.writeFile(`${dir}/m.safetensors`, bytes);
    const seen: unknown[] = [];
    const read = await readSafetensorsFile(`${dir}/m.safetensors`, {
      inspect: (tensors) => seen.push(...tensors),
    });
    // The header is shown in data order, before the data is read.
    assert.deepEqual(seen, [
      { name: "h", dtype: "F16", shape: [2, 3] },
      { name: "f", dtype: "F32", shape: [1] },
      { name: "b", dtype: "BF16", shape: [2] },
    ]);
    assert.deepEqual(read.dtypes, { h: "F16", f: "F32", b: "BF16" });
    assert.deepEqual(read.tensors, {
      h: {
        dtype: "F32",
        shape: [2, 3],
        data: Float32Array.of(1, -2.5, 65504, 2 ** -24, -Infinity, NaN),
      },
      f: { dtype: "F32", shape: [1], data: Float32Array.of(-2.5) },
      b: { dtype: "F32", shape: [2], data: Float32Array.of(1, -2.5) },
    });
    assert.deepEqual(read, decodeSafetensors(bytes));
    // An inspect that throws refuses the file before its data is read.
    await assert.rejects(
      () =>
        readSafetensorsFile(`${dir}/m.safetensors`, {
          inspect: () => {
            throw new Error("no");
          },
        }),
      { message: "no" },
    );
  });
});

Deno.test("decodeSafetensors() rejects malformed files, naming the problem", () => {
  const t = (dtype: string, shape: string, offsets: string) =>
    `"t":{"dtype":"${dtype}","shape":${shape},"data_offsets":${offsets}}`;
  const four = [0, 0, 128, 63];
  const cases: [string, Uint8Array, RegExp][] = [
    ["a short file", new Uint8Array(5), /file is 5 bytes, too short for the 8-byte header length/],
    [
      "a header length beyond the file",
      new Uint8Array([200, 0, 0, 0, 0, 0, 0, 0, 123, 125]),
      /header length 200 is beyond the file \(2 bytes after it\)/,
    ],
    [
      "a huge header length",
      new Uint8Array([0, 0, 0, 0, 0, 0, 0, 128, 123]),
      /header length 9223372036854775808 is beyond the file/,
    ],
    ["a header that is not JSON", file("{not json", []), /header is not UTF-8 JSON/],
    ["a header that is not UTF-8", file("{}", [], 6).fill(0xff, 9, 10), /header is not UTF-8/],
    ["a header that is an array", file("[]", []), /header must be a JSON object/],
    [
      "an unknown dtype",
      file(`{${t("I64", "[1]", "[0,8]")}}`, [...four, ...four]),
      /tensor 't' has unknown dtype "I64": expected one of F32, F16, BF16/,
    ],
    [
      "a bad shape",
      file(`{${t("F32", "[-1]", "[0,4]")}}`, four),
      /tensor 't' must have a shape of integers >= 0/,
    ],
    [
      "bad offsets",
      file(`{${t("F32", "[1]", "[4,0]")}}`, four),
      /tensor 't' must have data_offsets \[begin, end\] with 0 <= begin <= end/,
    ],
    [
      "offsets beyond the data",
      file(`{${t("F32", "[2]", "[0,8]")}}`, four),
      /tensor 't' has data_offsets \[0, 8\] beyond the data \(4 bytes\)/,
    ],
    [
      "a shape that does not match the bytes",
      file(`{${t("F32", "[2]", "[0,4]")}}`, four),
      /tensor 't' has shape \[2\] of F32, which needs 8 bytes, but data_offsets \[0, 4\] hold 4/,
    ],
    [
      "overlapping tensors",
      file(
        `{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`,
        [...four, ...four],
      ),
      /tensor 'b' at \[4, 8\) overlaps tensor 'a' ending at 8/,
    ],
    [
      "a gap between tensors",
      file(
        `{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}`,
        [...four, ...four, ...four],
      ),
      /gap of 4 bytes before tensor 'b' at 8/,
    ],
    [
      "bytes after the last tensor",
      file(`{${t("F32", "[1]", "[0,4]")}}`, [...four, 0]),
      /tensors cover 4 bytes but the data after the header is 5/,
    ],
    [
      "metadata that is not strings",
      file(`{"__metadata__":{"step":10}}`, []),
      /metadata 'step' must be a string: current value is 10/,
    ],
    ["a tensor entry that is not an object", file(`{"t":3}`, []), /tensor 't' must be an object/],
  ];
  for (const [what, bytes, message] of cases) {
    assert.throws(() => decodeSafetensors(bytes), message, what);
    assert.throws(() => decodeSafetensors(bytes), /^Error: Cannot decode safetensors as /, what);
  }
});

Deno.test("encodeSafetensors() rejects a shape that does not match the data", () => {
  assert.throws(
    () => encodeSafetensors({ w: f32([2, 2], [1, 2, 3]) }),
    /tensor 'w' has shape \[2,2\] but 3 values/,
  );
  assert.throws(() => encodeSafetensors({ w: f32([1.5], [1]) }), /tensor 'w' has shape \[1.5\]/);
  assert.throws(
    () => encodeSafetensors({ __metadata__: f32([1], [1]) }),
    /'__metadata__' is reserved/,
  );
  assert.throws(
    () => encodeSafetensors({}, { step: 10 as unknown as string }),
    /metadata 'step' must be a string/,
  );
});

Deno.test("writeFileAtomic() replaces a file and leaves no temporary file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/model.safetensors`;
    await Deno.writeTextFile(path, "old contents that are longer than the new ones");
    const bytes = encodeSafetensors({ w: f32([2], [1, 2]) });
    await writeFileAtomic(path, bytes);
    assert.deepEqual(await Deno.readFile(path), bytes);
    await writeFileAtomic(`${dir}/config.json`, '{"a":1}');
    assert.equal(await Deno.readTextFile(`${dir}/config.json`), '{"a":1}');
    const names = [];
    for await (const entry of Deno.readDir(dir)) names.push(entry.name);
    assert.deepEqual(names.sort(), ["config.json", "model.safetensors"]);
    // A failed write (the directory does not exist) throws and leaves nothing behind.
    await assert.rejects(writeFileAtomic(`${dir}/missing/x.json`, "{}"), Deno.errors.NotFound);
    const after = [];
    for await (const entry of Deno.readDir(dir)) after.push(entry.name);
    assert.equal(after.length, 2);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("readSafetensorsFile() reads what encodeSafetensors() wrote, and only a file of the size its header declares", async () => {
  await withTempDir(async (dir) => {
    const data = new Float32Array([1, 2, 3, 4, 5, 6]);
    const bytes = encodeSafetensors({ w: { dtype: "F32", shape: [2, 3], data } });
    await Deno.writeFile(`${dir}/ok.safetensors`, bytes);
    const { tensors } = await readSafetensorsFile(`${dir}/ok.safetensors`);
    assert.deepEqual(tensors["w"], { dtype: "F32", shape: [2, 3], data });

    // 1 GiB past the declared end (sparse): refused from the header and the size, unread.
    const long = await Deno.open(`${dir}/long.safetensors`, { write: true, create: true });
    await long.write(bytes);
    await long.truncate(bytes.length + 2 ** 30);
    long.close();
    await assert.rejects(
      () => readSafetensorsFile(`${dir}/long.safetensors`),
      new Error(
        `Cannot read safetensors '${dir}/long.safetensors' as its header declares ` +
          `${bytes.length} bytes (8 + header ${bytes.length - 32} + data 24), but the file is ` +
          `${bytes.length + 2 ** 30}`,
      ),
    );
    await Deno.writeFile(`${dir}/short.safetensors`, bytes.subarray(0, bytes.length - 4));
    await assert.rejects(
      () => readSafetensorsFile(`${dir}/short.safetensors`),
      /^Error: Cannot read safetensors '.*short\.safetensors' as its header declares \d+ bytes .*, but the file is \d+$/,
    );
    // A header length beyond the 100 MB limit is refused before the header is read.
    const huge = new Uint8Array(16);
    new DataView(huge.buffer).setBigUint64(0, 200_000_000n, true);
    await Deno.writeFile(`${dir}/huge.safetensors`, huge);
    await assert.rejects(
      () => readSafetensorsFile(`${dir}/huge.safetensors`),
      new Error(
        `Cannot read safetensors '${dir}/huge.safetensors' as the header length 200000000 is ` +
          "over the 100000000-byte limit",
      ),
    );
  });
});
