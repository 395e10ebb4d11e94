/**
 * Data quoted in a message: at most a short excerpt, so that a hostile row cannot fill a terminal
 * or a log line.
 *
 * @module
 */

/** Characters of data a message quotes, at most. */
export const EXCERPT_CHARACTERS = 40;

/**
 * `text` as JSON, cut after `max` characters (code points) with "…" and its length when longer:
 * `"1+1+1+1+…"… (100,001 characters)`.
 */
export function excerpt(text: string, max: number = EXCERPT_CHARACTERS): string {
  let end = 0;
  for (let n = 0; n < max && end < text.length; n++) {
    end += text.codePointAt(end)! > 0xffff ? 2 : 1;
  }
  if (end >= text.length) return JSON.stringify(text);
  return `${JSON.stringify(text.slice(0, end))}… (${
    codePoints(text).toLocaleString("en-US")
  } characters)`;
}

/** The characters (code points) of `text`, counted without building an array of them. */
export function codePoints(text: string): number {
  let n = text.length;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    // A high surrogate followed by a low one is one character.
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      const d = text.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        n--;
        i++;
      }
    }
  }
  return n;
}
