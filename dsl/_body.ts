/**
 * Reading an HTTP response's body no larger than a limit, as it arrives: a server may send a body
 * of any size, or declare one; what the recipe loader and the HTTP reward client read is bounded.
 *
 * @module
 */

/**
 * At most `limit` bytes of `response`'s body, read as they arrive, as text; null when there are
 * more (the rest is cancelled, unless `truncate`: then the first `limit` bytes are the text).
 *
 * @example
 * ```ts
 * const text = await readBody(await fetch(url), 16 * 2 ** 20, false); // null: over 16 MiB
 * ```
 */
export async function readBody(
  response: Response,
  limit: number,
  truncate: boolean,
): Promise<string | null> {
  const parts: Uint8Array[] = [];
  let size = 0;
  const reader = response.body?.getReader();
  if (reader) {
    try {
      while (true) {
        const { done, value } = await reader.read();
        if (done) break;
        if (size + value.length > limit) {
          await reader.cancel().catch(() => {});
          if (!truncate) return null;
          parts.push(value.subarray(0, limit - size));
          size = limit;
          break;
        }
        parts.push(value);
        size += value.length;
      }
    } finally {
      reader.releaseLock();
    }
  }
  const bytes = new Uint8Array(size);
  let at = 0;
  for (const part of parts) {
    bytes.set(part, at);
    at += part.length;
  }
  return new TextDecoder().decode(bytes);
}
