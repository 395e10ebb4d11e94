/**
 * The safetensors file format (https://huggingface.co/docs/safetensors), for checkpoints that
 * Hugging Face tools can read and for loading Hugging Face checkpoints.
 *
 * ```
 * [8 bytes]  N, the header length, little-endian u64
 * [N bytes]  UTF-8 JSON: { "<name>": { "dtype": "F32", "shape": [..], "data_offsets": [begin, end] },
 *                          …, "__metadata__": { string: string } }, space-padded to a multiple of 8
 * [rest]     tensor bytes, little-endian, row-major; offsets are relative to the start of this part
 * ```
 *
 * Like the reference implementation, decoding insists that the tensors tile the data part exactly
 * (no overlap, no hole, nothing after the last one). It reads F32, F16 and BF16 (Hugging Face Llama
 * checkpoints are often bf16), always into float32, and writes float32 values as any of the three
 * (rounded to the nearest, ties to even, for F16 and BF16).
 *
 * @module
 */

import { openRegularFile, readExactly } from "./_regular_file.ts";

/** A float32 tensor: its dtype tag, its shape and its values in row-major order. */
export interface TensorData {
  dtype: "F32";
  shape: number[];
  data: Float32Array;
}

/** Bytes per element of each dtype that {@linkcode decodeSafetensors} reads. */
const DTYPE_BYTES = { F32: 4, F16: 2, BF16: 2 } as const;

/** The reference implementation refuses headers over 100 MB; so do we. */
const MAX_HEADER_BYTES = 100_000_000;

/** Whether this machine stores numbers little-endian (then typed-array copies are file order). */
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/**
 * Encodes float32 tensors (and optional string metadata) as a safetensors file. Tensors are
 * written in sorted name order, like the Python library. Each is stored as F32 (the values copied
 * bit for bit) unless `dtypes` says F16 or BF16, for all tensors or by name: then each value is
 * rounded to the nearest (ties to even), as PyTorch's `.to(torch.float16)` and
 * `.to(torch.bfloat16)` round (see {@linkcode toF16Bits} and {@linkcode toBf16Bits}).
 *
 * @example
 * ```ts
 * const bytes = encodeSafetensors(
 *   { "wte": { dtype: "F32", shape: [2, 3], data: new Float32Array(6) } },
 *   { format: "pt" },
 * );
 * bytes.length; // 128: 8 + 96 (header, padded) + 24 (data)
 * const half = encodeSafetensors({ wte: { dtype: "F32", shape: [2], data: Float32Array.of(1, 2) } }, {}, "BF16");
 * half.length; // 8 + 64 + 4
 * ```
 */
export function encodeSafetensors(
  tensors: Record<string, TensorData>,
  metadata?: Record<string, string>,
  dtypes: SafetensorsDtype | Record<string, SafetensorsDtype> = "F32",
): Uint8Array {
  const stored = (name: string): SafetensorsDtype =>
    typeof dtypes === "string" ? dtypes : dtypes[name] ?? "F32";
  const infos: TensorInfo[] = [];
  for (const [name, { dtype, shape, data }] of Object.entries(tensors)) {
    if (dtype !== "F32" || !(data instanceof Float32Array)) {
      throw new TypeError(
        `Cannot encode safetensors as tensor '${name}' must be F32 in a Float32Array: current dtype is ${dtype}`,
      );
    }
    const size = elementCount(shape);
    if (size === undefined || size !== data.length) {
      throw new RangeError(
        `Cannot encode safetensors as tensor '${name}' has shape ${
          JSON.stringify(shape)
        } but ${data.length} values`,
      );
    }
    infos.push({ name, dtype: stored(name), shape });
  }
  const { header, order, dataBytes } = safetensorsHeader(infos, metadata);
  const out = new Uint8Array(header.length + dataBytes);
  out.set(header, 0);
  let at = header.length;
  for (const { name, dtype } of order) {
    const bytes = tensorBytes(tensors[name]!.data, dtype);
    out.set(bytes, at);
    at += bytes.length;
  }
  return out;
}

/**
 * The first part of a safetensors file of the tensors `infos` describe (the 8-byte length and the
 * space-padded JSON header, which keeps the data 8-aligned), the order their data must follow in
 * (sorted by name, as the Python library writes), and the bytes that data takes. A writer that
 * streams the tensors one at a time writes this, then {@linkcode tensorBytes} of each in `order`.
 *
 * @example
 * ```ts
 * const { header, order, dataBytes } = safetensorsHeader([{ name: "w", dtype: "BF16", shape: [3] }]);
 * dataBytes; // 6
 * ```
 */
export function safetensorsHeader(
  infos: readonly TensorInfo[],
  metadata?: Record<string, string>,
): { header: Uint8Array; order: TensorInfo[]; dataBytes: number } {
  const header: Record<string, unknown> = {};
  if (metadata !== undefined) {
    for (const [key, value] of Object.entries(metadata)) {
      if (typeof value !== "string") {
        throw new TypeError(
          `Cannot encode safetensors as metadata '${key}' must be a string: current value is ${
            JSON.stringify(value)
          }`,
        );
      }
    }
    header["__metadata__"] = metadata;
  }
  const order = [...infos].sort((a, b) => compareUtf8(a.name, b.name));
  let offset = 0;
  for (let i = 0; i < order.length; i++) {
    const { name, dtype, shape } = order[i]!;
    if (name === "__metadata__") {
      throw new Error("Cannot encode safetensors as '__metadata__' is reserved, not a tensor name");
    }
    if (i > 0 && order[i - 1]!.name === name) {
      throw new Error(`Cannot encode safetensors as tensor '${name}' is given twice`);
    }
    if (!Object.hasOwn(DTYPE_BYTES, dtype)) {
      throw new TypeError(
        `Cannot encode safetensors as tensor '${name}' has dtype ${
          JSON.stringify(dtype)
        }: expected one of ${Object.keys(DTYPE_BYTES).join(", ")}`,
      );
    }
    const size = elementCount(shape);
    if (size === undefined) {
      throw new RangeError(
        `Cannot encode safetensors as tensor '${name}' must have a shape of integers >= 0: current value is ${
          JSON.stringify(shape)
        }`,
      );
    }
    const bytes = size * DTYPE_BYTES[dtype];
    header[name] = { dtype, shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const headerLength = Math.ceil(json.length / 8) * 8;
  const out = new Uint8Array(8 + headerLength);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerLength), true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.length); // space padding keeps the data 8-aligned
  return {
    header: out,
    order: order.map(({ name, dtype, shape }) => ({ name, dtype, shape })),
    dataBytes: offset,
  };
}

/**
 * The little-endian bytes of float32 values stored as `dtype`: F32 bit for bit (NaN payloads
 * included), F16 and BF16 rounded to the nearest, ties to even.
 *
 * @example
 * ```ts
 * tensorBytes(Float32Array.of(1), "BF16"); // Uint8Array [0x80, 0x3f]
 * ```
 */
export function tensorBytes(data: Float32Array, dtype: SafetensorsDtype): Uint8Array {
  if (dtype === "F32") {
    const out = new Uint8Array(data.byteLength);
    writeFloat32(out, 0, data);
    return out;
  }
  const halves = dtype === "F16" ? toF16Bits(data) : toBf16Bits(data);
  if (LITTLE_ENDIAN) return new Uint8Array(halves.buffer);
  const out = new Uint8Array(2 * halves.length);
  for (let i = 0; i < halves.length; i++) {
    out[2 * i] = halves[i]! & 0xff;
    out[2 * i + 1] = halves[i]! >> 8;
  }
  return out;
}

/**
 * float32 values rounded to IEEE half precision, as 16-bit patterns: to the nearest, ties to
 * even (so 1/3 → 0x3555, 0.333251953125); magnitudes from 65520 on (halfway to 2^16) overflow to
 * ±inf; below 2^-14 they become subnormals (multiples of 2^-24), and at most 2^-25 (a tie, to the
 * even 0) ±0; infinities stay, NaN stays NaN (quiet, its sign and the top of its payload kept).
 *
 * @example
 * ```ts
 * toF16Bits(Float32Array.of(1, -2.5, 65520)); // Uint16Array [0x3c00, 0xc100, 0x7c00]
 * ```
 */
export function toF16Bits(data: Float32Array): Uint16Array {
  const bits = new Uint32Array(data.buffer, data.byteOffset, data.length);
  const out = new Uint16Array(data.length);
  for (let i = 0; i < out.length; i++) {
    const u = bits[i]!;
    const sign = (u >>> 16) & 0x8000;
    const exponent = (u >>> 23) & 0xff;
    const mantissa = u & 0x7fffff;
    if (exponent === 0xff) {
      out[i] = sign | 0x7c00 | (mantissa !== 0 ? 0x200 | (mantissa >>> 13) : 0);
    } else if (exponent >= 143) { // 2^16 and above: beyond every half
      out[i] = sign | 0x7c00;
    } else if (exponent >= 113) { // 2^-14 and above: a normal half
      // 23 mantissa bits to 10; a carry out of the mantissa moves to the next exponent (or inf)
      const h = ((exponent - 112) << 10) | (mantissa >>> 13);
      const rest = mantissa & 0x1fff;
      out[i] = sign | (h + (rest > 0x1000 || (rest === 0x1000 && (h & 1)) ? 1 : 0));
    } else if (exponent >= 102) { // 2^-25 up to 2^-14: a subnormal half, units of 2^-24
      const significand = mantissa | 0x800000; // value = significand · 2^(exponent − 150)
      const shift = 126 - exponent; // 14 to 24
      const h = significand >>> shift;
      const rest = significand & ((1 << shift) - 1);
      const half = 1 << (shift - 1);
      out[i] = sign | (h + (rest > half || (rest === half && (h & 1)) ? 1 : 0));
    } else {
      out[i] = sign; // below 2^-25: rounds to zero
    }
  }
  return out;
}

/**
 * float32 values rounded to bfloat16 (the top half of a float32), as 16-bit patterns: to the
 * nearest, ties to even; values past the largest bfloat16 overflow to ±inf; NaN stays NaN (quiet).
 *
 * @example
 * ```ts
 * toBf16Bits(Float32Array.of(1, 1 / 3)); // Uint16Array [0x3f80, 0x3eab]
 * ```
 */
export function toBf16Bits(data: Float32Array): Uint16Array {
  const bits = new Uint32Array(data.buffer, data.byteOffset, data.length);
  const out = new Uint16Array(data.length);
  for (let i = 0; i < out.length; i++) {
    const u = bits[i]!;
    if ((u & 0x7fffffff) > 0x7f800000) {
      out[i] = (u >>> 16) | 0x40; // NaN: truncating could clear every payload bit left (inf)
    } else {
      out[i] = (u + 0x7fff + ((u >>> 16) & 1)) >>> 16;
    }
  }
  return out;
}

/** The dtypes of the tensors {@linkcode decodeSafetensors} and {@linkcode readSafetensorsFile} read. */
export type SafetensorsDtype = keyof typeof DTYPE_BYTES;

/** A tensor as a safetensors header describes it, before its data is read. */
export interface TensorInfo {
  name: string;
  /** The dtype stored in the file (the data is widened to float32 when read). */
  dtype: SafetensorsDtype;
  shape: number[];
}

/** A decoded safetensors file: float32 tensors, the dtype each was stored in, the metadata. */
export interface DecodedSafetensors {
  tensors: Record<string, TensorData>;
  /** The dtype each tensor was stored in, by name. */
  dtypes: Record<string, SafetensorsDtype>;
  metadata: Record<string, string>;
}

/**
 * Decodes a safetensors file into float32 tensors (F16 and BF16 are widened) and its metadata.
 * Throws an Error naming the problem when the file is malformed.
 *
 * @example
 * ```ts
 * const file = encodeSafetensors({ wte: { dtype: "F32", shape: [1, 2], data: new Float32Array(2) } });
 * const { tensors, metadata } = decodeSafetensors(file); // or `await Deno.readFile(path)`
 * tensors["wte"]!.shape; // [1, 2]
 * metadata; // {}
 * ```
 */
export function decodeSafetensors(bytes: Uint8Array): DecodedSafetensors {
  if (bytes.length < 8) {
    fail(`the file is ${bytes.length} bytes, too short for the 8-byte header length`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = view.getBigUint64(0, true);
  if (n > BigInt(bytes.length - 8)) {
    fail(`the header length ${n} is beyond the file (${bytes.length - 8} bytes after it)`);
  }
  const headerLength = Number(n);
  if (headerLength > MAX_HEADER_BYTES) {
    fail(`the header length ${headerLength} is over the ${MAX_HEADER_BYTES}-byte limit`);
  }
  const dataStart = 8 + headerLength;
  const { entries, metadata } = parseHeader(
    bytes.subarray(8, dataStart),
    bytes.length - dataStart,
  );
  const tensors: Record<string, TensorData> = {};
  const dtypes: Record<string, SafetensorsDtype> = {};
  for (const { name, dtype, shape, begin, end } of entries) {
    tensors[name] = {
      dtype: "F32",
      shape: [...shape],
      data: widen(dtype, bytes.subarray(dataStart + begin, dataStart + end)),
    };
    dtypes[name] = dtype;
  }
  return { tensors, dtypes, metadata };
}

/** One tensor's entry in a header: where its data lies, relative to the start of the data. */
interface HeaderEntry extends TensorInfo {
  begin: number;
  end: number;
}

/**
 * The tensors and metadata a header (its JSON bytes) declares, checked against `dataLength`, the
 * bytes after it: every entry well formed, and the tensors tiling the data exactly. The entries
 * come in data order, so a reader can read them one after the other.
 */
function parseHeader(
  headerBytes: Uint8Array,
  dataLength: number,
): { entries: HeaderEntry[]; metadata: Record<string, string> } {
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(headerBytes));
  } catch (error) {
    fail(`the header is not UTF-8 JSON: ${(error as Error).message}`);
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) {
    fail(`the header must be a JSON object: current value is ${JSON.stringify(header)}`);
  }

  const metadata: Record<string, string> = {};
  const entries: HeaderEntry[] = [];
  for (const [name, entry] of Object.entries(header as Record<string, unknown>)) {
    if (name === "__metadata__") {
      if (typeof entry !== "object" || entry === null || Array.isArray(entry)) {
        fail(
          `'__metadata__' must be an object of strings: current value is ${JSON.stringify(entry)}`,
        );
      }
      for (const [key, value] of Object.entries(entry as Record<string, unknown>)) {
        if (typeof value !== "string") {
          fail(`metadata '${key}' must be a string: current value is ${JSON.stringify(value)}`);
        }
        metadata[key] = value;
      }
      continue;
    }
    if (typeof entry !== "object" || entry === null || Array.isArray(entry)) {
      fail(`tensor '${name}' must be an object: current value is ${JSON.stringify(entry)}`);
    }
    const { dtype, shape, data_offsets: offsets } = entry as Record<string, unknown>;
    if (typeof dtype !== "string" || !Object.hasOwn(DTYPE_BYTES, dtype)) {
      fail(
        `tensor '${name}' has unknown dtype ${JSON.stringify(dtype)}: expected one of ${
          Object.keys(DTYPE_BYTES).join(", ")
        }`,
      );
    }
    const size = Array.isArray(shape) ? elementCount(shape) : undefined;
    if (size === undefined) {
      fail(
        `tensor '${name}' must have a shape of integers >= 0: current value is ${
          JSON.stringify(shape)
        }`,
      );
    }
    if (
      !Array.isArray(offsets) || offsets.length !== 2 ||
      !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) || offsets[0] > offsets[1]
    ) {
      fail(
        `tensor '${name}' must have data_offsets [begin, end] with 0 <= begin <= end: current value is ${
          JSON.stringify(offsets)
        }`,
      );
    }
    const [begin, end] = offsets as [number, number];
    if (end > dataLength) {
      fail(
        `tensor '${name}' has data_offsets [${begin}, ${end}] beyond the data (${dataLength} bytes)`,
      );
    }
    const need = size * DTYPE_BYTES[dtype as SafetensorsDtype];
    if (end - begin !== need) {
      fail(
        `tensor '${name}' has shape ${
          JSON.stringify(shape)
        } of ${dtype}, which needs ${need} bytes, ` +
          `but data_offsets [${begin}, ${end}] hold ${end - begin}`,
      );
    }
    entries.push({
      name,
      dtype: dtype as SafetensorsDtype,
      shape: [...shape as number[]],
      begin,
      end,
    });
  }

  // The tensors must tile the data part: sorted by offset, each begins where the previous ended.
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let covered = 0;
  let previous = "the start of the data";
  for (const { name, begin, end } of entries) {
    if (begin < covered) {
      fail(`tensor '${name}' at [${begin}, ${end}) overlaps ${previous} ending at ${covered}`);
    }
    if (begin > covered) {
      fail(`there is a gap of ${begin - covered} bytes before tensor '${name}' at ${begin}`);
    }
    covered = end;
    previous = `tensor '${name}'`;
  }
  if (covered !== dataLength) {
    fail(`the tensors cover ${covered} bytes but the data after the header is ${dataLength}`);
  }
  return { entries, metadata };
}

/** Options of {@linkcode readSafetensorsFile}. */
export interface ReadSafetensorsOptions {
  /**
   * Called with the tensors the header declares, in data order, before any data is read: it may
   * throw to refuse the file (a loader checking names and shapes) without reading the tensors.
   */
  inspect?: (tensors: readonly TensorInfo[]) => void;
}

/**
 * Reads and decodes the safetensors file at `path`, trusting nothing about it: it must be a
 * regular file (a link to `/dev/zero` or a FIFO is refused before it is opened), its header length
 * at most 100 MB, its header well formed, and its size exactly what the header declares (8
 * bytes, the header, the tensors' data), which is all checked before the data is read, so no more
 * is ever read than the tensors need. Then each tensor is read on its own, straight into its
 * float32 array (F32 on a little-endian machine) or through a buffer of its own size (F16, BF16):
 * the file's bytes are never held whole beside the tensors. Errors are one line naming the file.
 *
 * @example
 * ```ts
 * const { tensors, dtypes } = await readSafetensorsFile("models/stories260K/model.safetensors");
 * dtypes["model.norm.weight"]; // "F32"
 * ```
 */
export async function readSafetensorsFile(
  path: string,
  options: ReadSafetensorsOptions = {},
): Promise<DecodedSafetensors> {
  const { file, entries, metadata } = await openSafetensors(path);
  try {
    options.inspect?.(
      entries.map(({ name, dtype, shape }) => ({ name, dtype, shape: [...shape] })),
    );
    // The entries tile the data in order, so each read continues where the previous one ended.
    const tensors: Record<string, TensorData> = {};
    const dtypes: Record<string, SafetensorsDtype> = {};
    for (const { name, dtype, shape, begin, end } of entries) {
      let values: Float32Array;
      if (dtype === "F32" && LITTLE_ENDIAN) {
        values = new Float32Array((end - begin) / 4);
        await readExactly(file, end - begin, path, new Uint8Array(values.buffer));
      } else {
        values = widen(dtype, await readExactly(file, end - begin, path));
      }
      tensors[name] = { dtype: "F32", shape, data: values };
      dtypes[name] = dtype;
    }
    return { tensors, dtypes, metadata };
  } finally {
    file.close();
  }
}

/**
 * The tensors (in data order) and metadata the header of the safetensors file at `path` declares,
 * checked as {@linkcode readSafetensorsFile} checks them, without reading their data.
 *
 * @example
 * ```ts
 * const { tensors } = await readSafetensorsHeader("models/stories260K/model.safetensors");
 * tensors.find((t) => t.name === "model.norm.weight")!.dtype; // "F32"
 * ```
 */
export async function readSafetensorsHeader(
  path: string,
): Promise<{ tensors: TensorInfo[]; metadata: Record<string, string> }> {
  const { file, entries, metadata } = await openSafetensors(path);
  file.close();
  return { tensors: entries.map(({ name, dtype, shape }) => ({ name, dtype, shape })), metadata };
}

/**
 * Opens the safetensors file at `path` and reads its header, positioned at the start of the data:
 * a regular file, its header at most 100 MB and well formed, its size what the header declares.
 */
async function openSafetensors(
  path: string,
): Promise<{ file: Deno.FsFile; entries: HeaderEntry[]; metadata: Record<string, string> }> {
  const refuse = (why: string): never => {
    throw new Error(`Cannot read safetensors '${path}' as ${why}`);
  };
  const { file, size } = await openRegularFile(path);
  try {
    if (size < 8) refuse(`the file is ${size} bytes, too short for the 8-byte header length`);
    const start = await readExactly(file, 8, path);
    const n = new DataView(start.buffer).getBigUint64(0, true);
    if (n > BigInt(MAX_HEADER_BYTES)) {
      refuse(`the header length ${n} is over the ${MAX_HEADER_BYTES}-byte limit`);
    }
    const headerLength = Number(n);
    if (8 + headerLength > size) {
      refuse(`the header length ${headerLength} is beyond the file (${size - 8} bytes after it)`);
    }
    const headerBytes = await readExactly(file, headerLength, path);
    const data = declaredDataBytes(headerBytes);
    if (data !== undefined && 8 + headerLength + data !== size) {
      refuse(
        `its header declares ${8 + headerLength + data} bytes (8 + header ${headerLength} + ` +
          `data ${data}), but the file is ${size}`,
      );
    }
    let parsed: ReturnType<typeof parseHeader>;
    try {
      parsed = parseHeader(headerBytes, size - 8 - headerLength);
    } catch (e) {
      return refuse((e as Error).message.replace(/^Cannot decode safetensors as /, ""));
    }
    return { file, ...parsed };
  } catch (e) {
    file.close();
    throw e;
  }
}

/**
 * The data bytes a header declares (the largest `data_offsets` end), or undefined when the header
 * is not a JSON object of well-formed entries (then decoding reports what is wrong).
 */
function declaredDataBytes(header: Uint8Array): number | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(header));
  } catch {
    return undefined;
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) return undefined;
  let end = 0;
  for (const [name, entry] of Object.entries(parsed as Record<string, unknown>)) {
    if (name === "__metadata__") continue;
    const offsets = (entry as { data_offsets?: unknown } | null)?.data_offsets;
    if (!Array.isArray(offsets) || !Number.isSafeInteger(offsets[1])) return undefined;
    end = Math.max(end, offsets[1] as number);
  }
  return end;
}

/**
 * Writes a file atomically: to `path + ".tmp-<random>"` in the same directory, flushed to disk,
 * then renamed over `path`. A reader sees the old file or the new one, never half of one; on
 * failure the temporary file is removed.
 *
 * @example
 * ```ts
 * const dir = await Deno.makeTempDir();
 * await writeFileAtomic(`${dir}/config.json`, JSON.stringify({ layers: 2 }));
 * await writeFileAtomic(`${dir}/model.safetensors`, encodeSafetensors({}));
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function writeFileAtomic(path: string, bytes: Uint8Array | string): Promise<void> {
  const data = typeof bytes === "string" ? new TextEncoder().encode(bytes) : bytes;
  const suffix = Array.from(
    crypto.getRandomValues(new Uint8Array(6)),
    (b) => b.toString(16).padStart(2, "0"),
  )
    .join("");
  const tmp = `${path}.tmp-${suffix}`;
  try {
    const file = await Deno.open(tmp, { write: true, createNew: true });
    try {
      let written = 0;
      while (written < data.length) written += await file.write(data.subarray(written));
      await file.syncData();
    } finally {
      file.close();
    }
    await Deno.rename(tmp, path);
  } catch (error) {
    await Deno.remove(tmp).catch(() => {});
    throw error;
  }
}

/** Throws the decoding error for `why`. */
function fail(why: string): never {
  throw new Error(`Cannot decode safetensors as ${why}`);
}

/** The number of elements of `shape`, or undefined unless it is a list of safe integers >= 0. */
function elementCount(shape: readonly unknown[]): number | undefined {
  let size = 1;
  for (const d of shape) {
    if (typeof d !== "number" || !Number.isSafeInteger(d) || d < 0) return undefined;
    size *= d;
  }
  return Number.isSafeInteger(size) ? size : undefined;
}

/** Orders strings by their UTF-8 bytes, as Rust's `String` comparison (the reference) does. */
function compareUtf8(a: string, b: string): number {
  // Code point order equals UTF-8 byte order; UTF-16 code unit order differs above U+D800.
  const x = [...a].map((c) => c.codePointAt(0)!);
  const y = [...b].map((c) => c.codePointAt(0)!);
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    if (x[i] !== y[i]) return x[i]! - y[i]!;
  }
  return x.length - y.length;
}

/** Copies float32 values into `out` at `at`, little-endian, bit for bit. */
function writeFloat32(out: Uint8Array, at: number, data: Float32Array): void {
  if (LITTLE_ENDIAN) {
    out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), at);
    return;
  }
  const view = new DataView(out.buffer, out.byteOffset);
  const bits = new Uint32Array(data.buffer, data.byteOffset, data.length);
  for (let i = 0; i < data.length; i++) view.setUint32(at + 4 * i, bits[i]!, true);
}

/** Values stored as `dtype` (little-endian bytes) as a new float32 array. */
function widen(dtype: SafetensorsDtype, raw: Uint8Array): Float32Array {
  return dtype === "F32" ? readFloat32(raw) : dtype === "BF16" ? readBf16(raw) : readF16(raw);
}

/** Reads little-endian float32 values into a new array, bit for bit (NaN payloads included). */
function readFloat32(raw: Uint8Array): Float32Array {
  const out = new Float32Array(raw.length / 4);
  if (LITTLE_ENDIAN) {
    new Uint8Array(out.buffer).set(raw);
    return out;
  }
  const bits = new Uint32Array(out.buffer);
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  for (let i = 0; i < out.length; i++) bits[i] = view.getUint32(4 * i, true);
  return out;
}

/** bfloat16 is the top half of a float32: shift each 16-bit value up (exact, NaN included). */
function readBf16(raw: Uint8Array): Float32Array {
  const out = new Float32Array(raw.length / 2);
  const bits = new Uint32Array(out.buffer);
  for (let i = 0; i < out.length; i++) bits[i] = (raw[2 * i]! | (raw[2 * i + 1]! << 8)) << 16;
  return out;
}

/** IEEE half precision to float32 (every half is exactly representable), via a lookup table. */
function readF16(raw: Uint8Array): Float32Array {
  const table = halfTable();
  const out = new Float32Array(raw.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = table[raw[2 * i]! | (raw[2 * i + 1]! << 8)]!;
  return out;
}

let halfTableCache: Float32Array | undefined;

/** All 65536 half-precision values as float32, built on first use. */
function halfTable(): Float32Array {
  if (halfTableCache !== undefined) return halfTableCache;
  const table = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exponent = (h >> 10) & 0x1f;
    const mantissa = h & 0x3ff;
    table[h] = exponent === 0
      ? sign * mantissa * 2 ** -24 // zero and subnormals
      : exponent === 31
      ? (mantissa === 0 ? sign * Infinity : NaN)
      : sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
  }
  halfTableCache = table;
  return table;
}
