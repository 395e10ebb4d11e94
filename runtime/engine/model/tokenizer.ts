/**
 * The character tokenizer of the synthetic tasks: `<pad>` 0, `<bos>` 1, `<eos>` 2, then one id per
 * character of the task's alphabet, in alphabet order (dsl/tasks.ts defines both, so the plan's
 * vocabulary is the one the model is built with).
 *
 * @module
 */

import { SPECIAL_TOKENS } from "../../../dsl/tasks.ts";

/** Id of `<pad>`. */
export const PAD = 0;
/** Id of `<bos>`. */
export const BOS = 1;
/** Id of `<eos>`. */
export const EOS = 2;

/**
 * A character tokenizer over a fixed alphabet.
 *
 * @example
 * ```ts
 * const tok: CharTokenizer = charTokenizer("0123456789+=");
 * tok.decode(tok.encode("12+30=")); // "12+30="
 * ```
 */
export interface CharTokenizer {
  kind: "char";
  alphabet: string;
  vocab: number;
  /** The ids of `text`, without `<bos>`/`<eos>`. Throws on a character outside the alphabet. */
  encode(text: string): number[];
  /** The text of `ids`, stopping at the first `<eos>` and skipping `<pad>`/`<bos>`. */
  decode(ids: ArrayLike<number>): string;
}

/**
 * A character tokenizer over `alphabet` (duplicates are ignored).
 *
 * @example
 * ```ts
 * const tok = charTokenizer("0123456789+=");
 * tok.encode("12+3="); // [4, 5, 13, 6, 14]
 * tok.decode([4, 5, 2]); // "12"
 * ```
 */
export function charTokenizer(alphabet: string): CharTokenizer {
  const chars = [...new Set(alphabet)];
  const ids = new Map(chars.map((c, i) => [c, SPECIAL_TOKENS.length + i]));
  return {
    kind: "char",
    alphabet: chars.join(""),
    vocab: SPECIAL_TOKENS.length + chars.length,
    encode(text) {
      return [...text].map((c, i) => {
        const id = ids.get(c);
        if (id === undefined) {
          throw new Error(
            `Cannot tokenize ${JSON.stringify(text)}: character ${JSON.stringify(c)} at ${i} ` +
              "is not in the tokenizer's alphabet",
          );
        }
        return id;
      });
    },
    decode(tokens) {
      let text = "";
      for (let i = 0; i < tokens.length; i++) {
        const t = tokens[i]!;
        if (t === EOS) break;
        if (t >= SPECIAL_TOKENS.length) text += chars[t - SPECIAL_TOKENS.length] ?? "";
      }
      return text;
    },
  };
}
