/**
 * What the compiler knows about each data source without reading it: the characters the tokenizer
 * needs, the longest prompt and answer, and the split sizes. The runtime builds its tokenizer and
 * its problems from the same definitions, so the plan's shapes are the shapes it runs with.
 *
 * @module
 */

import type { Data } from "./schema.ts";

/** Special tokens of the character tokenizer, in id order (0, 1, 2). */
export const SPECIAL_TOKENS = ["<pad>", "<bos>", "<eos>"] as const;

/** Every printable ASCII character and the newline: the alphabet of free-text data. */
export const PRINTABLE_ASCII: string = "\n" +
  Array.from({ length: 95 }, (_, i) => String.fromCharCode(32 + i)).join("");

/** What the compiler knows of a data source. */
export interface TaskSpec {
  /** One line for the plan. */
  description: string;
  /** The characters the tokenizer maps to ids after the special tokens. */
  alphabet: string;
  /** Longest prompt in tokens, the leading `<bos>` included. */
  promptTokens: number;
  /** Longest reference answer in tokens, the closing `<eos>` included; null when unknown. */
  answerTokens: number | null;
  /** Train problems; null when only the file knows. */
  train: number | null;
  /** Eval problems; null when only the file knows. */
  eval: number | null;
  /** How many distinct problems the task can produce; null when unbounded or unknown. */
  distinctProblems: number | null;
}

/** The task spec of a data source whose schema defaults are filled in (`fillDefaults`). */
export function taskSpec(data: Data): TaskSpec {
  switch (data.kind) {
    case "addition": {
      const digits = data.digits!;
      const operand = 10 ** digits;
      return {
        description: `addition of two ${digits}-digit numbers: 'a+b=' → 'c'`,
        alphabet: "0123456789+=",
        promptTokens: 1 + digits + 1 + digits + 1, // <bos> a + b =
        answerTokens: digits + 1 + 1, // the sum has at most digits+1 digits, then <eos>
        train: data.train!,
        eval: data.eval!,
        distinctProblems: operand * operand,
      };
    }
    case "multiplication": {
      const digits = data.digits!;
      return {
        description: `multiplication of two ${digits}-digit numbers, zero-padded: 'a*b=' → 'c'`,
        alphabet: "0123456789*=",
        promptTokens: 1 + digits + 1 + digits + 1, // <bos> a * b =
        answerTokens: 2 * digits + 1, // the product has at most 2·digits digits, then <eos>
        train: data.train!,
        eval: data.eval!,
        distinctProblems: 10 ** (2 * digits),
      };
    }
    case "sorting": {
      const length = data.length!;
      const maxValue = data.maxValue!;
      const list = length * digitsOf(maxValue) + (length - 1); // the values and the commas
      return {
        description: `sorting ${length} numbers from 0 to ${maxValue}: 'x1,…,x${length}=' → ` +
          "the same numbers ascending",
        alphabet: "0123456789,=",
        promptTokens: 1 + list + 1, // <bos> list =
        answerTokens: list + 1, // the sorted list, then <eos>
        train: data.train!,
        eval: data.eval!,
        distinctProblems: (maxValue + 1) ** length,
      };
    }
    case "countdown": {
      const n = data.numbers!;
      const numbers = n * digitsOf(data.maxNumber!) + (n - 1); // the numbers and the commas
      return {
        description: `countdown with ${n} numbers up to ${data.maxNumber} and a target up to ` +
          `${data.maxTarget}: 'a,b,…|t=' → an expression of + - * / and parentheses`,
        alphabet: "0123456789+-*/()|,=",
        promptTokens: 1 + numbers + 1 + digitsOf(data.maxTarget!) + 1, // <bos> numbers | t =
        // n numbers, n − 1 operators, 2·(n − 2) parentheses, then <eos>
        answerTokens: n * digitsOf(data.maxNumber!) + (n - 1) + 2 * (n - 2) + 1,
        train: data.train!,
        eval: data.eval!,
        // Not every draw of numbers and target has a solution; only the generator knows how many.
        distinctProblems: null,
      };
    }
    case "jsonl":
      return {
        description: `JSON Lines from '${data.path}' (prompt: '${data.prompt}', ` +
          `answer: '${data.answer}')`,
        alphabet: PRINTABLE_ASCII,
        promptTokens: data.maxPromptTokens!,
        answerTokens: null,
        train: null,
        eval: data.eval!,
        distinctProblems: null,
      };
  }
}

/** Decimal digits of a non-negative integer: 9 → 1, 10 → 2. */
function digitsOf(n: number): number {
  return String(n).length;
}

/** The vocabulary size of the character tokenizer over `alphabet`. */
export function charVocabSize(alphabet: string): number {
  return SPECIAL_TOKENS.length + [...new Set(alphabet)].length;
}

/** Completion length when the recipe does not set `sampling.maxNewTokens`. */
export const DEFAULT_MAX_NEW_TOKENS = 256;
