/**
 * Reading files the trainer does not trust to be files: a checkpoint's `model.safetensors` may be
 * a link to `/dev/zero` (read without end), its `config.json` a FIFO (an open that waits for a
 * writer forever). Only a regular file is opened, found by a `stat` that follows links before
 * anything is opened, and no more is read than its size, or the caller's limit, allows.
 *
 * @module
 */

/** What a `stat` says a path is, when it is not a regular file. */
function kind(info: Deno.FileInfo): string {
  if (info.isDirectory) return "a directory";
  if (info.isFifo) return "a FIFO";
  if (info.isCharDevice) return "a character device";
  if (info.isBlockDevice) return "a block device";
  if (info.isSocket) return "a socket";
  return "not a file";
}

/**
 * Opens `path` for reading when it is a regular file (after following links), with its size;
 * anything else is refused, before it is opened, with one line naming the file.
 *
 * @example
 * ```ts
 * const { file, size } = await openRegularFile("runs/x/checkpoints/final/config.json");
 * file.close();
 * ```
 */
export async function openRegularFile(path: string): Promise<{ file: Deno.FsFile; size: number }> {
  const refuse = (info: Deno.FileInfo): never => {
    throw new Error(`Cannot read '${path}' as it is ${kind(info)}, not a regular file`);
  };
  const before = await Deno.stat(path);
  if (!before.isFile) refuse(before);
  const file = await Deno.open(path, { read: true });
  try {
    // The path may have been swapped between the stat and the open: the open file decides.
    const info = await file.stat();
    if (!info.isFile) refuse(info);
    return { file, size: info.size };
  } catch (e) {
    file.close();
    throw e;
  }
}

/**
 * Reads exactly `length` bytes of `file` from where it stands; a file that ends sooner (it
 * shrank while read) is an error naming `path`.
 *
 * @example
 * ```ts
 * const { file } = await openRegularFile(path);
 * const magic = await readExactly(file, 8, path);
 * ```
 */
export async function readExactly(
  file: Deno.FsFile,
  length: number,
  path: string,
  into: Uint8Array = new Uint8Array(length),
): Promise<Uint8Array> {
  let at = 0;
  while (at < length) {
    const n = await file.read(into.subarray(at, length));
    if (n === null) {
      throw new Error(`Cannot read '${path}' as it ended after ${at} of ${length} bytes`);
    }
    at += n;
  }
  return into.subarray(0, length);
}

/**
 * The bytes of the regular file at `path`, refused when it is larger than `maxBytes`.
 *
 * @example
 * ```ts
 * const text = new TextDecoder().decode(await readRegularFile("config.json", 16 * 2 ** 20));
 * ```
 */
export async function readRegularFile(path: string, maxBytes: number): Promise<Uint8Array> {
  const { file, size } = await openRegularFile(path);
  try {
    if (size > maxBytes) {
      throw new Error(
        `Cannot read '${path}' as it is ${size} bytes, over its limit of ${maxBytes}`,
      );
    }
    return await readExactly(file, size, path);
  } finally {
    file.close();
  }
}

/** The largest JSON file of a checkpoint read (a `config.json` is a few kB; HF's stay under 1 MB). */
export const MAX_JSON_BYTES = 16_777_216;

/**
 * The JSON in the regular file at `path`, at most `MAX_JSON_BYTES` of it (a FIFO, a device or a
 * larger file is refused unread); errors are one line naming the file.
 *
 * @example
 * ```ts
 * const config = await readJsonFile("runs/x/checkpoints/final/config.json");
 * ```
 */
export async function readJsonFile(path: string): Promise<unknown> {
  const bytes = await readRegularFile(path, MAX_JSON_BYTES);
  try {
    return JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch (e) {
    throw new Error(`Cannot read '${path}' as it is not UTF-8 JSON: ${(e as Error).message}`);
  }
}
