/**
 * Tokenizers: the {@linkcode Tokenizer} interface that every tokenizer implements (the character
 * tokenizer here, a Hugging Face `tokenizer.json` in `hf_tokenizer.ts`), and the character
 * tokenizer of the synthetic tasks: `<pad>` 0, `<bos>` 1, `<eos>` 2, then one id per character of
 * the task's alphabet, in alphabet order (dsl/tasks.ts defines both, so the plan's vocabulary is
 * the one the model is built with).
 *
 * @module
 */

import { SPECIAL_TOKENS } from "../../../dsl/tasks.ts";

/**
 * Options of {@linkcode Tokenizer.encode}.
 *
 * @example
 * ```ts
 * charTokenizer("ab").encode("ab", { addSpecialTokens: true }); // [1, 3, 4]
 * ```
 */
export interface EncodeOptions {
  /**
   * Add the tokenizer's special tokens: `<bos>` first when {@linkcode Tokenizer.addBos}, `<eos>`
   * last when {@linkcode Tokenizer.addEos}. Off unless asked (unlike Hugging Face's `encode`), as
   * a rendered chat template usually writes its own.
   *
   * @default {false}
   */
  addSpecialTokens?: boolean;
}

/**
 * Options of {@linkcode Tokenizer.decode}.
 *
 * @example
 * ```ts
 * charTokenizer("ab").decode([1, 3, 4, 2], { skipSpecialTokens: false }); // "<bos>ab<eos>"
 * ```
 */
export interface DecodeOptions {
  /**
   * Leave special tokens (`<bos>`, `<eos>`, `<|im_end|>`, ...) out of the text.
   *
   * @default {true}
   */
  skipSpecialTokens?: boolean;
}

/**
 * What the trainer needs of a tokenizer, whichever it is: text to ids and back, the vocabulary's
 * size, and the ids that begin, end and pad a sequence or stop sampling.
 *
 * @example
 * ```ts
 * function promptIds(tok: Tokenizer, text: string): number[] {
 *   return tok.encode(text, { addSpecialTokens: true }); // <bos> first when tok.addBos
 * }
 * ```
 */
export interface Tokenizer {
  /** Which implementation: `"char"` ({@linkcode charTokenizer}) or `"hf"` (a `tokenizer.json`). */
  readonly kind: "char" | "hf";
  /** One more than the largest id the tokenizer can produce: the least embedding size that fits. */
  readonly vocabSize: number;
  /** Id of the begin-of-sequence token, null when the tokenizer has none (Qwen's). */
  readonly bosId: number | null;
  /** Id of the end-of-sequence token, null when the tokenizer has none. */
  readonly eosId: number | null;
  /** Id that pads a batch's rows, null when there is neither a pad nor an end token. */
  readonly padId: number | null;
  /**
   * Where {@linkcode padId} comes from: the tokenizer's own pad token, the end token when it has
   * no pad token (as TRL does: a padded position is masked, so which id fills it does not
   * matter), or nowhere.
   */
  readonly padSource: "pad_token" | "eos_token" | null;
  /** Ids that end a completion when sampled: the generation config's end ids and {@linkcode eosId}. */
  readonly stopIds: readonly number[];
  /** Whether {@linkcode encode} with `addSpecialTokens` puts {@linkcode bosId} first. */
  readonly addBos: boolean;
  /** Whether {@linkcode encode} with `addSpecialTokens` puts {@linkcode eosId} last. */
  readonly addEos: boolean;
  /** The ids of `text`. Special tokens written in `text` (`<|im_start|>`) are their own ids. */
  encode(text: string, options?: EncodeOptions): number[];
  /**
   * The text of `ids`. Cutting a completion at its first stop id is the caller's, except that the
   * character tokenizer, skipping specials, has always ended at its first `<eos>`.
   */
  decode(ids: ArrayLike<number>, options?: DecodeOptions): string;
}

/**
 * The ids that end a sampled completion: the tokenizer's stop ids and, for a Hugging Face
 * tokenizer, its begin token too, which a model emits only to start another document (llama2.c's
 * TinyStories models end a story so).
 *
 * @example
 * ```ts
 * completionStopIds(await loadHfTokenizer("models/stories260K")); // [2, 1]
 * completionStopIds(charTokenizer("ab")); // [2]
 * ```
 */
export function completionStopIds(tokenizer: Tokenizer): number[] {
  const ids = [...tokenizer.stopIds];
  if (tokenizer.kind === "hf" && tokenizer.bosId !== null && !ids.includes(tokenizer.bosId)) {
    ids.push(tokenizer.bosId);
  }
  return ids;
}

/**
 * The alphabet a checkpoint records of `tokenizer`: the character tokenizer's, null for a Hugging
 * Face tokenizer (whose files are its model's).
 *
 * @example
 * ```ts
 * alphabetOf(charTokenizer("ab")); // "ab"
 * ```
 */
export function alphabetOf(tokenizer: Tokenizer): string | null {
  return tokenizer.kind === "char" ? (tokenizer as CharTokenizer).alphabet : null;
}

/** Id of `<pad>`. */
export const PAD = 0;
/** Id of `<bos>`. */
export const BOS = 1;
/** Id of `<eos>`. */
export const EOS = 2;

/**
 * A character tokenizer over a fixed alphabet, and a {@linkcode Tokenizer}: `<bos>` is added
 * with `addSpecialTokens`, `<eos>` is its only stop id, and `<pad>` its pad.
 *
 * @example
 * ```ts
 * const tok: CharTokenizer = charTokenizer("0123456789+=");
 * tok.decode(tok.encode("12+30=")); // "12+30="
 * ```
 */
export interface CharTokenizer extends Tokenizer {
  kind: "char";
  alphabet: string;
  vocab: number;
  /**
   * The ids of `text`, without `<bos>`/`<eos>` unless `addSpecialTokens` (then `<bos>` first).
   * Throws on a character outside the alphabet.
   */
  encode(text: string, options?: EncodeOptions): number[];
  /**
   * The text of `ids`, stopping at the first `<eos>` and skipping `<pad>`/`<bos>`; with
   * `skipSpecialTokens: false`, every id, the specials by name (`<bos>`).
   */
  decode(ids: ArrayLike<number>, options?: DecodeOptions): string;
}

/**
 * A character tokenizer over `alphabet` (duplicates are ignored).
 *
 * @example
 * ```ts
 * const tok = charTokenizer("0123456789+=");
 * tok.encode("12+3="); // [4, 5, 13, 6, 14]
 * tok.encode("12", { addSpecialTokens: true }); // [1, 4, 5]
 * tok.decode([4, 5, 2]); // "12"
 * ```
 */
export function charTokenizer(alphabet: string): CharTokenizer {
  const chars = [...new Set(alphabet)];
  const ids = new Map(chars.map((c, i) => [c, SPECIAL_TOKENS.length + i]));
  const vocab = SPECIAL_TOKENS.length + chars.length;
  return {
    kind: "char",
    alphabet: chars.join(""),
    vocab,
    vocabSize: vocab,
    bosId: BOS,
    eosId: EOS,
    padId: PAD,
    padSource: "pad_token",
    stopIds: [EOS],
    addBos: true,
    addEos: false,
    encode(text, options = {}) {
      const encoded = [...text].map((c, i) => {
        const id = ids.get(c);
        if (id === undefined) {
          throw new Error(
            `Cannot tokenize ${JSON.stringify(text)}: character ${JSON.stringify(c)} at ${i} ` +
              "is not in the tokenizer's alphabet",
          );
        }
        return id;
      });
      return options.addSpecialTokens ? [BOS, ...encoded] : encoded;
    },
    decode(tokens, options = {}) {
      const skip = options.skipSpecialTokens ?? true;
      let text = "";
      for (let i = 0; i < tokens.length; i++) {
        const t = tokens[i]!;
        if (t < SPECIAL_TOKENS.length) {
          if (!skip) text += SPECIAL_TOKENS[t] ?? "";
          else if (t === EOS) break;
        } else text += chars[t - SPECIAL_TOKENS.length] ?? "";
      }
      return text;
    },
  };
}
